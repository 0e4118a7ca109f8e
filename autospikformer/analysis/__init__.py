"""Analyses of trained models that the paper reports (channel redundancy, Fig. 1B)."""
