"""Export a study: trial tables, the Pareto front, an interactive plot, the hypervolume history.

Conventions (stated again in ``summary.json`` and ``docs/studies.md``):

- Objectives: ``accuracy`` (0..1, maximised) and ``energy_mj`` (mJ per image, minimised).
- ``f_aeb``: the balanced fitness F_AEB of each complete trial *within the population of all
  complete trials at export time*, with the study's ``search.alpha`` (SPEC section 5). It is
  computed here, not stored per trial, because min-max scaling makes it depend on every rival:
  a value stored when a trial finished would be relative to a population that no longer exists.
- Pareto front: complete trials that no other complete trial dominates (at least as accurate and
  at most as costly, better in one). Trials with identical objectives are all on the front.
- Hypervolume: the area dominated by the front and bounded by the reference point
  ``(accuracy 0, energy 1.1 x the largest energy of any complete trial)``, in accuracy x mJ, after
  each complete trial in order of completion.
- Kendall tau (tau-b) between accuracy and energy over the complete trials: how strongly the
  search found "more accurate costs more" (a tau near +1 means the two objectives conflict).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.stats
from optuna.trial import FrozenTrial, TrialState

from autospikformer.search.architecture import FIELDS, PER_BLOCK_FIELDS, Architecture
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.suggest import ARCH_ATTR, architecture_from_params
from autospikformer.study.storage import (
    ARCH_JSON_ATTR,
    BASELINE_ATTR,
    CALIB_ATTR,
    CONFIG_ATTR,
    EVAL_SAMPLES_ATTR,
    EVALUATION_ATTR,
    FIRING_RATE_ATTR,
    NUM_PARAMS_ATTR,
    SECONDS_ATTR,
    SKIPPED_ATTR,
    WORKER_ATTR,
)

REFERENCE_ENERGY_FACTOR = 1.1

#: Trial user attributes exported as named columns (attribute -> column).
ATTR_COLUMNS = {
    NUM_PARAMS_ATTR: "num_parameters",
    FIRING_RATE_ATTR: "mean_firing_rate",
    SECONDS_ATTR: "seconds",
    CALIB_ATTR: "calib_batches",
    EVALUATION_ATTR: "evaluation",
    EVAL_SAMPLES_ATTR: "eval_samples",
    BASELINE_ATTR: "baseline",
    WORKER_ATTR: "worker",
    SKIPPED_ATTR: "skipped",
}
#: The exact columns of ``trials.csv`` and ``pareto.csv`` (plus any foreign user attributes).
COLUMNS = (
    "number",
    "state",
    "accuracy",
    "energy_mj",
    "f_aeb",
    "pareto",
    "architecture",
    *FIELDS,
    *ATTR_COLUMNS.values(),
    "datetime_start",
    "datetime_complete",
)
_HIDDEN_ATTRS = {ARCH_ATTR, ARCH_JSON_ATTR, *ATTR_COLUMNS}


# --- the numbers --------------------------------------------------------------------------------
def pareto_mask(accuracy: Any, energy: Any) -> np.ndarray:
    """True where no other point is at least as accurate, at most as costly and better in one."""
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy, dtype=float)
    mask = np.ones(acc.size, dtype=bool)
    for i in range(acc.size):
        dominated = (acc >= acc[i]) & (en <= en[i]) & ((acc > acc[i]) | (en < en[i]))
        mask[i] = not dominated.any()
    return mask


def hypervolume_2d(
    accuracy: Any, energy: Any, ref_energy: float, ref_accuracy: float = 0.0
) -> float:
    """Area dominated by the points (max accuracy, min energy) within the reference point.

    A sorted sweep: in order of rising energy, each point that beats the best accuracy so far
    adds the strip ``(acc - best) x (ref_energy - energy)``.
    """
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy, dtype=float)
    keep = (en < ref_energy) & (acc > ref_accuracy)
    order = np.lexsort((-acc[keep], en[keep]))
    best, area = ref_accuracy, 0.0
    for a, e in zip(acc[keep][order], en[keep][order], strict=True):
        if a > best:
            area += (a - best) * (ref_energy - e)
            best = a
    return float(area)


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b (scipy's, ties handled); NaN for fewer than two points or a constant input."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(scipy.stats.kendalltau(a, b).statistic)


# --- the tables ---------------------------------------------------------------------------------
def _block(values: tuple[Any, ...]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _architecture(trial: FrozenTrial) -> Architecture | None:
    try:
        return architecture_from_params(trial.params)
    except (ValueError, TypeError):
        return None


def trials_frame(study: optuna.Study, alpha: float = 0.5) -> pd.DataFrame:
    """Every trial as one row with exactly :data:`COLUMNS` (then any foreign user attributes)."""
    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        arch = _architecture(t)
        complete = t.state == TrialState.COMPLETE and t.values is not None
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "accuracy": t.values[0] if complete else np.nan,
            "energy_mj": t.values[1] if complete else np.nan,
            "f_aeb": np.nan,
            "pareto": False,
            "architecture": str(arch) if arch else t.user_attrs.get(ARCH_ATTR, ""),
        }
        for field in FIELDS:
            value = getattr(arch, field) if arch else None
            row[field] = _block(value) if field in PER_BLOCK_FIELDS and value is not None else value
        for attr, column in ATTR_COLUMNS.items():
            row[column] = t.user_attrs.get(attr)
        label = row["baseline"]
        row["baseline"] = "Spikformer" if label is True else (label or "")
        row["datetime_start"] = t.datetime_start
        row["datetime_complete"] = t.datetime_complete
        for key, value in t.user_attrs.items():
            if key not in _HIDDEN_ATTRS:
                row[key] = value if not isinstance(value, (dict, list)) else json.dumps(value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    extra = [c for c in frame.columns if c not in COLUMNS]
    frame = frame[[*COLUMNS, *extra]]
    done = frame["state"] == TrialState.COMPLETE.name
    if done.any():
        acc = frame.loc[done, "accuracy"].to_numpy(float)
        en = frame.loc[done, "energy_mj"].to_numpy(float)
        frame.loc[done, "f_aeb"] = balanced_fitness(acc, en, alpha)
        frame.loc[done, "pareto"] = pareto_mask(acc, en)
    for column in ("depth", "embed_dim", "time_steps", "num_parameters"):
        frame[column] = frame[column].astype("Int64")
    return frame


def complete_and_front(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The complete trials of a :func:`trials_frame`, and its front sorted by rising energy."""
    complete = frame.loc[frame["state"] == TrialState.COMPLETE.name]
    front = complete.loc[complete["pareto"].astype(bool)]
    return complete, front.sort_values(["energy_mj", "number"])


