"""Export a study: trial tables, the Pareto front, an interactive plot, the hypervolume history.

Conventions (stated again in ``summary.json`` and ``docs/studies.md``):

- Objectives: ``accuracy`` (0..1, maximised) and ``energy_mj`` (mJ per image, minimised), priced
  by the energy model the study names (``energy`` in ``summary.json``); ``ann_energy_mj`` is the
  dense ANN equivalent under the same model.
- ``f_aeb``: the balanced fitness F_AEB of each complete trial *within the population of all
  complete trials at export time*, with the study's ``search.alpha`` (SPEC section 5). It is
  computed here, not stored per trial, because min-max scaling makes it depend on every rival:
  a value stored when a trial finished would be relative to a population that no longer exists.
- Budgets: ``feasible`` is False for a trial over one of the study's budgets (one of its Optuna
  constraints, ``trial.set_constraint``, is positive: the measured energy over ``max_energy_mj``,
  the parameters over ``max_params``); ``violation`` is the sum of its positive constraint
  values (0 when within every budget).
- Pareto front: complete feasible trials that no other complete feasible trial dominates (at
  least as accurate and at most as costly, better in one), the front of Optuna's
  ``study.best_trials`` and of optuna-dashboard. Trials with identical objectives are all on it.
- Hypervolume: the area dominated by the front and bounded by the reference point
  ``(accuracy 0, energy 1.1 x the largest energy of any complete trial)``, in accuracy x mJ, after
  each complete trial in order of completion (a trial over a budget adds nothing).
- Kendall tau (tau-b) between accuracy and energy over the complete trials: how strongly the
  search found "more accurate costs more" (a tau near +1 means the two objectives conflict);
  also, as the paper reports it, over the top 100 trials by F_AEB and over the first 100
  candidates the sampler drew uniformly at random (column ``random_draw``).
- Tables 2 / 3 (``front_and_top20.csv``): the front plus the trials of the top 20 % accuracy
  (the ``ceil(0.2 n)`` most accurate complete trials, and every trial tied with the last of them).
- Protocol: ``search.eval_split`` says which split ranked the candidates (``"test"``, the paper's,
  or ``"val"``, a held-out part of the training split); every accuracy column, axis and summary
  says which it is, and under ``"val"`` the front's ``test_accuracy`` is measured once after
  the search.
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

from autospikformer.pareto import hypervolume_history as hypervolume_steps
from autospikformer.pareto import pareto_mask
from autospikformer.search.architecture import (
    FIELDS,
    PER_BLOCK_FIELDS,
    Architecture,
    format_number,
)
from autospikformer.search.dsps import CANDIDATE_KEY
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.suggest import ARCH_ATTR, architecture_from_params
from autospikformer.study.pricing import study_energy_model
from autospikformer.study.static_figure import (
    marker_sizes,
    parameter_range,
    write_static_front,
)
from autospikformer.study.storage import (
    ANN_ENERGY_ATTR,
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
    TEST_ACCURACY_PREFIX,
    WORKER_ATTR,
    study_record,
    study_records,
)
from autospikformer.units import MJ, EnergyUnit, energy_unit

REFERENCE_ENERGY_FACTOR = 1.1
#: Tables 2 / 3: the front plus this fraction of the complete trials by accuracy.
TOP_FRACTION = 0.2
#: Kendall tau samples (SPEC section 8): the top this many by F_AEB, this many random draws.
TAU_SAMPLE = 100
#: Optuna's NSGA-II records each trial's generation under this system attribute.
NSGA2_GENERATION_KEY = "NSGAIISampler:generation"

#: Trial user attributes exported as named columns (attribute -> column).
ATTR_COLUMNS = {
    NUM_PARAMS_ATTR: "num_parameters",
    FIRING_RATE_ATTR: "mean_firing_rate",
    ANN_ENERGY_ATTR: "ann_energy_mj",
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
    "feasible",
    "violation",
    "generation",
    "random_draw",
    "architecture",
    *FIELDS,
    *ATTR_COLUMNS.values(),
    "test_accuracy",
    "test_samples",
    "datetime_start",
    "datetime_complete",
)
_HIDDEN_ATTRS = {ARCH_ATTR, ARCH_JSON_ATTR, *ATTR_COLUMNS}


# --- the numbers --------------------------------------------------------------------------------
def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b (scipy's, ties handled); NaN for fewer than two points or a constant input."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(scipy.stats.kendalltau(a, b).statistic)


# --- the tables ---------------------------------------------------------------------------------
def _block(values: tuple[Any, ...]) -> str:
    return ",".join(format_number(v) if isinstance(v, float) else str(v) for v in values)


def _architecture(trial: FrozenTrial) -> Architecture | None:
    try:
        return architecture_from_params(trial.params)
    except (ValueError, TypeError):
        return None


def trial_generation(trial: FrozenTrial) -> int | None:
    """The generation of an evolutionary sampler's trial (DSPS, DSPS+, NSGA-II), else None."""
    candidate = trial.system_attrs.get(CANDIDATE_KEY)
    if isinstance(candidate, dict) and isinstance(candidate.get("generation"), int):
        return int(candidate["generation"])
    generation = trial.system_attrs.get(NSGA2_GENERATION_KEY)
    return int(generation) if isinstance(generation, int) else None


