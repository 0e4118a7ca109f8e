"""Tests of the DSPS sampler (autospikformer.search.dsps), in the style of Optuna's sampler tests."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.samplers import BaseSampler
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.testing.pytest_samplers import MultiObjectiveSamplerTestCase
from optuna.trial import TrialState

from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture, spikformer_4_384
from autospikformer.search.dsps import (
    CANDIDATE_KEY,
    CONFIG_KEY,
    PARENTS_KEY_PREFIX,
    DSPSSampler,
)
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.mirror import StudyMirror, summarize
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import architecture_params, suggest_architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)

BIG = SearchSpace.load("S_T2+S_S")
SMALL = SearchSpace.load("digits")
DIRECTIONS = ["maximize", "minimize"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for SQLite files: in RAM where the OS offers one (disk syncs dominate else)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="autospik-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _objective(space: SearchSpace) -> Callable[[optuna.Trial], tuple[float, float]]:
    """Trivial but informative: bigger/more time steps is more accurate and costs more."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        acc = arch.embed_dim / 100 + sum(arch.mlp_ratio) - sum(abs(t - 1.0) for t in arch.threshold)
        energy = arch.embed_dim * arch.depth * arch.time_steps / sum(arch.tau)
        return acc, energy

    return objective


def _run(sampler: DSPSSampler, n: int, space: SearchSpace = BIG, **kw: Any) -> optuna.Study:
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler, **kw)
    study.optimize(_objective(space), n_trials=n)
    return study


def _gen(trial: optuna.trial.FrozenTrial) -> int:
    return trial.system_attrs[CANDIDATE_KEY]["generation"]


def _arch(trial: optuna.trial.FrozenTrial) -> Architecture:
    return Architecture.from_dict(trial.system_attrs[CANDIDATE_KEY]["architecture"])


# --- Optuna's reusable suite: independent sampling of non-architecture parameters -----------
class TestDSPSMultiObjectiveSuite(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=0)


# --- constructor ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"space": "S_T2+S_S"}, "space"),
        ({"population_size": 1}, "population_size"),
        ({"population_size": 10.0}, "population_size"),
        ({"population_size": True}, "population_size"),
        ({"num_parents": 0}, "num_parents"),
        ({"num_parents": 60}, "num_parents"),
        ({"crossover_prob": 1.5}, "crossover_prob"),
        ({"crossover_prob": "0.3"}, "crossover_prob"),
        ({"mutation_prob": -0.1}, "mutation_prob"),
        ({"alpha": 2}, "alpha"),
        ({"feasible": 3}, "feasible"),
        ({"max_redraws": 0}, "max_redraws"),
        ({"seed": 1.5}, "seed"),
        ({"settle_timeout": -1.0}, "settle_timeout"),
        ({"settle_timeout": float("inf")}, "settle_timeout"),
        ({"settle_timeout": "1"}, "settle_timeout"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict[str, Any], name: str) -> None:
    args: dict[str, Any] = {"space": BIG, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}: "):
        DSPSSampler(**args)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        DSPSSampler(BIG)  # type: ignore[misc]


def test_storage_keys_are_pinned() -> None:
    # Renaming any of these breaks resuming existing studies.
    assert CANDIDATE_KEY == "autospik:dsps:candidate"
    assert PARENTS_KEY_PREFIX == "autospik:dsps:parents:"
    assert CONFIG_KEY == "autospik:dsps:config"


def test_refuses_other_directions() -> None:
    for directions in (["minimize", "minimize"], ["maximize"], ["minimize", "maximize"]):
        study = optuna.create_study(directions=directions, sampler=DSPSSampler(space=SMALL))
        with pytest.raises(ValueError, match=r"directions \['maximize', 'minimize'\]"):
            study.optimize(lambda t: suggest_architecture(t, SMALL).depth, n_trials=1)
        assert study.trials[0].state == TrialState.FAIL


