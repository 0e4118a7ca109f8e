"""``autospik study export``: every file of a study's report, written from its tables and plots.

The files and what each holds are listed in :data:`EXPORT_FILES` and docs/studies.md ("Export");
the conventions behind the numbers are :mod:`autospikformer.report.tables`'. :func:`export_study`
returns what it wrote (the frames, the summary, the paths), so a caller never reads them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autospikformer.report.plots import pareto_figure, write_static_front
from autospikformer.report.pricing import study_energy_model
from autospikformer.report.tables import (
    accuracy_label,
    complete_and_front,
    front_and_top,
    hypervolume_history,
    jsonable,
    kendall_tau,
    kendall_taus,
    protocol,
    study_settings,
    trials_frame,
)
from autospikformer.search.architecture import Architecture

EXPORT_FILES = (
    "trials.csv",
    "pareto.csv",
    "pareto.json",
    "pareto.html",
    "pareto.png",
    "pareto.pdf",
    "hypervolume.csv",
    "front_and_top20.csv",
    "summary.json",
)


def _front_points(front: pd.DataFrame) -> list[dict[str, Any]]:
    """The front's members as JSON-safe dicts (``pareto.json``)."""
    points = []
    for _, row in front.iterrows():
        arch = Architecture.parse(row["architecture"])  # the compact form is exact
        points.append(
            {
                "trial": int(row["number"]),
                "accuracy": float(row["accuracy"]),
                "energy_mj": float(row["energy_mj"]),
                "f_aeb": float(row["f_aeb"]),
                "architecture": str(arch),
                "architecture_json": arch.to_dict(),
                "num_parameters": jsonable(row["num_parameters"]),
                "mean_firing_rate": jsonable(row["mean_firing_rate"]),
                "test_accuracy": jsonable(row["test_accuracy"]),
                "trained_accuracy": jsonable(row["trained_accuracy"]),
                "baseline": row["baseline"] or None,
            }
        )
    return points


def _trial_summary(row: pd.Series) -> dict[str, Any]:
    return {
        "trial": int(row["number"]),
        "accuracy": float(row["accuracy"]),
        "energy_mj": float(row["energy_mj"]),
        "architecture": row["architecture"],
        "trained_accuracy": jsonable(row["trained_accuracy"]),
    }


def _trained_summary(complete: pd.DataFrame) -> dict[str, Any]:
    """The trials whose subnet was trained (``autospik subnet train``, ``study validate``):
    inherited beside trained values, the schedule of each."""
    part = complete.loc[complete["trained_accuracy"].notna()].sort_values("number")
    return {
        "trials": len(part),
        "on_front": int(part["pareto"].astype(bool).sum()),
        "schedules": sorted(set(part["trained_schedule"])),
        "members": [
            {
                "trial": int(row["number"]),
                "on_front": bool(row["pareto"]),
                "accuracy": float(row["accuracy"]),
                "trained_accuracy": float(row["trained_accuracy"]),
                "trained_test_accuracy": jsonable(row["trained_test_accuracy"]),
                "energy_mj": float(row["energy_mj"]),
                "trained_energy_mj": jsonable(row["trained_energy_mj"]),
                "schedule": row["trained_schedule"],
            }
            for _, row in part.iterrows()
        ],
    }