def is_random_draw(trial: FrozenTrial, sampler: str | None) -> bool:
    """Whether the sampler drew this candidate uniformly from the space (the paper's "random
    candidates"): every trial of random search, DSPS's generation-0 draws, NSGA-II's
    generation 0; never an enqueued trial (the baseline). TPE's and GP's start-up draws are
    not counted: which trials they were depends on the order workers finished in."""
    if trial.user_attrs.get(BASELINE_ATTR):
        return False
    candidate = trial.system_attrs.get(CANDIDATE_KEY)
    if isinstance(candidate, dict):
        return candidate.get("origin") == "random"
    attrs = trial.system_attrs
    if "fixed_params" in attrs and "failed_trial" not in attrs:  # enqueued, not a retry
        return False
    if sampler == "random":
        return True
    return sampler == "nsga2" and trial.system_attrs.get(NSGA2_GENERATION_KEY) == 0


def test_accuracies(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> ``{"accuracy", "samples"}`` measured on the test split after a search
    under ``eval_split = "val"`` (study records ``autospik:test_accuracy:<number>``)."""
    out = {}
    for key, value in study_records(study).items():
        if key.startswith(TEST_ACCURACY_PREFIX) and isinstance(value, dict):
            out[int(key[len(TEST_ACCURACY_PREFIX) :])] = value
    return out


def study_settings(study: optuna.Study) -> dict[str, Any]:
    """The stored study configuration (``{}`` for a study autospik did not create)."""
    return study_record(study, CONFIG_ATTR) or {}


def trials_frame(study: optuna.Study, alpha: float = 0.5) -> pd.DataFrame:
    """Every trial as one row with exactly :data:`COLUMNS` (then any foreign user attributes)."""
    trials = study.get_trials(deepcopy=False)
    sampler = study_settings(study).get("search", {}).get("sampler")
    tested = test_accuracies(study)
    rows = []
    for t in trials:
        arch = _architecture(t)
        complete = t.state == TrialState.COMPLETE and t.values is not None
        violation = sum(max(0.0, float(v)) for v in t.constraints.values())
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "accuracy": t.values[0] if complete else np.nan,
            "energy_mj": t.values[1] if complete else np.nan,
            "f_aeb": np.nan,
            "pareto": False,
            "feasible": violation <= 0,
            "violation": violation,
            "generation": trial_generation(t),
            "random_draw": is_random_draw(t, sampler),
            "architecture": str(arch) if arch else t.user_attrs.get(ARCH_ATTR, ""),
        }
        for field in FIELDS:
            value = getattr(arch, field) if arch else None
            row[field] = _block(value) if field in PER_BLOCK_FIELDS and value is not None else value
        for attr, column in ATTR_COLUMNS.items():
            row[column] = t.user_attrs.get(attr)
        label = row["baseline"]
        row["baseline"] = "Spikformer" if label is True else (label or "")
        test = tested.get(t.number, {})
        row["test_accuracy"] = test.get("accuracy", np.nan)
        row["test_samples"] = test.get("samples")
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
        frame.loc[done, "pareto"] = pareto_mask(acc, en, frame.loc[done, "feasible"])
    frame["test_accuracy"] = frame["test_accuracy"].astype(float)
    for column in (
        "depth",
        "embed_dim",
        "time_steps",
        "num_parameters",
        "generation",
        "test_samples",
    ):
        frame[column] = frame[column].astype("Int64")
    return frame


def complete_and_front(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The complete trials of a :func:`trials_frame`, and its front sorted by rising energy."""
    complete = frame.loc[frame["state"] == TrialState.COMPLETE.name]
    front = complete.loc[complete["pareto"].astype(bool)]
    return complete, front.sort_values(["energy_mj", "number"])


def hypervolume_history(
    complete: pd.DataFrame, reference: tuple[float, float] | None = None
) -> pd.DataFrame:
    """Hypervolume after each complete trial, in order of completion; the reference in columns.

    ``reference`` is ``(accuracy, energy_mj)``; by default ``(0, 1.1 x the largest energy)``.
    Trials over a budget (``feasible`` False) add nothing; the front is kept incrementally.
    """
    if complete.empty:
        return pd.DataFrame(
            columns=["complete_trials", "trial", "hypervolume", "ref_accuracy", "ref_energy_mj"]
        )
    order = complete.sort_values(["datetime_complete", "number"], kind="stable")
    acc = order["accuracy"].to_numpy(float)
    en = order["energy_mj"].to_numpy(float)
    ref_acc, ref = reference or (0.0, REFERENCE_ENERGY_FACTOR * float(en.max()))
    if "feasible" in order:
        acc = np.where(order["feasible"].astype(bool).to_numpy(), acc, np.nan)
    values = hypervolume_steps(acc, en, ref, ref_accuracy=ref_acc)
    return pd.DataFrame(
        {
            "complete_trials": np.arange(1, acc.size + 1),
            "trial": order["number"].to_numpy(),
            "hypervolume": values,
            "ref_accuracy": ref_acc,
            "ref_energy_mj": ref,
        }
    )


def kendall_taus(complete: pd.DataFrame, sample: int = TAU_SAMPLE) -> dict[str, dict[str, Any]]:
    """Kendall tau between accuracy and energy as the paper reports it (SPEC section 8).

    ``top_f_aeb``: the ``sample`` complete trials of highest F_AEB (ties: lower trial number);
    ``random``: the first ``sample`` complete random draws by trial number (``n`` 0 where the
    study has none); ``all``: every complete trial. Each is ``{"tau": float | None, "n": int}``.
    """
    top = complete.sort_values(["f_aeb", "number"], ascending=[False, True]).head(sample)
    drawn = complete.loc[complete["random_draw"].astype(bool)].sort_values("number").head(sample)
    out = {}
    for name, part in (("top_f_aeb", top), ("random", drawn), ("all", complete)):
        tau = kendall_tau(part["accuracy"], part["energy_mj"]) if len(part) else math.nan
        out[name] = {"tau": jsonable(tau), "n": len(part)}
    return out


#: The columns of ``front_and_top20.csv`` (the paper's Tables 2 and 3), ``test_accuracy``
#: included only under the validation protocol.
TABLE_COLUMNS = (
    "number",
    "on_front",
    "top_accuracy",
    "accuracy",
    "test_accuracy",
    "energy_mj",
    "mean_firing_rate",
    "num_parameters",
    "f_aeb",
    "architecture",
    *FIELDS,
    "baseline",
)


def front_and_top(complete: pd.DataFrame, fraction: float = TOP_FRACTION) -> pd.DataFrame:
    """The paper's Tables 2 / 3: the front (``on_front``) plus the ``ceil(fraction n)`` most
    accurate trials and any tied with the last of them (``top_accuracy``); front first, then
    by rising energy."""
    if complete.empty:
        return pd.DataFrame(columns=[c for c in TABLE_COLUMNS if c != "test_accuracy"])
    k = max(1, math.ceil(fraction * len(complete)))
    cut = complete["accuracy"].sort_values(ascending=False).iloc[k - 1]
    table = complete.assign(
        on_front=complete["pareto"].astype(bool), top_accuracy=complete["accuracy"] >= cut
    )
    table = table.loc[table["on_front"] | table["top_accuracy"]]
    table = table.sort_values(["on_front", "energy_mj", "number"], ascending=[False, True, True])
    columns = [c for c in TABLE_COLUMNS if c in table.columns]
    if "test_accuracy" in columns and table["test_accuracy"].isna().all():
        columns.remove("test_accuracy")
    return table[columns].reset_index(drop=True)


def protocol(settings: dict[str, Any]) -> dict[str, Any]:
    """Which split ranked a study's candidates, in words that every export repeats."""
    search = settings.get("search", {})
    split = search.get("eval_split", "test")
    fraction = settings.get("data", {}).get("val_fraction")
    if split == "val":
        what = (
            f"validation accuracy: a held-out {fraction:g} of the training split, never "
            "trained on nor used for BN recalibration; test_accuracy measured once after the "
            "search"
        )
    else:
        what = "test accuracy: candidates ranked on the test split (the paper's protocol)"
    return {
        "eval_split": split,
        "val_fraction": fraction if split == "val" else None,
        "eval_samples": search.get("eval_samples"),
        "accuracy": what,
    }


def accuracy_label(settings: dict[str, Any]) -> str:
    """``"validation accuracy"`` or ``"test accuracy"``: the name of a study's objective 0."""
    split = settings.get("search", {}).get("eval_split", "test")
    return "validation accuracy" if split == "val" else "test accuracy"


def studies_frame(storage: optuna.storages.BaseStorage) -> pd.DataFrame:
    """One row per study of ``storage``: configuration, progress and best values so far."""
    rows = []
    for summary in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        config = study_settings(study)
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        within = [t for t in done if all(v <= 0 for v in t.constraints.values())]
        rows.append(
            {
                "study": summary.study_name,
                "dataset": config.get("data", {}).get("dataset", "?"),
                "space": config.get("space", {}).get("name", "?"),
                "sampler": config.get("search", {}).get("sampler", "?"),
                "complete": len(done),
                "target": config.get("search", {}).get("trials", "?"),
                "running": sum(t.state == TrialState.RUNNING for t in trials),
                "best_accuracy": max(t.values[0] for t in within) if within else math.nan,
                "min_energy_mj": min(t.values[1] for t in within) if within else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --- the plot -----------------------------------------------------------------------------------
FRONT_COLOUR = "#d62728"
OVER_BUDGET_COLOUR = "#7f7f7f"
BASELINE_MARKER = {
    "symbol": "star",
    "size": 20,
    "color": "#ffbf00",
    "line": {"width": 1.5, "color": "black"},
}


def size_legend(fig: Any, lo: float, hi: float, *, row: int | None = None) -> None:
    """Two grey legend entries that show the marker size of the smallest and largest model."""
    import plotly.graph_objects as go

    if not math.isfinite(lo):
        return
    for value in sorted({lo, hi}):
        trace = go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=f"{value:,.0f} parameters",
            legendgroup="size",
            legendgrouptitle={"text": "marker size"},
            marker={
                "size": float(marker_sizes([value], lo, hi)[0]),
                "color": "rgba(150,150,160,0.6)",
                "line": {"width": 1, "color": "#555"},
            },
            hoverinfo="skip",
        )
        if row is None:
            fig.add_trace(trace)
        else:
            fig.add_trace(trace, row=row, col=1)


def hover(
    part: pd.DataFrame, label: str = "accuracy", study: str | None = None, unit: EnergyUnit = MJ
) -> dict[str, Any]:
    """Plotly hover data of some trials: study, number, architecture, parameters, rate, F_AEB
    (the x values are energies in ``unit``)."""
    custom = (
        np.stack(
            [
                part["number"].to_numpy(),
                part["architecture"].to_numpy(),
                part["num_parameters"].astype("float").to_numpy(),
                part["mean_firing_rate"].astype("float").to_numpy(),
                part["f_aeb"].to_numpy(),
                part["generation"].astype("float").to_numpy(),
            ],
            axis=-1,
        )
        if len(part)
        else None
    )
    head = f"<b>{study}</b><br>" if study else ""
    generation = " (generation %{customdata[5]})" if part["generation"].notna().any() else ""
    return {
        "customdata": custom,
        "hovertemplate": (
            f"{head}trial %{{customdata[0]}}{generation}"
            f"<br>%{{customdata[1]}}<br>{label} %{{y:.2f}} %"
            f"<br>energy %{{x:.4g}} {unit.name}<br>parameters %{{customdata[2]:,.0f}}"
            "<br>firing rate %{customdata[3]:.3f}<br>F_AEB %{customdata[4]:.3f}<extra></extra>"
        ),
    }


def over_budget_trace(
    part: pd.DataFrame,
    accuracy: str,
    unit: EnergyUnit,
    study: str | None = None,
    colour: str = OVER_BUDGET_COLOUR,
    group: str | None = None,
) -> Any:
    """Plotly markers for complete trials over a budget (never on a front): small crosses,
    the hover saying by how much (the sum of the positive constraint values)."""
    import plotly.graph_objects as go

    head = f"<b>{study}</b><br>" if study else ""
    return go.Scatter(
        x=unit.scale(part["energy_mj"]),
        y=100 * part["accuracy"],
        mode="markers",
        name=f"over a budget ({len(part)}, not on the front)",
        legendgroup=group,
        marker={"symbol": "x-thin", "size": 8, "line": {"width": 1.5, "color": colour}},
        customdata=np.stack(
            [part["number"], part["architecture"], part["violation"].astype(float)], axis=-1
        )
        if len(part)
        else None,
        hovertemplate=(
            f"{head}trial %{{customdata[0]}} (over a budget by %{{customdata[2]:.4g}})"
            f"<br>%{{customdata[1]}}<br>{accuracy} %{{y:.2f}} %"
            f"<br>energy %{{x:.4g}} {unit.name}<extra></extra>"
        ),
    )


def pareto_figure(frame: pd.DataFrame, title: str, accuracy: str = "test accuracy") -> Any:
    """The paper's Fig. 1A for one study: accuracy (%) against energy (in the unit that reads
    best, :func:`~autospikformer.units.energy_unit`), every candidate with marker size by
    parameters and colour by generation (trial number for samplers without generations), the
    front as a step line, the hand-designed baseline as a star."""
    import plotly.graph_objects as go

    everything, front = complete_and_front(frame)
    unit = energy_unit(everything["energy_mj"])
    lo, hi = parameter_range(everything)
    over = everything.loc[~everything["feasible"].astype(bool)]
    complete = everything.loc[everything["feasible"].astype(bool)]
    has_generations = everything["generation"].notna().any()
    colour = complete["generation"] if has_generations else complete["number"]
    colour_name = "generation" if has_generations else "trial number"
    fig = go.Figure()
    if len(over):
        fig.add_trace(over_budget_trace(over, accuracy, unit))
    fig.add_trace(
        go.Scatter(
            x=unit.scale(complete["energy_mj"]),
            y=100 * complete["accuracy"],
            mode="markers",
            name=f"candidates ({len(complete)}), colour: {colour_name}",
            marker={
                "size": marker_sizes(complete["num_parameters"], lo, hi),
                "color": colour.astype(float),
                "colorscale": "Viridis",
                "opacity": 0.75,
                "line": {"width": 0.5, "color": "white"},
                "colorbar": {
                    "title": {"text": colour_name},
                    "thickness": 14,
                    "dtick": max(1, math.ceil(float(colour.max()) / 10)) if len(colour) else 1,
                },
                "showscale": len(complete) > 0,
            },
            **hover(complete, accuracy, unit=unit),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=unit.scale(front["energy_mj"]),
            y=100 * front["accuracy"],
            mode="lines+markers",
            name=f"Pareto front ({len(front)})",
            line={"shape": "hv", "color": FRONT_COLOUR, "width": 2},
            marker={  # filled: the front stays readable on top of a thousand candidates
                "size": marker_sizes(front["num_parameters"], lo, hi),
                "color": "rgba(255,255,255,0.85)",
                "line": {"width": 2, "color": FRONT_COLOUR},
            },
            **hover(front, accuracy, unit=unit),
        )
    )
    tested = front[front["test_accuracy"].notna()]
    if len(tested):
        fig.add_trace(
            go.Scatter(
                x=unit.scale(tested["energy_mj"]),
                y=100 * tested["test_accuracy"],
                mode="markers",
                name=f"front on the test split ({len(tested)}, measured once after the search)",
                marker={"symbol": "x-thin", "size": 11, "line": {"width": 2, "color": "black"}},
                customdata=np.stack([tested["number"], 100 * tested["accuracy"]], axis=-1),
                hovertemplate=(
                    "trial %{customdata[0]}<br>test accuracy %{y:.2f} %<br>"
                    f"{accuracy} %{{customdata[1]:.2f}} %<br>energy %{{x:.4g}} {unit.name}<extra></extra>"
                ),
            )
        )
    base = everything[everything["baseline"].astype(bool)]
    if len(base):
        fig.add_trace(
            go.Scatter(
                x=unit.scale(base["energy_mj"]),
                y=100 * base["accuracy"],
                mode="markers",
                name=f"{base['baseline'].iloc[0]} (hand-designed)",
                marker=BASELINE_MARKER,
                **hover(base, accuracy, unit=unit),
            )
        )
    size_legend(fig, lo, hi)
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title=f"energy per image ({unit.name})",
        yaxis_title=f"{accuracy} (%)" + ("; x: test accuracy (%)" if len(tested) else ""),
        legend={"orientation": "h", "x": 0.0, "y": -0.14, "xanchor": "left", "yanchor": "top"},
        hovermode="closest",
        margin={"t": 60, "r": 20, "b": 120},
    )
    return fig


# --- everything ---------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return jsonable(float(value))
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
    "pareto.png",
    "pareto.pdf",
    "hypervolume.csv",
    "front_and_top20.csv",
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
                "num_parameters": jsonable(row["num_parameters"]),
                "mean_firing_rate": jsonable(row["mean_firing_rate"]),
                "test_accuracy": jsonable(row["test_accuracy"]),
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
    }