def test_other_directions_are_refused_at_the_first_suggestion_of_any_parameter() -> None:
    """Before the objective can evaluate anything: a learning rate suggested first fails too."""
    evaluated = []

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        evaluated.append(trial.number)
        return suggest_architecture(trial, SMALL).depth

    study = optuna.create_study(directions=["minimize"], sampler=DSPSSampler(space=SMALL))
    with pytest.raises(ValueError, match=r"directions \['maximize', 'minimize'\]"):
        study.optimize(objective, n_trials=1)
    assert evaluated == [] and study.trials[0].state == TrialState.FAIL


class _CountingRandomSampler(optuna.samplers.RandomSampler):
    """Optuna's RandomSampler that counts the hooks it receives."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: Counter[str] = Counter()

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.calls["before_trial"] += 1
        super().before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        self.calls["after_trial"] += 1
        super().after_trial(study, trial, state, values)


def test_the_hooks_reach_the_inner_sampler() -> None:
    """As NSGA-II and TPE do, DSPS forwards before_trial / after_trial to the sampler it uses for
    parameters that are not architecture parameters."""
    sampler = DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=0)
    inner = sampler._random = _CountingRandomSampler()

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        arch = suggest_architecture(trial, SMALL)
        return arch.embed_dim * lr, float(arch.depth)

    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    study.optimize(objective, n_trials=6)
    assert inner.calls == {"before_trial": 6, "after_trial": 6}


# --- generations ---------------------------------------------------------------------------
def test_1000_trials_are_20_generations_of_50() -> None:
    study = _run(DSPSSampler(space=BIG, seed=0), 1000)
    trials = study.get_trials(deepcopy=False)
    assert Counter(_gen(t) for t in trials) == {g: 50 for g in range(20)}
    # Generations are contiguous in a sequential run.
    assert [_gen(t) for t in trials] == [n // 50 for n in range(1000)]
    origins = Counter(t.system_attrs[CANDIDATE_KEY]["origin"] for t in trials)
    assert origins["random"] == 50 and origins["copy"] + origins["crossover"] == 950
    # No architecture is evaluated twice, and each trial's parameters are its candidate.
    archs = [_arch(t) for t in trials]
    assert len(set(archs)) == 1000
    assert all(architecture_params(a) == t.params for a, t in zip(archs, trials, strict=True))
    storage = study._storage
    attrs = storage.get_study_system_attrs(study._study_id)
    assert sorted(k for k in attrs if k.startswith(PARENTS_KEY_PREFIX)) == sorted(
        f"{PARENTS_KEY_PREFIX}{g}" for g in range(1, 20)
    )


def test_parents_are_the_best_by_balanced_fitness() -> None:
    study = _run(DSPSSampler(space=BIG, seed=3, alpha=0.7), 160)
    trials = study.get_trials(deepcopy=False)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    previous_parents: list[int] = []
    for g in (1, 2, 3):
        pool = [t.number for t in trials if _gen(t) == g - 1] + previous_parents
        acc = [trials[n].values[0] for n in pool]
        energy = [trials[n].values[1] for n in pool]
        fitness = balanced_fitness(acc, energy, 0.7)
        expected = [pool[i] for i in sorted(range(len(pool)), key=lambda i: (-fitness[i], pool[i]))]
        assert attrs[f"{PARENTS_KEY_PREFIX}{g}"] == expected[:20]
        previous_parents = expected[:20]
    # Elitism: parents compete with the new generation and some survive it (so the check above
    # would fail were the pool the new generation alone).
    carried = set(attrs[f"{PARENTS_KEY_PREFIX}3"]) & set(attrs[f"{PARENTS_KEY_PREFIX}2"])
    assert carried and all(_gen(trials[n]) < 2 for n in carried)


def test_children_only_take_values_from_the_choice_lists() -> None:
    study = _run(DSPSSampler(space=BIG, seed=5, mutation_prob=1.0, crossover_prob=1.0), 150)
    for trial in study.get_trials(deepcopy=False):
        arch = _arch(trial)
        assert BIG.contains(arch), str(arch)
        for field in PER_BLOCK_FIELDS:
            assert len(getattr(arch, field)) == arch.depth


def test_mutation_moves_every_gene_with_probability_one() -> None:
    sampler = DSPSSampler(
        space=SMALL, population_size=4, num_parents=1, mutation_prob=1.0, crossover_prob=0.0, seed=2
    )
    study = _run(sampler, 5, SMALL)
    trials = study.get_trials(deepcopy=False)
    parent = _arch(
        trials[study._storage.get_study_system_attrs(study._study_id)[f"{PARENTS_KEY_PREFIX}1"][0]]
    )
    child = _arch(trials[4])
    assert trials[4].system_attrs[CANDIDATE_KEY]["origin"] == "copy"
    assert child.depth != parent.depth
    assert child.embed_dim != parent.embed_dim
    assert child.time_steps != parent.time_steps
    for i in range(min(child.depth, parent.depth)):
        for field in PER_BLOCK_FIELDS:
            assert getattr(child, field)[i] != getattr(parent, field)[i]


def test_no_mutation_no_crossover_copies_parents_until_redraw() -> None:
    # Copies of parents are all duplicates, so every child falls back to a uniform draw.
    sampler = DSPSSampler(
        space=SMALL,
        population_size=4,
        num_parents=2,
        mutation_prob=0.0,
        crossover_prob=0.0,
        max_redraws=6,
        seed=0,
    )
    study = _run(sampler, 8, SMALL)
    trials = study.get_trials(deepcopy=False)
    assert [t.system_attrs[CANDIDATE_KEY]["origin"] for t in trials[4:]] == ["random"] * 4
    assert len({_arch(t) for t in trials}) == 8


# --- determinism and resume ----------------------------------------------------------------
def test_determinism_under_a_seed() -> None:
    a = [t.params for t in _run(DSPSSampler(space=BIG, seed=11), 120).trials]
    b = [t.params for t in _run(DSPSSampler(space=BIG, seed=11), 120).trials]
    c = [t.params for t in _run(DSPSSampler(space=BIG, seed=12), 120).trials]
    assert a == b
    assert a != c


def test_resume_with_a_new_sampler_instance(db_dir: Path) -> None:
    url = f"sqlite:///{db_dir / 'resume.db'}"
    reference = _run(DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=4), 10, SMALL)
    study = optuna.create_study(
        directions=DIRECTIONS,
        storage=url,
        study_name="s",
        sampler=DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=4),
    )
    study.optimize(_objective(SMALL), n_trials=5)
    # A fresh process would do exactly this: load the study with a new sampler.
    resumed = optuna.load_study(
        study_name="s",
        storage=url,
        sampler=DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=4),
    )
    resumed.optimize(_objective(SMALL), n_trials=5)
    assert [t.params for t in resumed.trials] == [t.params for t in reference.trials]
    assert Counter(_gen(t) for t in resumed.trials) == {0: 4, 1: 4, 2: 2}


def test_different_settings_on_resume_warn() -> None:
    study = _run(DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=0), 4, SMALL)
    study.sampler = DSPSSampler(space=SMALL, population_size=5, num_parents=2, seed=0)
    with pytest.warns(UserWarning, match="population_size=4"):
        study.optimize(_objective(SMALL), n_trials=1)


def test_reseed_rng_changes_the_draws() -> None:
    sampler = DSPSSampler(space=BIG, seed=1)
    sampler.reseed_rng()
    a = [t.params for t in _run(sampler, 10).trials]
    b = [t.params for t in _run(DSPSSampler(space=BIG, seed=1), 10).trials]
    assert a != b


# --- enqueued, re-queued, constraints ------------------------------------------------------
def test_enqueued_baseline_counts_toward_generation_zero() -> None:
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=DSPSSampler(space=BIG, population_size=10, num_parents=4)
    )
    baseline = spikformer_4_384()
    study.enqueue_trial(architecture_params(baseline))
    study.optimize(_objective(BIG), n_trials=20)
    trials = study.get_trials(deepcopy=False)
    assert _arch(trials[0]) == baseline
    assert trials[0].system_attrs[CANDIDATE_KEY] == {
        "generation": 0,
        "architecture": baseline.to_dict(),
        "origin": "enqueued",
        "draw": 0,
    }
    assert [_gen(t) for t in trials] == [0] * 10 + [1] * 10
    assert baseline not in {_arch(t) for t in trials[1:]}


def test_partly_enqueued_parameters_are_respected() -> None:
    study = optuna.create_study(directions=DIRECTIONS, sampler=DSPSSampler(space=BIG, seed=0))
    study.enqueue_trial({"depth": 3, "time_steps": 2, "tau_1": 10.0})
    study.optimize(_objective(BIG), n_trials=1)
    arch = _arch(study.trials[0])
    assert (arch.depth, arch.time_steps, arch.tau[1]) == (3, 2, 10.0)
    assert study.trials[0].params["tau_1"] == 10.0


def test_requeued_failed_trial_keeps_candidate_and_generation() -> None:
    sampler = DSPSSampler(space=BIG, population_size=5, num_parents=2, seed=0)
    study = _run(sampler, 7)
    trial = study.ask()
    suggest_architecture(trial, BIG)
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[-1]
    RetryHeartbeatStaleTrialCallback()(study, failed)
    study.optimize(_objective(BIG), n_trials=1)
    retried = study.trials[-1]
    assert retried.system_attrs["failed_trial"] == failed.number
    assert retried.state == TrialState.COMPLETE
    assert retried.system_attrs[CANDIDATE_KEY] == failed.system_attrs[CANDIDATE_KEY]
    assert retried.params == failed.params


def test_feasible_rejects_candidates_before_evaluation() -> None:
    seen: list[Architecture] = []

    def feasible(arch: Architecture) -> bool:
        return arch.depth <= 3 and arch.embed_dim <= 384

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        seen.append(suggest_architecture(trial, BIG))
        return float(seen[-1].embed_dim), float(seen[-1].depth)

    study = optuna.create_study(
        directions=DIRECTIONS,
        sampler=DSPSSampler(space=BIG, population_size=10, num_parents=4, feasible=feasible),
    )
    study.optimize(objective, n_trials=40)
    assert len(seen) == 40 and all(feasible(a) for a in seen)


def test_no_feasible_candidate_fails_the_trial_clearly() -> None:
    study = optuna.create_study(
        directions=DIRECTIONS,
        sampler=DSPSSampler(space=SMALL, feasible=lambda a: False, max_redraws=5),
    )
    with pytest.raises(RuntimeError, match=r"all 5 candidates.*rejected by `feasible`"):
        study.optimize(_objective(SMALL), n_trials=1)
    assert study.trials[0].state == TrialState.FAIL


def test_other_parameters_are_sampled_randomly() -> None:
    study = optuna.create_study(directions=DIRECTIONS, sampler=DSPSSampler(space=SMALL, seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, SMALL)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        return lr, float(arch.depth)

    study.optimize(objective, n_trials=10)
    lrs = [t.params["lr"] for t in study.trials]
    assert all(1e-4 <= v <= 1e-1 for v in lrs) and len(set(lrs)) == 10


def test_objective_over_another_space_is_refused() -> None:
    study = optuna.create_study(directions=DIRECTIONS, sampler=DSPSSampler(space=BIG, seed=0))
    with pytest.raises(ValueError, match="build the objective and the sampler from the same"):
        study.optimize(_objective(SMALL), n_trials=1)


# --- concurrency ---------------------------------------------------------------------------
def test_threads_share_one_study_without_duplicates() -> None:
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=DSPSSampler(space=SMALL, population_size=10, num_parents=4)
    )
    study.optimize(_objective(SMALL), n_trials=60, n_jobs=3)
    trials = study.get_trials(deepcopy=False)
    assert len({_arch(t) for t in trials}) == 60
    # One sampler shared by three threads: a draw waits for the other threads' lower trials.
    assert _exact_generations(trials, 10) == {g: 10 for g in range(6)}


def _exact_generations(trials: list[optuna.trial.FrozenTrial], population: int) -> Counter[int]:
    """Generation sizes of a study whose trials all completed; every one but the last is full."""
    counts = Counter(_gen(t) for t in trials)
    last = max(counts)
    assert sorted(counts) == list(range(last + 1))
    assert all(counts[g] == population for g in range(last)), counts
    assert counts[last] == len(trials) - population * last
    return counts


def run_worker_processes(
    url: str, per_worker: int, population: int, workers: int, *args: str
) -> list[Any]:
    """``workers`` processes of ``tests/sampler_worker.py`` on study "shared" (``args``: seed,
    then the optional sampler and barrier); its trials, checked all COMPLETE and distinct."""
    command = [sys.executable, str(ROOT / "tests" / "sampler_worker.py"), url, "shared"]
    procs = [
        subprocess.Popen(
            [*command, str(per_worker), str(population), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(workers)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trials = optuna.load_study(study_name="shared", storage=url).get_trials(deepcopy=False)
    assert len(trials) == workers * per_worker
    assert all(t.state == TrialState.COMPLETE for t in trials)
    archs = [_arch(t) for t in trials]
    assert len(set(archs)) == len(archs), "duplicate architectures"
    return trials


def test_four_processes_started_together_fill_every_generation_exactly(db_dir: Path) -> None:
    url = f"sqlite:///{db_dir / 'shared.db'}"
    optuna.create_study(directions=DIRECTIONS, storage=url, study_name="shared")
    population, per_worker, workers = 6, 9, 4
    barrier = db_dir / "barrier"
    barrier.mkdir()
    trials = run_worker_processes(
        url, per_worker, population, workers, "7", str(barrier), str(workers)
    )
    # 36 trials: six generations of exactly six, filled in trial-number order.
    assert _exact_generations(trials, population) == {g: 6 for g in range(6)}
    assert [_gen(t) for t in trials] == [n // population for n in range(len(trials))]
    study = optuna.load_study(study_name="shared", storage=url)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert all(f"{PARENTS_KEY_PREFIX}{g}" in attrs for g in range(1, 6))


class _RoundTripStorage(optuna.storages.InMemoryStorage):
    """An in-memory storage whose writes take a database round trip (1 ms), as over a network."""

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        time.sleep(0.001)
        super().set_trial_system_attr(trial_id, key, value)


def test_separate_samplers_in_threads_fill_every_generation_exactly() -> None:
    # Six workers, each with its own sampler (as separate processes would have), one storage.
    storage = _RoundTripStorage()
    optuna.create_study(directions=DIRECTIONS, storage=storage, study_name="s")
    population, per_worker, workers = 5, 10, 6
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        study = optuna.load_study(
            study_name="s",
            storage=storage,
            sampler=DSPSSampler(space=SMALL, population_size=population, num_parents=2, seed=seed),
        )
        pace = random.Random(seed)
        inner = _objective(SMALL)

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            values = inner(trial)
            time.sleep(pace.uniform(0.0, 0.004))  # evaluations of uneven length
            return values

        start.wait()
        try:
            study.optimize(objective, n_trials=per_worker)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 60 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({_arch(t) for t in trials}) == 60
    assert _exact_generations(trials, population) == {g: 5 for g in range(12)}
    assert [_gen(t) for t in trials] == [n // population for n in range(60)]


def test_a_failed_trial_frees_its_place_and_a_requeued_copy_takes_it() -> None:
    sampler = DSPSSampler(space=SMALL, population_size=4, num_parents=2, seed=0)
    study = _run(sampler, 1, SMALL)  # 0: generation 0
    failed = study.ask()  # 1: generation 0, then fails without a copy
    suggest_architecture(failed, SMALL)
    study.tell(failed, state=TrialState.FAIL)
    study.optimize(_objective(SMALL), n_trials=1)  # 2 takes the freed place
    stale = study.ask()  # 3: generation 0, fails and is re-queued as 4
    suggest_architecture(stale, SMALL)
    study.tell(stale, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[3])
    surplus = study.ask()  # the copy (4) runs, is closed as surplus and re-queued as 5
    assert surplus.number == 4
    study.tell(surplus, state=TrialState.PRUNED)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[4])
    study.optimize(_objective(SMALL), n_trials=5)  # 5 (the copy), then 6-9
    trials = study.trials
    assert [t.state for t in trials[:6]] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
        TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE,
    ]  # fmt: skip
    assert trials[5].system_attrs[CANDIDATE_KEY] == trials[3].system_attrs[CANDIDATE_KEY]
    assert trials[5].system_attrs["retry_history"] == [3, 4]
    # Generation 0 holds 0, 2 and the copy 5 (4 handed its place on), so 6 completes it.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [(t.number, _gen(t)) for t in complete] == [
        (0, 0), (2, 0), (5, 0), (6, 0), (7, 1), (8, 1), (9, 1),
    ]  # fmt: skip


def test_an_enqueued_trial_closed_before_suggesting_frees_its_place() -> None:
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=DSPSSampler(space=SMALL, population_size=4, num_parents=2)
    )
    baseline = SMALL.sample(random.Random(0))
    study.enqueue_trial(architecture_params(baseline))
    skipped = study.ask()  # drawn in before_trial, then closed as surplus before suggesting
    assert (
        study._storage.get_trial(skipped._trial_id).system_attrs[CANDIDATE_KEY]["generation"] == 0
    )
    study.tell(skipped, state=TrialState.PRUNED)
    study.enqueue_trial(architecture_params(baseline))  # queued again, as the worker does
    study.optimize(_objective(SMALL), n_trials=8)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert _arch(done[0]) == baseline
    assert [_gen(t) for t in done] == [0] * 4 + [1] * 4


def test_a_draw_waits_for_lower_trials_that_have_not_drawn_yet() -> None:
    storage = optuna.storages.InMemoryStorage()
    ours = optuna.create_study(
        directions=DIRECTIONS,
        storage=storage,
        study_name="s",
        sampler=DSPSSampler(space=SMALL, population_size=2, num_parents=1, settle_timeout=0.3),
    )
    other = optuna.load_study(
        study_name="s",
        storage=storage,
        sampler=DSPSSampler(space=SMALL, population_size=2, num_parents=1),
    )
    ours.optimize(_objective(SMALL), n_trials=1)  # 0: generation 0
    late = other.ask()  # 1: another worker's trial, not drawn yet
    mine = ours.ask()  # 2
    # Asked by this thread: not waited for, since it cannot draw while this thread waits.
    first = ours.ask()  # 3
    second = ours.ask()  # 4
    started = time.monotonic()
    suggest_architecture(second, SMALL)
    assert time.monotonic() - started >= 0.3  # waited for trial 1 (another sampler's), gave up
    ours.tell(second, _objective(SMALL)(second))
    for trial in (late, mine, first):  # the given-up and skipped ones join when they draw
        trial_study = other if trial is late else ours
        started = time.monotonic()
        trial_study.tell(trial, _objective(SMALL)(trial))
        assert time.monotonic() - started < 0.3
    gens = {t.number: _gen(t) for t in storage.get_all_trials(ours._study_id)}
    # 0 and 4 fill generation 0 (4 gave up on 1 and did not count the undrawn 2, 3); 1 and 2
    # fill generation 1, and 3 starts generation 2.
    assert gens == {0: 0, 4: 0, 1: 1, 2: 1, 3: 2}


# --- cost: reads that do not grow with the study ---------------------------------------------
class _CountingStorage(optuna.storages.InMemoryStorage):
    """An in-memory storage that counts the calls that read trials."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> Any:
        self.calls[f"get_all_trials {states}"] += 1
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_trial(self, trial_id: int) -> Any:
        self.calls["get_trial"] += 1
        return super().get_trial(trial_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        self.calls["trial id"] += 1
        return super().get_trial_id_from_study_id_trial_number(study_id, trial_number)


def test_reads_per_trial_do_not_grow_with_the_study() -> None:
    baseline = _CountingStorage()
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=optuna.samplers.RandomSampler(seed=0), storage=baseline
    )
    storage = _CountingStorage()
    dsps = optuna.create_study(
        directions=DIRECTIONS, sampler=DSPSSampler(space=BIG, seed=0), storage=storage
    )
    extra = []
    for _ in range(3):  # trials 0-99, 100-199, 200-299: two generation starts in each
        before, base_before = Counter(storage.calls), Counter(baseline.calls)
        dsps.optimize(_objective(BIG), n_trials=100)
        study.optimize(_objective(BIG), n_trials=100)
        extra.append((storage.calls - before) - (baseline.calls - base_before))
    # DSPS never asks for the whole study: Optuna's own get_all_trials calls are all there is.
    assert all(not any(k.startswith("get_all_trials") for k in e) for e in extra)
    # Per trial: its predecessor fetched again now that it has finished (trial id + trial)
    # and one probe past the newest trial (trial id); a generation's first trial probes once
    # more, before proposing. Trials 100-199 and 200-299 hold two generation starts each.
    assert extra[1] == extra[2] == Counter({"get_trial": 100, "trial id": 2 * 100 + 2})