def hypervolume_history(complete: pd.DataFrame) -> pd.DataFrame:
    """Hypervolume after each complete trial, in order of completion; the reference in columns."""
    if complete.empty:
        return pd.DataFrame(
            columns=["complete_trials", "trial", "hypervolume", "ref_accuracy", "ref_energy_mj"]
        )
    order = complete.sort_values(["datetime_complete", "number"], kind="stable")
    acc = order["accuracy"].to_numpy(float)
    en = order["energy_mj"].to_numpy(float)
    ref = REFERENCE_ENERGY_FACTOR * float(en.max())
    values = [hypervolume_2d(acc[: k + 1], en[: k + 1], ref) for k in range(acc.size)]
    return pd.DataFrame(
        {
            "complete_trials": np.arange(1, acc.size + 1),
            "trial": order["number"].to_numpy(),
            "hypervolume": values,
            "ref_accuracy": 0.0,
            "ref_energy_mj": ref,
        }
    )


def studies_frame(storage: optuna.storages.BaseStorage) -> pd.DataFrame:
    """One row per study of ``storage``: configuration, progress and best values so far."""
    rows = []
    for summary in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        config = study.user_attrs.get(CONFIG_ATTR) or {}
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        rows.append(
            {
                "study": summary.study_name,
                "dataset": config.get("data", {}).get("dataset", "?"),
                "space": config.get("space", {}).get("name", "?"),
                "sampler": config.get("search", {}).get("sampler", "?"),
                "complete": len(done),
                "target": config.get("search", {}).get("trials", "?"),
                "running": sum(t.state == TrialState.RUNNING for t in trials),
                "best_accuracy": max(t.values[0] for t in done) if done else math.nan,
                "min_energy_mj": min(t.values[1] for t in done) if done else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --- the plot -----------------------------------------------------------------------------------
def _hover(part: pd.DataFrame) -> dict[str, Any]:
    """Plotly hover data of some trials: number, architecture, parameters, rate, F_AEB."""
    custom = (
        np.stack(
            [
                part["number"].to_numpy(),
                part["architecture"].to_numpy(),
                part["num_parameters"].astype("float").to_numpy(),
                part["mean_firing_rate"].astype("float").to_numpy(),
                part["f_aeb"].to_numpy(),
            ],
            axis=-1,
        )
        if len(part)
        else None
    )
    return {
        "customdata": custom,
        "hovertemplate": (
            "trial %{customdata[0]}<br>%{customdata[1]}<br>accuracy %{y:.2f} %"
            "<br>energy %{x:.4g} mJ<br>parameters %{customdata[2]:,.0f}"
            "<br>firing rate %{customdata[3]:.3f}<br>F_AEB %{customdata[4]:.3f}<extra></extra>"
        ),
    }


def pareto_figure(frame: pd.DataFrame, title: str) -> Any:
    """Accuracy (%) against energy (mJ): every candidate, the front as a step line, the baseline."""
    import plotly.graph_objects as go

    complete, front = complete_and_front(frame)
    rest = complete.loc[~complete["pareto"].astype(bool)]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=rest["energy_mj"],
            y=100 * rest["accuracy"],
            mode="markers",
            name="candidates",
            marker={"color": "rgba(120,120,140,0.45)", "size": 7},
            **_hover(rest),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=front["energy_mj"],
            y=100 * front["accuracy"],
            mode="lines+markers",
            name=f"Pareto front ({len(front)})",
            line={"shape": "hv", "color": "#d62728"},
            marker={"color": "#d62728", "size": 10, "line": {"width": 1, "color": "black"}},
            **_hover(front),
        )
    )
    base = complete[complete["baseline"].astype(bool)]
    if len(base):
        fig.add_trace(
            go.Scatter(
                x=base["energy_mj"],
                y=100 * base["accuracy"],
                mode="markers",
                name=f"{base['baseline'].iloc[0]} (hand-designed)",
                marker={
                    "symbol": "star",
                    "size": 18,
                    "color": "#ffbf00",
                    "line": {"width": 1, "color": "black"},
                },
                **_hover(base),
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="energy per image (mJ)",
        yaxis_title="accuracy (%)",
        legend={"x": 0.99, "y": 0.01, "xanchor": "right", "yanchor": "bottom"},
        hovermode="closest",
    )
    return fig


# --- everything ---------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _jsonable(float(value))
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


EXPORT_FILES = (
    "trials.csv",
    "pareto.csv",
    "pareto.json",
    "pareto.html",
    "hypervolume.csv",
    "summary.json",
)


def _front_points(study: optuna.Study, front: pd.DataFrame) -> list[dict[str, Any]]:
    """The front's members as JSON-safe dicts (``pareto.json``)."""
    trials_by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    points = []
    for _, row in front.iterrows():
        arch = architecture_from_params(trials_by_number[int(row["number"])].params)
        points.append(
            {
                "trial": int(row["number"]),
                "accuracy": float(row["accuracy"]),
                "energy_mj": float(row["energy_mj"]),
                "f_aeb": float(row["f_aeb"]),
                "architecture": str(arch),
                "architecture_json": arch.to_dict(),
                "num_parameters": _jsonable(row["num_parameters"]),
                "mean_firing_rate": _jsonable(row["mean_firing_rate"]),
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
    }


def _summary(frame: pd.DataFrame, history: pd.DataFrame) -> dict[str, Any]:
    """The study's figures in ``summary.json`` (without the study's name and settings)."""
    complete, front = complete_and_front(frame)
    ref = [0.0, float(history["ref_energy_mj"].iloc[0])] if len(history) else None
    base = complete[complete["baseline"].astype(bool)]
    empty = complete.empty
    return {
        "trials": {state: int(n) for state, n in frame["state"].value_counts().items()},
        "complete": len(complete),
        "front_size": len(front),
        "hypervolume": float(history["hypervolume"].iloc[-1]) if len(history) else 0.0,
        "reference_point": {"accuracy": ref[0], "energy_mj": ref[1]} if ref else None,
        "reference_point_rule": "accuracy 0, energy 1.1 x the largest energy of any complete trial",
        "kendall_tau_accuracy_energy": _jsonable(
            kendall_tau(complete["accuracy"], complete["energy_mj"])
        ),
        "f_aeb_population": "all complete trials at export time",
        "best_accuracy": None
        if empty
        else _trial_summary(complete.loc[complete["accuracy"].idxmax()]),
        "lowest_energy": None
        if empty
        else _trial_summary(complete.loc[complete["energy_mj"].idxmin()]),
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
    }


def export_study(study: optuna.Study, out_dir: str | Path) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, pareto.json, pareto.html, hypervolume.csv and summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = study.user_attrs.get(CONFIG_ATTR) or {}
    alpha = float(config.get("search", {}).get("alpha", 0.5))
    frame = trials_frame(study, alpha)
    complete, front = complete_and_front(frame)
    history = hypervolume_history(complete)
    paths = {name: out / name for name in EXPORT_FILES}
    frame.to_csv(paths["trials.csv"], index=False)
    front.to_csv(paths["pareto.csv"], index=False)
    history.to_csv(paths["hypervolume.csv"], index=False)
    meta = {
        "study": study.study_name,
        "metrics": ["accuracy", "energy_mj"],
        "directions": ["maximize", "minimize"],
        "alpha": alpha,
    }
    front_json = {**meta, "front": _front_points(study, front)}
    paths["pareto.json"].write_text(json.dumps(front_json, indent=2) + "\n")
    title = (
        f"{study.study_name}: accuracy vs energy, {len(complete)} candidates, "
        f"Pareto front of {len(front)}"
    )
    pareto_figure(frame, title).write_html(paths["pareto.html"], include_plotlyjs=True)
    summary = {**meta, **_summary(frame, history), "files": sorted(paths)}
    paths["summary.json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return paths
