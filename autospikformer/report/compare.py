"""Several studies side by side: the paper's Figs. 5 and 6 (for example DSPS against random search
on one supernet).

- **Which studies.** Each is a name in a storage; studies may live in different storages
  (``name@URL``, or one ``--storage`` per study). Studies whose trials were priced by different
  energy models (study attribute :data:`~autospikformer.study.storage.ENERGY_ATTR`) are refused:
  their energies are not in the same unit of cost.
- **One reference point for all.** Hypervolumes are only comparable against one reference: the
  Pareto front of every complete trial of every study pooled (trials over a budget left out),
  its nadir (lowest accuracy, highest energy) moved out by 10 % of the front's range in each
  objective (Ishibuchi et al., 2018; ``benchmarks/sampler_quality.py`` does the same). ``hypervolume_normalised`` divides
  by the box between that reference and the pooled front's ideal point, so 1 would be a
  single candidate at once the most accurate and the cheapest of all. A pooled front of one
  point has no range; then the margin is 10 % of the point's own values.
- **Kendall tau** between accuracy and energy per study, for its top 100 trials by F_AEB (within
  the study) and for its first 100 random draws (:func:`~autospikformer.report.export.kendall_taus`).
- Accuracy is each study's objective 0: test or validation accuracy by its ``search.eval_split``;
  studies of different data sets or protocols are compared with a warning, not refused.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autospikformer.errors import AutospikError
from autospikformer.pareto import REFERENCE_MARGIN
from autospikformer.pareto import shared_reference as pareto_reference
from autospikformer.report.plots import (
    BASELINE_MARKER,
    hover,
    marker_sizes,
    over_budget_trace,
    parameter_range,
    size_legend,
)
from autospikformer.report.pricing import require_same_energy_model
from autospikformer.report.tables import (
    accuracy_label,
    complete_and_front,
    hypervolume_history,
    jsonable,
    kendall_taus,
    protocol,
    study_settings,
    trials_frame,
)
from autospikformer.study.storage import (
    DEFAULT_STORAGE,
    StudyError,
    describe_url,
    load_study,
    open_storage,
)
from autospikformer.units import energy_text, energy_unit, percent

COMPARE_FILES = ("compare.html", "compare.csv", "compare.json", "hypervolume.csv", "fronts.csv")
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "x", "pentagon", "hexagon")


class CompareError(AutospikError, ValueError):
    """Studies that cannot be compared as asked; the message is one line."""


# --- which studies -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyRef:
    """One study to compare: its name and the storage URL it lives in."""

    name: str
    storage: str

    @classmethod
    def parse(cls, target: str, storage: str) -> StudyRef:
        """``name`` (in ``storage``) or ``name@URL``. A URL holds ``://``, which tells the study's
        ``@`` from one inside the URL (``postgresql://user:pw@host/db``)."""
        name, sep, url = target.partition("@")
        if sep and "://" in url:
            if not name:
                raise CompareError(f"{target!r}: no study name before '@' (expected name@URL)")
            return cls(name, url)
        return cls(target, storage)


def study_refs(targets: list[str], storages: list[str] | None = None) -> list[StudyRef]:
    """The studies named on the command line; ``storages``: none (the default storage), one
    (for every study) or one per study, in order. ``name@URL`` wins over either."""
    storages = list(storages or [])
    if len(targets) < 2:
        raise CompareError(f"compare needs at least two studies, got {len(targets)}")
    if len(storages) > 1 and len(storages) != len(targets):
        raise CompareError(
            f"--storage given {len(storages)} times for {len(targets)} studies: give it once "
            "(for all), once per study (in order), or write name@URL"
        )
    per_study = storages * len(targets) if len(storages) == 1 else storages
    refs = [
        StudyRef.parse(t, per_study[i] if per_study else DEFAULT_STORAGE)
        for i, t in enumerate(targets)
    ]
    seen = set()
    for ref in refs:
        if ref in seen:
            raise CompareError(f"study {ref.name!r} of {describe_url(ref.storage)} is named twice")
        seen.add(ref)
    return refs


# --- the numbers ---------------------------------------------------------------------------------
def shared_reference(
    completes: list[pd.DataFrame], margin: float = REFERENCE_MARGIN
) -> dict[str, float]:
    """The shared reference point of several studies' complete trials, and the box it spans
    (:func:`autospikformer.pareto.shared_reference` of the feasible ones pooled).

    Returns ``accuracy``, ``energy_mj`` (the reference), ``ideal_accuracy``,
    ``ideal_energy_mj`` (the pooled front's best values) and ``box`` (the area between them).
    """
    pooled = pd.concat(
        [
            c[["accuracy", "energy_mj", *(["feasible"] if "feasible" in c else [])]]
            for c in completes
        ],
        ignore_index=True,
    )
    if "feasible" in pooled:
        pooled = pooled[pooled["feasible"].fillna(True).astype(bool)]
    reference = pareto_reference(pooled["accuracy"], pooled["energy_mj"], margin)
    if reference is None:
        raise CompareError(
            "none of the studies has a complete trial within its budgets: nothing to compare"
        )
    return reference


@dataclass
class ComparedStudy:
    """One study of a comparison: its trials and its figures on the shared reference."""

    label: str
    ref: StudyRef
    study: optuna.Study
    settings: dict[str, Any]
    frame: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def complete(self) -> pd.DataFrame:
        return complete_and_front(self.frame)[0]

    @property
    def front(self) -> pd.DataFrame:
        return complete_and_front(self.frame)[1]

    def figures(self, box: float) -> dict[str, Any]:
        """The study's row of ``compare.csv``."""
        complete, front = complete_and_front(self.frame)
        search = self.settings.get("search", {})
        hv = float(self.history["hypervolume"].iloc[-1]) if len(self.history) else 0.0
        taus = kendall_taus(complete)
        base = complete[complete["baseline"].astype(bool)]
        within = complete.loc[complete["feasible"].astype(bool)]
        return {
            "study": self.label,
            "name": self.ref.name,
            "storage": describe_url(self.ref.storage),
            "dataset": self.settings.get("data", {}).get("dataset"),
            "space": self.settings.get("space", {}).get("name"),
            "sampler": search.get("sampler"),
            "eval_split": protocol(self.settings)["eval_split"],
            "complete": len(complete),
            "over_budget": len(complete) - len(within),
            "front_size": len(front),
            "hypervolume": hv,
            "hypervolume_normalised": hv / box,
            "best_accuracy": jsonable(within["accuracy"].max()) if len(within) else None,
            "lowest_energy_mj": jsonable(within["energy_mj"].min()) if len(within) else None,
            "kendall_tau_top": taus["top_f_aeb"]["tau"],
            "kendall_tau_top_n": taus["top_f_aeb"]["n"],
            "kendall_tau_random": taus["random"]["tau"],
            "kendall_tau_random_n": taus["random"]["n"],
            "baseline_accuracy": float(base["accuracy"].iloc[0]) if len(base) else None,
            "baseline_energy_mj": float(base["energy_mj"].iloc[0]) if len(base) else None,
        }


@dataclass
class Comparison:
    """Loaded studies, the shared reference, and the warnings a reader should see."""

    studies: list[ComparedStudy]
    reference: dict[str, float]
    pricing: dict[str, Any]
    warnings: list[str]

    def table(self) -> pd.DataFrame:
        """One row of figures per study (``compare.csv``)."""
        return pd.DataFrame([s.figures(self.reference["box"]) for s in self.studies])


def _labels(refs: list[StudyRef]) -> list[str]:
    """Study names, with the storage added where two studies share a name."""
    names = [r.name for r in refs]
    return [
        f"{r.name} ({describe_url(r.storage)})" if names.count(r.name) > 1 else r.name for r in refs
    ]


def load_comparison(refs: list[StudyRef]) -> Comparison:
    """Open every study, refuse different energy pricing, compute the shared reference and each
    study's hypervolume against it after each of its complete trials."""
    loaded = []
    for ref, label in zip(refs, _labels(refs), strict=True):
        study, _ = load_study(open_storage(ref.storage), ref.name)
        settings = study_settings(study)
        alpha = float(settings.get("search", {}).get("alpha", 0.5))
        loaded.append(ComparedStudy(label, ref, study, settings, trials_frame(study, alpha)))
    try:
        first = require_same_energy_model([s.study for s in loaded]).to_attr()
    except StudyError as exc:
        raise CompareError(str(exc)) from None
    reference = shared_reference([s.complete for s in loaded])
    point = (reference["accuracy"], reference["energy_mj"])
    for s in loaded:
        s.history = hypervolume_history(s.complete, point)
    warnings = []
    for key, what in (("dataset", "data sets"), ("eval_split", "evaluation splits")):
        values = {
            s.label: (
                s.settings.get("data", {}).get("dataset")
                if key == "dataset"
                else protocol(s.settings)["eval_split"]
            )
            for s in loaded
        }
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{k}: {v}" for k, v in values.items())
            warnings.append(
                f"the studies use different {what} ({shown}); their accuracies are not comparable"
            )
    return Comparison(loaded, reference, first, warnings)


# --- the page ------------------------------------------------------------------------------------
def _accuracy_axis(comparison: Comparison) -> str:
    labels = {accuracy_label(s.settings) for s in comparison.studies}
    return labels.pop() if len(labels) == 1 else "accuracy (test or validation: see the table)"


def _study_traces(
    fig: Any, s: ComparedStudy, i: int, scale: tuple[float, float], axis: str, unit: Any
) -> None:
    """One study's candidates (over a budget apart) and its front, in its colour and symbol."""
    import plotly.graph_objects as go

    lo, hi = scale
    colour, symbol = _COLOURS[i % len(_COLOURS)], _SYMBOLS[i % len(_SYMBOLS)]
    complete, front = complete_and_front(s.frame)
    within = complete["feasible"].astype(bool)
    rest = complete.loc[~complete["pareto"].astype(bool) & within]
    if not within.all():
        fig.add_trace(
            over_budget_trace(complete.loc[~within], axis, unit, s.label, colour, s.label)
        )
    sampler = s.settings.get("search", {}).get("sampler", "?")
    fig.add_trace(
        go.Scatter(
            x=unit.scale(rest["energy_mj"]),
            y=100 * rest["accuracy"],
            mode="markers",
            name=f"candidates ({len(complete)})",
            legendgroup=s.label,
            legendgrouptitle={"text": f"{s.label} ({sampler})"},
            marker={
                "symbol": symbol,
                "size": marker_sizes(rest["num_parameters"], lo, hi),
                "color": colour,
                "opacity": 0.3,
                "line": {"width": 0},
            },
            **hover(rest, axis, s.label, unit=unit),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=unit.scale(front["energy_mj"]),
            y=100 * front["accuracy"],
            mode="lines+markers",
            name=f"Pareto front ({len(front)})",
            legendgroup=s.label,
            line={"shape": "hv", "color": colour, "width": 2.5},
            marker={
                "symbol": symbol,
                "size": marker_sizes(front["num_parameters"], lo, hi),
                "color": colour,
                "line": {"width": 1.2, "color": "black"},
            },
            **hover(front, axis, s.label, unit=unit),
        )
    )


def _baseline_stars(fig: Any, comparison: Comparison, axis: str, unit: Any) -> None:
    """The hand-designed baseline of each study, one star per distinct point."""
    import plotly.graph_objects as go

    stars: dict[tuple[float, float], list[tuple[str, pd.DataFrame]]] = {}
    for s in comparison.studies:
        complete = s.complete
        base = complete[complete["baseline"].astype(bool)]
        for _, row in base.iterrows():
            key = (float(row["energy_mj"]), float(row["accuracy"]))
            stars.setdefault(key, []).append((s.label, base.loc[[row.name]]))
    for (energy, accuracy), owners in stars.items():
        name = owners[0][1]["baseline"].iloc[0]
        fig.add_trace(
            go.Scatter(
                x=[unit.scale(energy)],
                y=[100 * accuracy],
                mode="markers",
                name=f"{name} (hand-designed; in {', '.join(o for o, _ in owners)})",
                legendgroup="baseline",
                legendgrouptitle={"text": "baseline"},
                marker=BASELINE_MARKER,
                **hover(owners[0][1], axis, ", ".join(o for o, _ in owners)),
            )
        )


def _reference_marker(fig: Any, comparison: Comparison, unit: Any) -> None:
    """The shared reference point as a cross."""
    import plotly.graph_objects as go

    ref = comparison.reference
    fig.add_trace(
        go.Scatter(
            x=[unit.scale(ref["energy_mj"])],
            y=[100 * ref["accuracy"]],
            mode="markers",
            name="shared reference point",
            legendgroup="reference",
            legendgrouptitle={"text": "hypervolume"},
            marker={"symbol": "x-thin", "size": 14, "line": {"width": 2, "color": "black"}},
            hovertemplate=(
                "shared reference point<br>accuracy %{y:.2f} %<br>energy %{x:.4g} "
                f"{unit.name}<extra></extra>"
            ),
        )
    )


def fronts_figure(comparison: Comparison) -> Any:
    """Every study's candidates and front on one accuracy/energy plane; marker size by
    parameters (one scale for all), the baseline as a star, the shared reference as a cross."""
    import plotly.graph_objects as go

    lo, hi = parameter_range(*[s.complete for s in comparison.studies])
    axis = _accuracy_axis(comparison)
    unit = energy_unit(pd.concat([s.complete["energy_mj"] for s in comparison.studies]))
    fig = go.Figure()
    for i, s in enumerate(comparison.studies):
        _study_traces(fig, s, i, (lo, hi), axis, unit)
    _baseline_stars(fig, comparison, axis, unit)
    _reference_marker(fig, comparison, unit)
    size_legend(fig, lo, hi)
    fig.update_layout(
        title="Pareto fronts: " + " vs ".join(s.label for s in comparison.studies),
        template="plotly_white",
        xaxis_title=f"energy per image ({unit.name})",
        yaxis_title=f"{axis} (%)",
        hovermode="closest",
        legend={"groupclick": "togglegroup", "tracegroupgap": 12},
        margin={"t": 60},
        height=620,
    )
    return fig


def hypervolume_figure(comparison: Comparison) -> Any:
    """Each study's normalised hypervolume against its number of complete trials."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, s in enumerate(comparison.studies):
        history = s.history
        fig.add_trace(
            go.Scatter(
                x=history["complete_trials"],
                y=history["hypervolume"] / comparison.reference["box"],
                mode="lines",
                line={"shape": "hv", "color": _COLOURS[i % len(_COLOURS)], "width": 2.5},
                name=s.label,
                customdata=history["trial"],
                hovertemplate=(
                    f"<b>{s.label}</b><br>%{{x}} complete trials (last: trial %{{customdata}})"
                    "<br>hypervolume %{y:.4f}<extra></extra>"
                ),
            )
        )
    ref = comparison.reference
    fig.update_layout(
        title=(
            "Hypervolume against trials, shared reference: accuracy "
            f"{percent(ref['accuracy'])} %, energy {energy_text(ref['energy_mj'])}"
        ),
        template="plotly_white",
        xaxis_title="complete trials",
        yaxis_title="hypervolume / reference box",
        yaxis_rangemode="tozero",
        hovermode="x unified",
        height=420,
        margin={"t": 60},
    )
    return fig


_FIGURE_COLUMNS = {
    "study": "study",
    "sampler": "sampler",
    "dataset": "data set",
    "eval_split": "split",
    "complete": "complete trials",
    "front_size": "front",
    "hypervolume_normalised": "hypervolume (normalised)",
    "hypervolume": "hypervolume (accuracy x mJ)",
    "best_accuracy": "best accuracy",
    "lowest_energy_mj": "lowest energy",
    "kendall_tau_top": "Kendall tau, top by F_AEB",
    "kendall_tau_random": "Kendall tau, random draws",
}


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row[key]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if key == "best_accuracy":
        return f"{percent(value)} %"
    if key == "lowest_energy_mj":
        return html.escape(energy_text(value))
    if key in ("hypervolume_normalised",):
        return f"{value:.4f}"
    if key == "hypervolume":
        return f"{value:.4g}"
    if key.startswith("kendall_tau"):
        return f"{value:.3f} (n {row[key + '_n']})"
    return html.escape(str(value))


def _page(comparison: Comparison, fronts: Any, history: Any) -> str:
    """One self-contained HTML page: the two figures, the figures table, how to read them."""
    rows = comparison.table().to_dict("records")
    head = "".join(f"<th>{html.escape(t)}</th>" for t in _FIGURE_COLUMNS.values())
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(k, row)}</td>" for k in _FIGURE_COLUMNS) + "</tr>"
        for row in rows
    )
    ref = comparison.reference
    notes = "".join(f"<p class='warn'>warning: {html.escape(w)}</p>" for w in comparison.warnings)
    protocols = "".join(
        f"<li><b>{html.escape(s.label)}</b>: {html.escape(protocol(s.settings)['accuracy'])}; "
        f"storage {html.escape(describe_url(s.ref.storage))}</li>"
        for s in comparison.studies
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>autospik compare: {html.escape(" vs ".join(s.label for s in comparison.studies))}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #222; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }}
p, li {{ font-size: 14px; line-height: 1.45; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 5px 10px; text-align: right; }}
th {{ background: #f4f4f6; }} td:first-child, th:first-child {{ text-align: left; white-space: nowrap; }}
.warn {{ color: #a04000; font-weight: 600; }}
</style></head><body>
<h1>Studies compared: {html.escape(", ".join(s.label for s in comparison.studies))}</h1>
{notes}
<table><tr>{head}</tr>{body}</table>
<p>Hypervolume: the area (accuracy x mJ) a front dominates up to one shared reference point,
accuracy {percent(ref["accuracy"], 3)} %, energy {energy_text(ref["energy_mj"], 5)}: the nadir of the front
of all studies' trials pooled, moved out by {REFERENCE_MARGIN:.0%} of that front's range.
Normalised: divided by the box between the reference and the pooled front's ideal point
(accuracy {percent(ref["ideal_accuracy"])} %, energy {energy_text(ref["ideal_energy_mj"])}).
Kendall tau (tau-b) between accuracy and energy: over each study's top trials by F_AEB, and
over its random draws (n: how many; the paper uses 100 of each). Energy model
{html.escape(comparison.pricing["model"])}. Marker size grows with the parameter count (one scale
for every study); click a legend title to hide a study.</p>
<ul>{protocols}</ul>
{fronts.to_html(full_html=False, include_plotlyjs=True)}
{history.to_html(full_html=False, include_plotlyjs=False)}
</body></html>
"""


#: The columns of ``fronts.csv`` (every study's front) and of ``hypervolume.csv``.
FRONT_COLUMNS = (
    "study", "number", "accuracy", "test_accuracy", "energy_mj", "num_parameters",
    "mean_firing_rate", "f_aeb", "architecture", "baseline",
)  # fmt: skip
HISTORY_COLUMNS = (
    "study", "complete_trials", "trial", "hypervolume", "hypervolume_normalised",
    "ref_accuracy", "ref_energy_mj",
)  # fmt: skip


def _histories(comparison: Comparison) -> pd.DataFrame:
    """Every study's hypervolume after each of its trials, on the shared reference."""
    box = comparison.reference["box"]
    histories = [
        s.history.assign(study=s.label, hypervolume_normalised=s.history["hypervolume"] / box)
        for s in comparison.studies
    ]
    return pd.concat(histories, ignore_index=True)[list(HISTORY_COLUMNS)]


def _summary(comparison: Comparison, table: pd.DataFrame) -> dict[str, Any]:
    """``compare.json``: each study's figures, protocol and front; the shared reference."""
    ref = comparison.reference
    point_columns = list(FRONT_COLUMNS[1:])
    studies = [
        {
            **{k: jsonable(v) for k, v in row.items()},
            "protocol": protocol(s.settings),
            "front": [
                {k: jsonable(v) for k, v in point.items()}
                for point in s.front[point_columns].to_dict("records")
            ],
        }
        for s, row in zip(comparison.studies, table.to_dict("records"), strict=True)
    ]
    return {
        "studies": studies,
        "reference_point": {"accuracy": ref["accuracy"], "energy_mj": ref["energy_mj"]},
        "ideal_point": {"accuracy": ref["ideal_accuracy"], "energy_mj": ref["ideal_energy_mj"]},
        "reference_box": ref["box"],
        "reference_rule": (
            f"nadir of the pooled Pareto front moved out by {REFERENCE_MARGIN:g} of its range "
            "in each objective; hypervolume_normalised = hypervolume / reference_box"
        ),
        "energy": comparison.pricing,
        "warnings": comparison.warnings,
    }


def write_comparison(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write compare.html, compare.csv, compare.json, hypervolume.csv and fronts.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in COMPARE_FILES}
    table = comparison.table()
    table.to_csv(paths["compare.csv"], index=False)
    _histories(comparison).to_csv(paths["hypervolume.csv"], index=False)
    fronts = pd.concat(
        [s.front.assign(study=s.label) for s in comparison.studies], ignore_index=True
    )
    fronts[list(FRONT_COLUMNS)].to_csv(paths["fronts.csv"], index=False)
    summary = {**_summary(comparison, table), "files": sorted(paths)}
    paths["compare.json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    page = _page(comparison, fronts_figure(comparison), hypervolume_figure(comparison))
    paths["compare.html"].write_text(page)
    return paths


def compare_studies(
    targets: list[str], out_dir: str | Path, storages: list[str] | None = None
) -> tuple[Comparison, dict[str, Path]]:
    """``autospik study compare``: load the studies named by ``targets`` and write the files."""
    comparison = load_comparison(study_refs(targets, storages))
    return comparison, write_comparison(comparison, out_dir)
