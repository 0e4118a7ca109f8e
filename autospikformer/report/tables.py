"""A study's trials as tables: one row per trial, the front, the hypervolume history, Kendall
tau, the paper's Tables 2 / 3, the protocol. Every report (export, show, list, compare) reads
these.

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
- Trained subnets (``autospik subnet train``, ``study validate``; SPEC section 9):
  ``trained_accuracy`` is the trial's subnet trained as a standalone model, measured as the
  trial was (same split and images, so it sits beside ``accuracy``), ``trained_test_accuracy``
  on the whole test split, ``trained_energy_mj`` the same pass's energy, ``trained_schedule``
  the schedule's id; a trial trained with several schedules shows the one that finished last.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.stats
from optuna.trial import FrozenTrial, TrialState

from autospikformer.optuna_api import FAILED_TRIAL_KEY, FIXED_PARAMS_KEY, read_trials
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
from autospikformer.study.holdout import test_accuracies
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
    WORKER_ATTR,
    study_record,
)
from autospikformer.study.trained_subnets import latest_trained

REFERENCE_ENERGY_FACTOR = 1.1
#: Tables 2 / 3: the front plus this fraction of the complete trials by accuracy.
TOP_FRACTION = 0.2
#: Kendall tau samples (SPEC section 8): the top this many by F_AEB, this many random draws.
TAU_SAMPLE = 100
#: Bootstrap resamples behind a Kendall tau's interval.
TAU_RESAMPLES = 400
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
#: A trained subnet's record entry -> its column (the schedule that finished last).
TRAINED_COLUMNS = {
    "accuracy": "trained_accuracy",
    "test_accuracy": "trained_test_accuracy",
    "energy_mj": "trained_energy_mj",
    "schedule_id": "trained_schedule",
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
    *TRAINED_COLUMNS.values(),
    "datetime_start",
    "datetime_complete",
)
_HIDDEN_ATTRS = {ARCH_ATTR, ARCH_JSON_ATTR, *ATTR_COLUMNS}


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b (scipy's, ties handled); NaN for fewer than two points or a constant input."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(scipy.stats.kendalltau(a, b).statistic)


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
    if FIXED_PARAMS_KEY in attrs and FAILED_TRIAL_KEY not in attrs:  # enqueued, not a retry
        return False
    if sampler == "random":
        return True
    return sampler == "nsga2" and trial.system_attrs.get(NSGA2_GENERATION_KEY) == 0


def study_settings(study: optuna.Study) -> dict[str, Any]:
    """The stored study configuration (``{}`` for a study autospik did not create)."""
    return study_record(study, CONFIG_ATTR) or {}


def _measured_after(test: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """A trial's columns measured after the search: its front test pass (``test``, under the
    validation protocol) and its trained subnet's record (``trained``); ``{}``: none."""
    row = {"test_accuracy": test.get("accuracy", np.nan), "test_samples": test.get("samples")}
    for key, column in TRAINED_COLUMNS.items():
        row[column] = trained.get(key, "" if key == "schedule_id" else np.nan)
    return row


def trials_frame(study: optuna.Study, alpha: float = 0.5) -> pd.DataFrame:
    """Every trial as one row with exactly :data:`COLUMNS` (then any foreign user attributes)."""
    trials = read_trials(study)
    sampler = study_settings(study).get("search", {}).get("sampler")
    tested = test_accuracies(study)
    trained = latest_trained(study)
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
            value = t.user_attrs.get(attr)  # a dict (what an evaluation ran) as JSON text
            row[column] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        label = row["baseline"]
        row["baseline"] = "Spikformer" if label is True else (label or "")
        row.update(_measured_after(tested.get(t.number, {}), trained.get(t.number, {})))
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


def tau_interval(
    x: Any, y: Any, level: float = 0.9, resamples: int = TAU_RESAMPLES
) -> tuple[float, float] | None:
    """A bootstrap interval of Kendall's tau (``level`` of the resampled taus, seeded, so an
    export repeats): how far a tau over n points can move by chance alone; None below 3 points."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.size < 3:
        return None
    rng = np.random.default_rng(0)
    taus = []
    for _ in range(resamples):
        pick = rng.integers(0, a.size, a.size)
        tau = kendall_tau(a[pick], b[pick])
        if math.isfinite(tau):
            taus.append(tau)
    if not taus:
        return None
    lo, hi = np.quantile(taus, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def kendall_taus(complete: pd.DataFrame, sample: int = TAU_SAMPLE) -> dict[str, dict[str, Any]]:
    """Kendall tau between accuracy and energy as the paper reports it (SPEC section 8).

    ``top_f_aeb``: the ``sample`` complete trials of highest F_AEB (ties: lower trial number):
    where the search concentrated, mostly near the front; ``random``: the first ``sample``
    complete random draws by trial number (DSPS's generation 0: ``population_size`` of them;
    ``n`` 0 where the study has none), a property of the space rather than of the search;
    ``all``: every complete trial. Each is ``{"tau", "n", "interval", "over"}``: ``interval`` is a
    90 % bootstrap interval (:func:`tau_interval`), wide for a small ``n``.
    """
    top = complete.sort_values(["f_aeb", "number"], ascending=[False, True]).head(sample)
    drawn = complete.loc[complete["random_draw"].astype(bool)].sort_values("number").head(sample)
    over = {
        "top_f_aeb": f"the {sample} complete trials of highest F_AEB",
        "random": f"the first {sample} candidates drawn uniformly from the space",
        "all": "every complete trial",
    }
    out = {}
    for name, part in (("top_f_aeb", top), ("random", drawn), ("all", complete)):
        acc, energy = part["accuracy"], part["energy_mj"]
        tau = kendall_tau(acc, energy) if len(part) else math.nan
        interval = tau_interval(acc, energy) if name != "all" else None
        out[name] = {
            "tau": jsonable(tau),
            "n": len(part),
            "interval": None if interval is None else [round(v, 4) for v in interval],
            "over": over[name],
        }
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
                "eval_split": config.get("search", {}).get("eval_split", "test"),
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