def export_study(study: optuna.Study, out_dir: str | Path) -> dict[str, Path]:
    """Write trials.csv, pareto.csv/json/html, pareto.png/pdf (static, for papers),
    hypervolume.csv, front_and_top20.csv and summary.json into ``out_dir``; returns their paths
    by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = study_settings(study)
    alpha = float(settings.get("search", {}).get("alpha", 0.5))
    frame = trials_frame(study, alpha)
    complete, front = complete_and_front(frame)
    history = hypervolume_history(complete)
    paths = {name: out / name for name in EXPORT_FILES}
    frame.to_csv(paths["trials.csv"], index=False)
    front.to_csv(paths["pareto.csv"], index=False)
    history.to_csv(paths["hypervolume.csv"], index=False)
    front_and_top(complete).to_csv(paths["front_and_top20.csv"], index=False)
    meta = {
        "study": study.study_name,
        "metrics": ["accuracy", "energy_mj"],
        "directions": ["maximize", "minimize"],
        "alpha": alpha,
        "protocol": protocol(settings),
        "energy": study_energy_model(study).to_attr(),
    }
    front_json = {**meta, "front": _front_points(study, front)}
    paths["pareto.json"].write_text(json.dumps(front_json, indent=2) + "\n")
    label = accuracy_label(settings)
    title = (
        f"{study.study_name}: {label} vs energy, {len(complete)} candidates, "
        f"Pareto front of {len(front)}"
    )
    pareto_figure(frame, title, label).write_html(paths["pareto.html"], include_plotlyjs=True)
    write_static_front(complete, front, title, label, paths["pareto.png"], paths["pareto.pdf"])
    summary = {**meta, **_summary(frame, history), "files": sorted(paths)}
    paths["summary.json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return paths
