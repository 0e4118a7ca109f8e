"""Reporting on a study: its trials as tables, the fronts as plots, the export, comparisons, re-pricing, the dashboard."""
