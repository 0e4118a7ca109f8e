"""``autospik study export``: every file of a study's report, written from its tables and plots.

The files and what each holds are listed in :data:`EXPORT_FILES` and docs/studies.md ("Export");
the conventions behind the numbers are :mod:`autospikformer.report.tables`'. :func:`export_study`
returns what it wrote (the frames, the summary, the paths), so a caller never reads them back.

An export is written as a whole or not at all: every file goes to a staging folder beside the
final ones first; only when all are written are they renamed into place, ``summary.json`` (the
list of the set's files) last, under a lock on the folder, so two commands exporting at once
take turns. A full disk or a kill while writing leaves the previous export as it was (and the
staging folder, which the next export removes); a folder with ``summary.json`` holds one
complete set.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autospikformer.errors import AutospikError
from autospikformer.processes import dead_here, folder_lock, machine_label
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


class ExportError(AutospikError):
    """An export that could not be written (the message names the file and the option); the
    previous export in the folder is left as it was."""


SUMMARY = "summary.json"  # written last: the set's manifest
_STAGING = re.compile(r"\.export\.(\d+)@(.+)\.[0-9a-f]+\.tmp")


def _remove_stale_staging(out: Path) -> None:
    """Delete staging folders that exports killed mid-write left in ``out`` (this machine's
    writers that are gone; a live writer's, or another machine's in a shared folder, stay)."""
    for candidate in out.glob(".export.*.tmp"):
        match = _STAGING.fullmatch(candidate.name)
        if match and dead_here(f"{match.group(2)}:{match.group(1)}"):
            shutil.rmtree(candidate, ignore_errors=True)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _commit(staging: Path, out: Path) -> None:
    """Rename the staged files into ``out``, the manifest last, after removing the old one (a
    reader who finds ``summary.json`` finds the set it lists)."""
    names = [name for name in EXPORT_FILES if name != SUMMARY] + [SUMMARY]
    for name in names:
        _fsync(staging / name)
    with folder_lock(out):
        (out / SUMMARY).unlink(missing_ok=True)
        for name in names:
            os.replace(staging / name, out / name)
        _fsync(out)


def _written(where: str, steps: dict[str, Callable[[], Any]]) -> None:
    """Run each step (``"write trials.csv"``: its writer); a failure is one
    :class:`ExportError` naming the step's file."""
    for step, run in steps.items():
        try:
            run()
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            advice = "free some space" if full else "choose a writable place"
            raise ExportError(
                f"{where}: cannot {step} ({exc.strerror or exc}); {advice}; the export there "
                "was left as it was"
            ) from None


@dataclass(frozen=True)
class _Report:
    """Everything an export writes, computed before the first file is."""

    frame: pd.DataFrame
    complete: pd.DataFrame
    front: pd.DataFrame
    history: pd.DataFrame
    tables: pd.DataFrame
    front_json: dict[str, Any]
    summary_text: str
    title: str
    label: str


def _report(study: optuna.Study) -> _Report:
    settings = study_settings(study)
    alpha = float(settings.get("search", {}).get("alpha", 0.5))
    frame = trials_frame(study, alpha)
    complete, front = complete_and_front(frame)
    history = hypervolume_history(complete)
    meta = {
        "study": study.study_name,
        "metrics": ["accuracy", "energy_mj"],
        "directions": ["maximize", "minimize"],
        "alpha": alpha,
        "protocol": protocol(settings),
        "energy": study_energy_model(study).to_attr(),
    }
    label = accuracy_label(settings)
    title = (
        f"{study.study_name}: {label} vs energy, {len(complete)} candidates, "
        f"Pareto front of {len(front)}"
    )
    summary = {**meta, **_summary(frame, history), "files": sorted(EXPORT_FILES)}
    return _Report(
        frame, complete, front, history, front_and_top(complete),
        {**meta, "front": _front_points(front)},
        json.dumps(summary, indent=2, default=str), title, label,
    )  # fmt: skip


def _writers(r: _Report, at: dict[str, Path]) -> dict[str, Callable[[], Any]]:
    """Each file's writer, into the paths ``at``."""
    return {
        "write trials.csv": lambda: r.frame.to_csv(at["trials.csv"], index=False),
        "write pareto.csv": lambda: r.front.to_csv(at["pareto.csv"], index=False),
        "write hypervolume.csv": lambda: r.history.to_csv(at["hypervolume.csv"], index=False),
        "write front_and_top20.csv": lambda: r.tables.to_csv(
            at["front_and_top20.csv"], index=False
        ),
        "write pareto.json": lambda: at["pareto.json"].write_text(
            json.dumps(r.front_json, indent=2) + "\n"
        ),
        "write pareto.html": lambda: pareto_figure(r.frame, r.title, r.label).write_html(
            at["pareto.html"], include_plotlyjs=True
        ),
        "write pareto.png and pareto.pdf": lambda: write_static_front(
            r.complete, r.front, r.title, r.label, at["pareto.png"], at["pareto.pdf"]
        ),
        f"write {SUMMARY}": lambda: at[SUMMARY].write_text(r.summary_text + "\n"),
    }


def export_study(
    study: optuna.Study, out_dir: str | Path, *, option: str | None = None
) -> StudyExport:
    """Write trials.csv, pareto.csv/json/html, pareto.png/pdf (static, for papers),
    hypervolume.csv, front_and_top20.csv and summary.json into ``out_dir``, as a whole (see
    the module docstring); returns what it wrote. ``option`` names where ``out_dir`` came from
    (``--out``) in an error."""
    out = Path(out_dir)
    where = f"{option} {out}" if option else f"export folder {out}"
    report = _report(study)
    _written(where, {"create the folder": lambda: out.mkdir(parents=True, exist_ok=True)})
    _remove_stale_staging(out)
    staging = out / f".export.{os.getpid()}@{machine_label()}.{secrets.token_hex(4)}.tmp"
    try:
        at = {name: staging / name for name in EXPORT_FILES}
        _written(where, {"create a staging folder": staging.mkdir, **_writers(report, at)})
        _written(where, {"rename the files into place": lambda: _commit(staging, out)})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = {name: out / name for name in EXPORT_FILES}
    r = report
    return StudyExport(r.frame, r.front, r.tables, r.history, json.loads(r.summary_text), paths)