def test_view_takes_in_trials_finished_between_reads() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(directions=DIRECTIONS, storage=storage)
    sid = study._study_id
    ask = study.ask

    def me(trial: optuna.Trial) -> Any:
        return summarize(storage.get_trial(trial._trial_id))

    study.tell(ask(), [1.0, 1.0])  # 0 complete
    running = ask()  # 1
    view = StudyMirror()
    view.refresh(storage, sid, me(running))
    assert set(view.finished) == {0} and set(view.live) == {1}
    study.tell(running, [2.0, 2.0])  # 1 finishes after it was seen running
    study.tell(ask(), state=TrialState.FAIL)  # 2 starts and fails between two reads
    other = ask()  # 3: another worker's trial, still running
    drawing = ask()  # 4: the trial that reads
    study.tell(ask(), [3.0, 3.0])  # 5: newer than the reader, finished before the read
    view.refresh(storage, sid, me(drawing))
    assert set(view.finished) == {0, 1, 2, 5} and set(view.live) == {3, 4}
    assert view.scanned == 6 and view.live[3].number == other.number
    assert view.finished[1].values == (2.0, 2.0) and view.finished[2].state == TrialState.FAIL
    # The incremental picture equals one built from scratch.
    fresh = StudyMirror()
    fresh.refresh(storage, sid, me(drawing))
    assert (fresh.finished, fresh.live, fresh.scanned) == (view.finished, view.live, view.scanned)


def test_balanced_fitness_matches_hand_computed_values() -> None:
    # The ranking the sampler relies on (SPEC section 5).
    fit = balanced_fitness([90.0, 95.0, 80.0], [1.0, 2.0, 0.5], 0.5)
    np.testing.assert_allclose(fit, [0.5 * 10 / 15 + 0.5 * (1 - 0.5 / 1.5), 0.5, 0.5])
