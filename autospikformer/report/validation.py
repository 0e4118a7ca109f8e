"""Does the one-shot ranking hold? Inherited against trained accuracy (and energy) of the
candidates that ``autospik study validate`` trained with one schedule (SPEC section 9).

The supernet ranks candidates by accuracies with inherited weights; a ranking that does not
survive training on their own makes its fronts meaningless (Yu et al., ICLR 2020; Zela et al.,
NAS-Bench-1Shot1, ICLR 2020). Over the candidates trained with the schedule this reports Kendall's
tau-b and Spearman's rho (scipy's, with their p-values) between inherited and trained accuracy,
and the same for energy, and writes:

- ``validation.csv``: one row per candidate (:data:`VALIDATION_COLUMNS`; accuracies as fractions,
  energies in mJ per image, as ``trials.csv``);
- ``validation.json``: the correlations, the schedule, the protocol, the candidates;
- ``validation.html`` (interactive, plotly) and ``validation.png`` (static): the two scatters,
  each point a candidate, the front's members marked, the diagonal y = x.

Under ``search.eval_split = "val"`` both accuracies are on the validation images (the trial's
split); the trained test accuracy is a column beside them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.stats

from autospikformer.report.plots import FRONT_COLOUR
from autospikformer.report.tables import accuracy_label, jsonable, study_settings
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.trained_subnets import SubnetSchedule, records_of
from autospikformer.units import energy_unit

VALIDATION_FILES = ("validation.csv", "validation.json", "validation.html", "validation.png")
VALIDATION_COLUMNS = (
    "trial", "on_front", "architecture", "num_parameters", "inherited_accuracy",
    "start_accuracy", "trained_accuracy", "trained_test_accuracy", "inherited_energy_mj",
    "trained_energy_mj", "trained_ann_energy_mj", "epochs", "train_seconds", "checkpoint",
)  # fmt: skip
#: (name, inherited column, trained column) of each correlation reported.
PAIRS = (
    ("accuracy", "inherited_accuracy", "trained_accuracy"),
    ("energy", "inherited_energy_mj", "trained_energy_mj"),
)
OTHER_COLOUR = "#1f77b4"


def validation_frame(study: optuna.Study, trials: list[int], schedule_id: str) -> pd.DataFrame:
    """One row per candidate, trained (its record for ``schedule_id``) or not yet (NaN)."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    front = {t.number for t in study.best_trials}
    records = records_of(study, schedule_id)
    rows = []
    for number in trials:
        trial, record = by_number[number], records.get(number, {})
        rows.append(
            {
                "trial": number,
                "on_front": number in front,
                "architecture": str(architecture_from_params(trial.params)),
                "num_parameters": record.get("num_parameters"),
                "inherited_accuracy": trial.values[0],
                "start_accuracy": record.get("start_accuracy"),
                "trained_accuracy": record.get("accuracy"),
                "trained_test_accuracy": record.get("test_accuracy"),
                "inherited_energy_mj": trial.values[1],
                "trained_energy_mj": record.get("energy_mj"),
                "trained_ann_energy_mj": record.get("ann_energy_mj"),
                "epochs": record.get("epochs"),
                "train_seconds": record.get("train_seconds"),
                "checkpoint": record.get("checkpoint"),
            }
        )
    frame = pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))
    for column in ("start_accuracy", "trained_accuracy", "trained_test_accuracy"):
        frame[column] = frame[column].astype(float)
    for column in ("trained_energy_mj", "trained_ann_energy_mj", "train_seconds"):
        frame[column] = frame[column].astype(float)
    for column in ("num_parameters", "epochs"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _correlation(x: Any, y: Any) -> dict[str, Any]:
    """Kendall's tau-b and Spearman's rho of two columns over the rows where both are known."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    known = np.isfinite(a) & np.isfinite(b)
    a, b = a[known], b[known]
    out: dict[str, Any] = {"n": int(a.size)}
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:  # undefined: no ranking to compare
        return {**out, "kendall_tau": None, "kendall_p": None, "spearman_rho": None,
                "spearman_p": None}  # fmt: skip
    tau = scipy.stats.kendalltau(a, b)
    rho = scipy.stats.spearmanr(a, b)
    return {
        **out,
        "kendall_tau": jsonable(float(tau.statistic)),
        "kendall_p": jsonable(float(tau.pvalue)),
        "spearman_rho": jsonable(float(rho.statistic)),
        "spearman_p": jsonable(float(rho.pvalue)),
    }


def rank_correlations(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Kendall tau and Spearman rho (with p-values and the number of candidates) between the
    inherited and the trained accuracy, and energy, of a :func:`validation_frame`."""
    return {name: _correlation(frame[x], frame[y]) for name, x, y in PAIRS}


def _text(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


#: The two groups of candidates each panel shows: (on the front, legend, colour).
GROUPS = ((True, "on the front", FRONT_COLOUR), (False, "below it", OTHER_COLOUR))


@dataclass(frozen=True, kw_only=True)
class Panel:
    """One scatter: correlation ``name``, its columns, how values are scaled, the axis name."""

    name: str
    inherited: str
    trained: str
    scale: Callable[[Any], Any]
    axis: str

    def done(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The candidates trained already."""
        return frame.dropna(subset=[self.trained])

    def diagonal(self, frame: pd.DataFrame) -> tuple[float, float]:
        """Where y = x starts and ends: the range of both values."""
        done = self.done(frame)
        values = self.scale(pd.concat([done[self.inherited], done[self.trained]]))
        return (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)

    def title(self, correlations: dict[str, dict[str, Any]]) -> str:
        corr = correlations[self.name]
        return (
            f"{self.name}: Kendall tau {_text(corr['kendall_tau'])}, Spearman rho "
            f"{_text(corr['spearman_rho'])} ({corr['n']} candidates)"
        )


def panels(frame: pd.DataFrame, label: str) -> tuple[Panel, Panel]:
    """The accuracy panel (%) and the energy panel (in the unit that reads best)."""
    unit = energy_unit(frame["inherited_energy_mj"])
    (acc, acc_x, acc_y), (energy, en_x, en_y) = PAIRS
    return (
        Panel(
            name=acc, inherited=acc_x, trained=acc_y, scale=lambda s: 100 * s, axis=f"{label} (%)"
        ),
        Panel(
            name=energy,
            inherited=en_x,
            trained=en_y,
            scale=unit.scale,
            axis=f"energy per image ({unit.name})",
        ),
    )


def validation_figure(frame: pd.DataFrame, summary: dict[str, Any], label: str) -> Any:
    """The two scatters as one interactive page: each candidate inherited (x) against
    trained (y), the front's members marked, the diagonal y = x."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    shown = panels(frame, label)
    corr = summary["correlations"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[p.title(corr) for p in shown])
    for col, panel in enumerate(shown, 1):
        done = panel.done(frame)
        for on_front, name, colour in GROUPS:
            part = done[done["on_front"] == on_front]
            custom = np.stack([part["trial"], part["architecture"]], axis=-1) if len(part) else None
            fig.add_trace(
                go.Scatter(
                    x=panel.scale(part[panel.inherited]), y=panel.scale(part[panel.trained]),
                    mode="markers", name=f"{name} ({len(part)})", legendgroup=name,
                    showlegend=col == 1, customdata=custom,
                    marker={"size": 10, "color": colour, "line": {"width": 1, "color": "white"}},
                    hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}<br>inherited "
                    "%{x:.4g}<br>trained %{y:.4g}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        lo, hi = panel.diagonal(frame)
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", showlegend=col == 1,
                       line={"dash": "dash", "color": "#7f7f7f", "width": 1}, hoverinfo="skip"),
            row=1, col=col,
        )  # fmt: skip
        fig.update_xaxes(title_text=f"inherited {panel.axis}", row=1, col=col)
        fig.update_yaxes(title_text=f"trained {panel.axis}", row=1, col=col)
    fig.update_layout(title=summary["title"], template="plotly_white", hovermode="closest",
                      legend={"orientation": "h", "y": -0.2})  # fmt: skip
    return fig


def write_static(frame: pd.DataFrame, summary: dict[str, Any], label: str, png: Path) -> None:
    """The same two scatters as a PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    for ax, panel in zip(axes, panels(frame, label), strict=True):
        done = panel.done(frame)
        for on_front, name, colour in GROUPS:
            part = done[done["on_front"] == on_front]
            x, y = panel.scale(part[panel.inherited]), panel.scale(part[panel.trained])
            ax.scatter(x, y, s=36, color=colour, label=f"{name} ({len(part)})", zorder=3)
        lo, hi = panel.diagonal(frame)
        ax.plot([lo, hi], [lo, hi], "--", color="#7f7f7f", linewidth=1, label="y = x")
        ax.set_title(panel.title(summary["correlations"]), fontsize=9)
        ax.set_xlabel(f"inherited {panel.axis}")
        ax.set_ylabel(f"trained {panel.axis}")
        ax.grid(True, linewidth=0.4, alpha=0.5)
    axes[0].legend(fontsize=8)
    fig.suptitle(summary["title"], fontsize=9)
    fig.savefig(png, dpi=200)
    plt.close(fig)


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """What :func:`write_validation` wrote: the candidates' table, the summary, the paths."""

    frame: pd.DataFrame
    summary: dict[str, Any]
    paths: dict[str, Path]


def write_validation(
    study: optuna.Study, trials: list[int], schedule: SubnetSchedule, out_dir: str | Path
) -> ValidationReport:
    """Write the four files of the ranking check of ``trials`` trained with ``schedule``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = study_settings(study)
    label = accuracy_label(settings)
    frame = validation_frame(study, trials, schedule.id)
    trained = int(frame["trained_accuracy"].notna().sum())
    summary = {
        "study": study.study_name,
        "title": f"{study.study_name}: inherited vs trained ({schedule.describe()}), "
        f"{trained} of {len(trials)} candidates",
        "schedule": {**schedule.to_dict(), "describe": schedule.describe()},
        "accuracy": label,
        "candidates": list(trials),
        "trained": trained,
        "on_front": int(frame["on_front"].sum()),
        "correlations": rank_correlations(frame),
        "method": "scipy.stats.kendalltau (tau-b) and scipy.stats.spearmanr over the candidates "
        "trained with the schedule, inherited against trained values",
    }
    paths = {name: out / name for name in VALIDATION_FILES}
    frame.to_csv(paths["validation.csv"], index=False)
    summary["files"] = sorted(paths)
    paths["validation.json"].write_text(json.dumps(summary, indent=2) + "\n")
    validation_figure(frame, summary, label).write_html(
        paths["validation.html"], include_plotlyjs=True
    )
    write_static(frame, summary, label, paths["validation.png"])
    return ValidationReport(frame=frame, summary=summary, paths=paths)