def _summary(frame: pd.DataFrame, history: pd.DataFrame) -> dict[str, Any]:
    """The study's figures in ``summary.json`` (without the study's name and settings)."""
    complete, front = complete_and_front(frame)
    measured = front["test_accuracy"].notna()
    ref = [0.0, float(history["ref_energy_mj"].iloc[0])] if len(history) else None
    base = complete[complete["baseline"].astype(bool)]
    within = complete.loc[complete["feasible"].astype(bool)]  # best values: within the budgets
    empty = within.empty
    return {
        "trials": {state: int(n) for state, n in frame["state"].value_counts().items()},
        "complete": len(complete),
        "over_budget": int(len(complete) - len(within)),
        "front_size": len(front),
        "hypervolume": float(history["hypervolume"].iloc[-1]) if len(history) else 0.0,
        "reference_point": {"accuracy": ref[0], "energy_mj": ref[1]} if ref else None,
        "reference_point_rule": "accuracy 0, energy 1.1 x the largest energy of any complete trial",
        "kendall_tau_accuracy_energy": jsonable(
            kendall_tau(complete["accuracy"], complete["energy_mj"])
        ),
        "kendall_tau": kendall_taus(complete),
        "front_test_accuracy": {
            "measured": int(measured.sum()),
            "of": len(front),
            "mean": jsonable(float(front.loc[measured, "test_accuracy"].mean()))
            if measured.any()
            else None,
        },
        "f_aeb_population": "all complete trials at export time",
        "best_accuracy": None if empty else _trial_summary(within.loc[within["accuracy"].idxmax()]),
        "lowest_energy": None
        if empty
        else _trial_summary(within.loc[within["energy_mj"].idxmin()]),
        "baseline": (
            {
                "name": base.iloc[0]["baseline"],
                "trial": int(base.iloc[0]["number"]),
                "accuracy": float(base.iloc[0]["accuracy"]),
                "energy_mj": float(base.iloc[0]["energy_mj"]),
            }
            if len(base)
            else None
        ),
        "trained": _trained_summary(complete),
    }


@dataclass(frozen=True)
class StudyExport:
    """What :func:`export_study` wrote: the tables behind the files, the summary and the paths."""

    trials: pd.DataFrame  # trials.csv: every trial
    front: pd.DataFrame  # pareto.csv: the front, lowest energy first
    tables: pd.DataFrame  # front_and_top20.csv: the paper's Tables 2 / 3
    history: pd.DataFrame  # hypervolume.csv
    summary: dict[str, Any]  # summary.json
    paths: dict[str, Path]  # file name -> path


def export_study(study: optuna.Study, out_dir: str | Path) -> StudyExport:
    """Write trials.csv, pareto.csv/json/html, pareto.png/pdf (static, for papers),
    hypervolume.csv, front_and_top20.csv and summary.json into ``out_dir``; returns what it
    wrote."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = study_settings(study)
    alpha = float(settings.get("search", {}).get("alpha", 0.5))
    frame = trials_frame(study, alpha)
    complete, front = complete_and_front(frame)
    history = hypervolume_history(complete)
    tables = front_and_top(complete)
    paths = {name: out / name for name in EXPORT_FILES}
    frame.to_csv(paths["trials.csv"], index=False)
    front.to_csv(paths["pareto.csv"], index=False)
    history.to_csv(paths["hypervolume.csv"], index=False)
    tables.to_csv(paths["front_and_top20.csv"], index=False)
    meta = {
        "study": study.study_name,
        "metrics": ["accuracy", "energy_mj"],
        "directions": ["maximize", "minimize"],
        "alpha": alpha,
        "protocol": protocol(settings),
        "energy": study_energy_model(study).to_attr(),
    }
    front_json = {**meta, "front": _front_points(front)}
    paths["pareto.json"].write_text(json.dumps(front_json, indent=2) + "\n")
    label = accuracy_label(settings)
    title = (
        f"{study.study_name}: {label} vs energy, {len(complete)} candidates, "
        f"Pareto front of {len(front)}"
    )
    pareto_figure(frame, title, label).write_html(paths["pareto.html"], include_plotlyjs=True)
    write_static_front(complete, front, title, label, paths["pareto.png"], paths["pareto.pdf"])
    summary = {**meta, **_summary(frame, history), "files": sorted(paths)}
    text = json.dumps(summary, indent=2, default=str)
    paths["summary.json"].write_text(text + "\n")
    return StudyExport(frame, front, tables, history, json.loads(text), paths)
