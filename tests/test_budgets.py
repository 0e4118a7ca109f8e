"""Budgets hold everywhere: the measured energy decides a trial's constraint, DSPS ranks parents
within the budgets first, and every view of the front (Optuna's ``best_trials``, optuna-dashboard,
``study show``, the export, ``study compare``) is the same front of trials within the budgets."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import tiny_study
from optuna.trial import TrialState
from typer.testing import CliRunner
from werkzeug.test import Client

from autospikformer.cli.app import app
from autospikformer.report.compare import compare_studies
from autospikformer.report.dashboard import dashboard_app
from autospikformer.report.export import export_study
from autospikformer.report.tables import trials_frame
from autospikformer.search.dsps import PARENTS_KEY_PREFIX, DSPSSampler
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.mirror import TrialSummary
from autospikformer.search.space import SearchSpace
from autospikformer.search.strategies import FitnessParents
from autospikformer.search.suggest import suggest_architecture
from autospikformer.study.storage import resolve_study
from autospikformer.study.workers import WorkerOptions, run_workers

N = 10


def _run(folder: Path, url: str, ckpt: Path, name: str, **search: object) -> optuna.Study:
    path = folder / f"{name}.toml"
    path.write_text(tiny_study(name, "random", options={}, trials=N, **search))
    resolve_study(str(path), url, create=True)
    outcome = run_workers(WorkerOptions(url, name, N, str(ckpt), device="cpu"), 1)
    assert outcome.complete == N
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def studies(tiny_supernet, tmp_path_factory) -> tuple[str, float, optuna.Study, Path]:
    """Two random-search studies of the same seed (same candidates): ``free`` without a budget,
    ``budget`` with ``max_energy_mj`` just below the costliest member of ``free``'s front, and an
    assumed firing rate so low that every estimate passes: the measured energy alone decides."""
    folder = tmp_path_factory.mktemp("budgets")
    url = f"sqlite:///{folder / 'budgets.db'}"
    free = _run(folder, url, tiny_supernet, "free")
    energies = sorted(t.values[1] for t in free.best_trials)
    budget = (energies[-2] + energies[-1]) / 2 if len(energies) > 1 else 0.99 * energies[0]
    study = _run(folder, url, tiny_supernet, "budget", max_energy_mj=budget, energy_rate=0.001)
    return url, budget, study, folder


def test_the_measured_energy_sets_the_constraint(studies) -> None:
    _, budget, study, _ = studies
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == N
    for t in complete:  # the value Optuna keeps is the measured one, not the estimate
        assert t.constraints == {"max_energy_mj": t.values[1] - budget}
    over = [t.number for t in complete if t.values[1] > budget]
    assert 0 < len(over) < N
    assert not set(over) & {t.number for t in study.best_trials}
    assert all(t.values[1] <= budget for t in study.best_trials)


def test_every_view_shows_the_same_front(studies) -> None:
    url, budget, study, folder = studies
    front = sorted(t.number for t in study.best_trials)
    assert front
    # the export: pareto.csv, and the feasible column of trials.csv
    exported = export_study(study, folder / "export")
    paths = exported.paths
    assert sorted(exported.front["number"]) == front
    assert sorted(pd.read_csv(paths["pareto.csv"])["number"]) == front
    trials = pd.read_csv(paths["trials.csv"])
    done = trials[trials["state"] == "COMPLETE"]
    assert (done["feasible"] == (done["energy_mj"] <= budget)).all()
    assert (done["violation"] == (done["energy_mj"] - budget).clip(lower=0)).all()
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["front_size"] == len(front)
    assert summary["over_budget"] == int((~done["feasible"]).sum())
    assert summary["best_accuracy"]["energy_mj"] <= budget
    # study show
    shown = CliRunner().invoke(app, ["study", "show", "budget", "--storage", url, "-f", "json"])
    assert shown.exit_code == 0, shown.output
    assert sorted(row["number"] for row in json.loads(shown.stdout)) == front
    # study compare (and its shared reference ignores the trials over the budget)
    comparison, cpaths = compare_studies(["budget", "free"], folder / "compare", [url])
    fronts = pd.read_csv(cpaths["fronts.csv"])
    assert sorted(fronts.loc[fronts["study"] == "budget", "number"]) == front
    # optuna-dashboard
    client = Client(dashboard_app(url))
    study_id = study._study_id
    body = client.get(f"/api/studies/{study_id}").get_json()
    assert sorted(t["number"] for t in body["best_trials"]) == front
    # the unconstrained study of the same candidates has a front with trials over the budget
    free = optuna.load_study(study_name="free", storage=url)
    assert any(t.values[1] > budget for t in free.best_trials)
    row = comparison.table().set_index("study").loc["budget"]
    assert (
        row["front_size"] == len(front)
        and row["best_accuracy"] == summary["best_accuracy"]["accuracy"]
    )


def test_the_hypervolume_ignores_trials_over_the_budget(studies) -> None:
    _, _, study, _ = studies
    frame = trials_frame(study)
    within = frame[(frame["state"] == "COMPLETE") & frame["feasible"]]
    assert set(frame.loc[frame["pareto"], "number"]) <= set(within["number"])


# --- DSPS parents ---------------------------------------------------------------------------
def _record(number: int, acc: float, energy: float, violation: float = 0.0) -> TrialSummary:
    return TrialSummary(
        number, number, TrialState.COMPLETE, None, 0, (acc, energy), True, None, violation
    )


def test_dsps_ranks_parents_within_the_budgets_first() -> None:
    records = [
        _record(0, 0.99, 0.1, violation=2.0),  # the best by F_AEB, but over a budget
        _record(1, 0.60, 0.5),
        _record(2, 0.90, 0.9),
        _record(3, 0.95, 0.2, violation=0.5),
        _record(4, 0.70, 0.3),
        _record(5, 0.50, 1.0, violation=0.5),
    ]
    feasible = [records[i] for i in (1, 2, 4)]
    fitness = balanced_fitness([r.values[0] for r in feasible], [r.values[1] for r in feasible])
    by_fitness = [r.number for _, r in sorted(zip(-fitness, feasible, strict=True))]
    assert FitnessParents(alpha=0.5).select(records, 5) == [*by_fitness, 3, 5]


def test_dsps_parents_of_a_study_with_a_budget() -> None:
    space = SearchSpace.load("digits")
    sampler = DSPSSampler(space=space, population_size=10, num_parents=4, seed=1)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        energy = arch.embed_dim * arch.time_steps * arch.depth / 64
        # the low thresholds are the most accurate, and over a budget: F_AEB alone prefers them
        trial.set_constraint("budget", 1.0 if arch.threshold[0] < 1.0 else -1.0)
        return arch.embed_dim / 64 - sum(arch.threshold) / 10, energy

    study.optimize(objective, n_trials=60)
    trials = {t.number: t for t in study.trials}
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for key, parents in attrs.items():
        if not key.startswith(PARENTS_KEY_PREFIX):
            continue
        feasible = [trials[n].constraints["budget"] <= 0 for n in parents]
        assert feasible == sorted(feasible, reverse=True), key  # within the budget first
        assert any(feasible)


def test_the_exported_front_of_an_nsga2_study_is_best_trials() -> None:
    """A study of Optuna's own sampler with constraints: the export agrees with Optuna."""
    space = SearchSpace.load("digits")
    sampler = optuna.samplers.NSGAIISampler(population_size=6, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    rng = random.Random(0)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        energy = rng.uniform(0, 2)
        trial.set_constraint("max_energy_mj", energy - 1.0)
        return arch.embed_dim / 64, energy

    study.optimize(objective, n_trials=12)
    assert all(t.values[1] <= 1.0 for t in study.best_trials)
    frame = trials_frame(study)
    front = frame.loc[frame["pareto"], "number"].tolist()
    assert sorted(front) == sorted(t.number for t in study.best_trials)
    assert not math.isnan(frame["violation"].max())
