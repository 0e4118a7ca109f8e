"""Tests of the DSPS+ sampler (autospikformer.search.dsps_plus), modelled on tests/test_sampler.py."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from test_sampler import (  # noqa: F401  (db_dir is a fixture)
    BIG,
    DIRECTIONS,
    ROOT,
    SMALL,
    _arch,
    _CountingStorage,
    _gen,
    _objective,
    db_dir,
    run_worker_processes,
)

from autospikformer.pareto import (
    crowding_distance,
    hypervolume_contribution,
    hypervolume_improvement,
    nondominated_sort,
    pareto_select,
)
from autospikformer.search import predictor as predictor_module
from autospikformer.search.dsps import PARENTS_KEY_PREFIX
from autospikformer.search.dsps_plus import DSPSPlusSampler
from autospikformer.search.mirror import StudyMirror, TrialSummary
from autospikformer.search.predictor import ObjectivePredictor, RidgeRegression, refit_point
from autospikformer.search.samplers import make_sampler
from autospikformer.search.suggest import suggest_architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(sampler: optuna.samplers.BaseSampler, n: int, space: Any = BIG, **kw: Any) -> optuna.Study:
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler, **kw)
    study.optimize(_objective(space), n_trials=n)
    return study


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"candidates": 0}, "candidates"),
        ({"local_prob": 1.5}, "local_prob"),
        ({"pool_prob": -0.1}, "pool_prob"),
        ({"pool_prior": -1}, "pool_prior"),
        ({"tie_break": "random"}, "tie_break"),
        ({"min_fit_trials": 1}, "min_fit_trials"),
        ({"acquisition": "ei"}, "acquisition"),
        ({"reference_margin": -0.5}, "reference_margin"),
        ({"spread_recent": 1.5}, "spread_recent"),
        ({"interactions": "all"}, "interactions"),
        ({"accuracy_model": "forest"}, "accuracy_model"),
        ({"num_parents": 60}, "num_parents"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        DSPSPlusSampler(space=BIG, **kwargs)


def test_no_duplicates_and_full_generations() -> None:
    study = _run(DSPSPlusSampler(space=BIG, population_size=20, num_parents=8, seed=0), 200)
    trials = study.get_trials(deepcopy=False)
    assert len({_arch(t) for t in trials}) == 200
    assert Counter(_gen(t) for t in trials) == {g: 20 for g in range(10)}
    origins = Counter(t.system_attrs["autospik:dsps:candidate"]["origin"] for t in trials)
    assert origins["random"] >= 20 and origins["local"] > 0 and origins["copy"] > 0


def test_determinism_under_a_seed() -> None:
    def params(seed: int) -> list[dict[str, Any]]:
        sampler = DSPSPlusSampler(space=BIG, population_size=20, num_parents=8, seed=seed)
        return [t.params for t in _run(sampler, 80).trials]

    assert params(3) == params(3)
    assert params(3) != params(4)


def test_resume_with_a_new_sampler_instance(db_dir: Path) -> None:  # noqa: F811
    def sampler() -> DSPSPlusSampler:
        return DSPSPlusSampler(
            space=SMALL, population_size=8, num_parents=3, seed=4, min_fit_trials=4
        )

    reference = _run(sampler(), 30, SMALL)
    url = f"sqlite:///{db_dir / 'resume.db'}"
    study = optuna.create_study(
        directions=DIRECTIONS, storage=url, study_name="s", sampler=sampler()
    )
    study.optimize(_objective(SMALL), n_trials=13)  # stops inside generation 1
    resumed = optuna.load_study(study_name="s", storage=url, sampler=sampler())
    resumed.optimize(_objective(SMALL), n_trials=17)
    assert [t.params for t in resumed.trials] == [t.params for t in reference.trials]
    assert Counter(_gen(t) for t in resumed.trials) == {0: 8, 1: 8, 2: 8, 3: 6}


def test_threads_share_one_study_without_duplicates() -> None:
    study = optuna.create_study(
        directions=DIRECTIONS,
        sampler=DSPSPlusSampler(space=SMALL, population_size=10, num_parents=4, min_fit_trials=5),
    )
    study.optimize(_objective(SMALL), n_trials=60, n_jobs=3)
    trials = study.get_trials(deepcopy=False)
    assert len({_arch(t) for t in trials}) == 60
    assert all(c <= 10 for c in Counter(_gen(t) for t in trials).values())


def test_four_processes_on_one_sqlite_study(db_dir: Path) -> None:  # noqa: F811
    url = f"sqlite:///{db_dir / 'shared.db'}"
    optuna.create_study(directions=DIRECTIONS, storage=url, study_name="shared")
    population, per_worker, workers = 6, 6, 4
    trials = run_worker_processes(url, per_worker, population, workers, "7", "dsps-plus")
    study = optuna.load_study(study_name="shared", storage=url)
    counts = Counter(_gen(t) for t in trials)
    assert all(c <= population for c in counts.values()), counts
    assert (
        study._storage.get_study_system_attrs(study._study_id)["autospik:dsps:config"]["sampler"]
        == "dsps-plus"
    )


def test_reads_per_trial_do_not_grow_with_the_study() -> None:
    storage = _CountingStorage()
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=DSPSPlusSampler(space=BIG, seed=0), storage=storage
    )
    study.optimize(_objective(BIG), n_trials=100)
    per_chunk = []
    for _ in range(2):  # trials 100-199 and 200-299: two generation starts in each
        before = Counter(storage.calls)
        study.optimize(_objective(BIG), n_trials=100)
        per_chunk.append(storage.calls - before)
    assert per_chunk[0] == per_chunk[1]
    # Optuna's own get_all_trials calls aside, a constant number of single-trial reads per
    # trial: DSPS's, plus one read before proposing (the predecessor fetched once it has
    # finished, one probe past the newest trial).
    reads = {k: v for k, v in per_chunk[0].items() if not k.startswith("get_all_trials")}
    assert reads == {"get_trial": 3 * 100, "trial id": 3 * 100 + 2}


# --- Pareto-rank parents ---------------------------------------------------------------------
def test_nondominated_sort_and_spread_on_a_hand_made_population() -> None:
    # minimised (energy, -accuracy)
    points = [(1.0, -90.0), (2.0, -95.0), (3.0, -96.0), (2.5, -94.0), (4.0, -93.0), (1.5, -80.0)]
    assert nondominated_sort(points) == [[0, 1, 2], [3, 5], [4]]
    assert crowding_distance([(1.0, -90.0), (2.0, -95.0), (3.0, -96.0)]) == [
        math.inf,
        pytest.approx((3.0 - 1.0) / 2.0 + (96.0 - 90.0) / 6.0),
        math.inf,
    ]
    assert hypervolume_contribution([(1.0, -90.0), (2.0, -95.0), (3.0, -96.0)]) == [
        math.inf,
        pytest.approx(1.0 * 5.0),
        math.inf,
    ]


def test_pareto_select_cuts_the_last_front_by_spread_and_puts_infeasible_last() -> None:
    points = [(1.0, -90.0), (2.0, -95.0), (3.0, -96.0), (2.5, -94.0), (2.2, -95.5), (0.5, -99.0)]
    # trial 5 dominates all but is infeasible; front {0, 2, 4, 1}: 0 and 2 are extremes.
    chosen = pareto_select(points, 3, violations=[0, 0, 0, 0, 0, 1.0])
    assert chosen[:2] == [0, 2]
    spread = crowding_distance([points[i] for i in (0, 1, 2, 4)])
    assert chosen[2] == (1 if spread[1] > spread[3] else 4)
    assert pareto_select(points, 6, violations=[0, 0, 0, 0, 0, 1.0])[-1] == 5
    assert pareto_select(points, 6)[0] == 5  # unconstrained, it is the only first front


def test_parents_are_chosen_by_pareto_rank() -> None:
    sampler = DSPSPlusSampler(space=BIG, population_size=20, num_parents=8, seed=1)
    study = _run(sampler, 40)
    parents = study._storage.get_study_system_attrs(study._study_id)[f"{PARENTS_KEY_PREFIX}1"]
    pool = [t for t in study.trials if _gen(t) == 0]
    points = [(t.values[1], -t.values[0]) for t in pool]
    expected = [pool[i].number for i in pareto_select(points, 8)]
    assert parents == expected
    first = {pool[i].number for i in nondominated_sort(points)[0]}
    assert first <= set(parents) or set(parents) <= first


# --- predictor screening ---------------------------------------------------------------------
def test_hypervolume_improvement_matches_hand_computed_areas() -> None:
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    gains = hypervolume_improvement(
        front, np.array([[1.5, 1.5], [0.0, 0.0], [2.5, 2.5]]), (4.0, 4.0)
    )
    assert gains.tolist() == [1.25, 10.0, 0.0]


def test_screening_picks_the_predicted_best_candidate() -> None:
    sampler = DSPSPlusSampler(space=BIG, seed=0)
    study = _run(_random_sampler(), 60)
    view = StudyMirror()
    for t in study.trials:
        view.add_finished(
            TrialSummary(t.number, t._trial_id, t.state, _arch_of(t), 0, (t.values[0], t.values[1]))
        )
    records = [view.finished[n] for n in sorted(view.finished)]
    predictor = ObjectivePredictor(sampler._offspring.encoder, records)
    import random

    rng = random.Random(5)
    candidates = [BIG.sample(rng) for _ in range(30)]
    pick = sampler._offspring.pick(view, predictor, candidates, me=-1)
    predicted = predictor.predict(candidates)
    points = np.column_stack((predicted[:, 1], -predicted[:, 0]))
    _, front, _ = sampler._offspring.front(view)
    lo, hi = front.min(axis=0), front.max(axis=0)
    ref = tuple(hi + 0.1 * (hi - lo))
    gains = hypervolume_improvement(front, points, ref)  # type: ignore[arg-type]
    assert gains.max() > 0 and pick == int(np.argmax(gains))
    assert sum(g == gains.max() for g in gains) == 1  # the pick is not a tie
    # the predictor learned the (toy) objective from 60 random trials
    truth = np.array([_objective_values(a) for a in candidates])
    assert np.corrcoef(truth[:, 1], predicted[:, 1])[0, 1] > 0.7
    assert np.corrcoef(truth[:, 0], predicted[:, 0])[0, 1] > 0.7


def test_leave_one_out_error_is_the_refit_without_each_trial() -> None:
    """The closed form (residual over 1 - leverage) equals refitting n times."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    y = x @ rng.normal(size=6) + 0.3 * rng.normal(size=30)
    model = RidgeRegression(0.7).fit(x, y, loo=True)
    brute = []
    for i in range(30):
        keep = np.arange(30) != i
        left = RidgeRegression(0.7).fit(x[keep], y[keep])
        brute.append((y[i] - left.predict(x[i : i + 1])[0]) ** 2)
    assert model.loo_mse == pytest.approx(float(np.mean(brute)), rel=1e-9)


def test_the_accuracy_model_keeps_interactions_only_where_they_predict_better() -> None:
    sampler = DSPSPlusSampler(space=BIG, seed=0)
    encoder = sampler._offspring.encoder
    import random

    rng = random.Random(3)
    archs = list(dict.fromkeys(BIG.sample(rng) for _ in range(150)))

    def records(accuracy: Any) -> list[TrialSummary]:
        return [
            TrialSummary(i, i, optuna.trial.TrialState.COMPLETE, a, 0, (accuracy(a), 1.0 + i % 7))
            for i, a in enumerate(archs)
        ]

    additive = ObjectivePredictor(encoder, records(lambda a: a.embed_dim / 100 + sum(a.mlp_ratio)))
    assert additive.interactions == "none"
    # accuracy that depends on the time steps and the width together
    coupled = ObjectivePredictor(
        encoder, records(lambda a: (a.embed_dim / 100) * (a.time_steps - 2.5))
    )
    assert coupled.interactions == "time_steps"

    # a neuron threshold that helps shallow models and hurts deep ones: only the block genes
    # crossed with the depth can say so, and only with a ``rich`` encoder
    def shallow_low(a: Any) -> float:
        return sum(th * (a.depth - 3.5) for th in a.threshold) / a.depth + a.embed_dim / 100

    rich = DSPSPlusSampler(space=BIG, seed=0, interactions="globals")._offspring.encoder
    assert ObjectivePredictor(rich, records(shallow_low)).interactions == "globals"
    assert ObjectivePredictor(encoder, records(shallow_low)).interactions != "globals"

    # the kept set is the one of least leave-one-out error, here well below the others
    shallow = records(shallow_low)
    acc_x, _ = ObjectivePredictor(rich, shallow)._features([r.arch for r in shallow], keep=False)
    acc = np.array([r.values[0] for r in shallow])
    loo = [
        RidgeRegression().fit(acc_x[:, :w], acc / acc.std(), loo=True).loo_mse
        for w in (rich.plain_width, rich.acc_width, rich.rich_width)
    ]
    assert loo[2] < 0.8 * min(loo[:2])  # 0.031 against 0.041 and 0.045


def test_block_genes_crossed_with_the_global_genes() -> None:
    """Each block's (gene value, global gene value) column holds the block's share 1/depth."""
    from autospikformer.search.architecture import Architecture

    encoder = DSPSPlusSampler(space=BIG, seed=0, interactions="globals")._offspring.encoder
    assert DSPSPlusSampler(space=BIG, seed=0)._offspring.encoder.rich_width == encoder.acc_width
    c = BIG.choices
    th, tau = c["threshold"], c["tau"]
    arch = Architecture(
        depth=c["depth"][1],
        embed_dim=c["embed_dim"][0],
        time_steps=c["time_steps"][-1],
        mlp_ratio=(c["mlp_ratio"][0],) * c["depth"][1],
        num_heads=(c["num_heads"][0],) * c["depth"][1],
        threshold=(th[0], th[1]) + (th[1],) * (c["depth"][1] - 2),
        tau=(tau[0],) * c["depth"][1],
    )
    row = encoder.accuracy_row(arch)
    rich = row[encoder.acc_width :]
    share = 1.0 / arch.depth
    assert rich.sum() == pytest.approx(4 * 3)  # 4 block genes x 3 global genes, shares sum to 1
    at = encoder.gene_globals_at[("threshold", "depth")]
    n = len(th)
    d = c["depth"].index(arch.depth)
    assert row[at + d * n + 0] == pytest.approx(share)  # the first block's threshold
    assert row[at + d * n + 1] == pytest.approx((arch.depth - 1) * share)
    at = encoder.gene_globals_at[("tau", "time_steps")]
    t = c["time_steps"].index(arch.time_steps)
    assert row[at + t * len(tau)] == pytest.approx(1.0)  # every block's tau
    assert row.shape == (encoder.rich_width,) and encoder.acc_width < encoder.rich_width


def test_refit_points_are_every_few_trials_then_every_five_percent() -> None:
    points = sorted({refit_point(n, 10) for n in range(20_000)})
    steps = np.diff(points)
    assert points[:3] == [0, 10, 20] and refit_point(209, 10) == 200
    assert all(s == max(10, p // 20) for p, s in zip(points, steps, strict=False))
    assert len(points) < 120  # a 20,000-trial study refits about a hundred times


def test_screening_starts_in_generation_0() -> None:
    """After ``min_fit_trials`` complete trials the uniform draws of generation 0 are screened:
    a population larger than the budget still ends with a better front than the same seed's
    unscreened draws (candidates 1)."""
    from autospikformer.pareto import hypervolume_2d

    def hv(candidates: int) -> float:
        sampler = DSPSPlusSampler(
            space=BIG, population_size=200, num_parents=20, candidates=candidates, seed=1
        )
        study = _run(sampler, 80)
        assert {_gen(t) for t in study.trials} == {0}
        acc = [t.values[0] for t in study.trials]
        energy = [t.values[1] for t in study.trials]
        return hypervolume_2d(acc, energy, ref_energy=600.0, ref_accuracy=0.0)

    assert hv(16) > 1.05 * hv(1)


def _random_sampler() -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=2)


def _arch_of(trial: optuna.trial.FrozenTrial) -> Any:
    from autospikformer.search.suggest import architecture_from_params

    return architecture_from_params(trial.params)


def _objective_values(arch: Any) -> tuple[float, float]:
    acc = arch.embed_dim / 100 + sum(arch.mlp_ratio) - sum(abs(t - 1.0) for t in arch.threshold)
    energy = arch.embed_dim * arch.depth * arch.time_steps / sum(arch.tau)
    return acc, energy


# --- budgets as Optuna constraints; GP --------------------------------------------------------
def _constrained(limit: float) -> Any:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, SMALL)
        acc = arch.embed_dim / 64 + sum(arch.mlp_ratio) / 8 - sum(arch.threshold) / 10
        energy = arch.embed_dim * arch.depth * arch.time_steps / sum(arch.tau)
        trial.set_constraint("max_energy", energy - limit)
        return acc, energy

    return objective


@pytest.mark.parametrize("name", ["nsga2", "tpe", "dsps-plus"])
def test_constraints_are_honoured(name: str) -> None:
    """With an energy budget stored as a constraint, the sampler's later trials keep to it more
    often than random search's, and the study's best trials are all feasible."""
    limit = 40.0

    def feasible_share(sampler_name: str) -> float:
        options = {"population_size": 20} if sampler_name in ("nsga2", "dsps-plus") else {}
        if sampler_name == "dsps-plus":
            options["num_parents"] = 8
        sampler = make_sampler(sampler_name, space=SMALL, seed=0, **options)
        study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
        study.optimize(_constrained(limit), n_trials=120)
        late = study.trials[60:]
        assert all(t.constraints["max_energy"] <= 0 for t in study.best_trials)
        return sum(t.constraints["max_energy"] <= 0 for t in late) / len(late)

    assert feasible_share(name) > feasible_share("random") + 0.1


def test_gp_is_selectable_with_its_options() -> None:
    sampler = make_sampler("gp", space=SMALL, seed=0, n_startup_trials=3)
    assert isinstance(sampler, optuna.samplers.GPSampler)
    assert sampler._n_startup_trials == 3
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    study.optimize(_constrained(40.0), n_trials=6)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6
    with pytest.raises(ValueError, match=r"'feasible'.*'dsps', 'dsps-plus', not 'gp'"):
        make_sampler("gp", space=SMALL, seed=0, feasible=lambda a: True)


# --- exploration: expected hypervolume improvement, predictive spread, stagnation -----------
def test_expected_hypervolume_improvement_is_exact() -> None:
    """The closed form equals the hypervolume improvement averaged over many draws of the
    candidate, and the plain improvement of the mean when the spread is 0."""
    from autospikformer.pareto import expected_hypervolume_improvement

    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    ref = (4.0, 4.0)
    means = np.array([[1.5, 1.5], [0.0, 0.0], [2.5, 2.5], [2.2, 1.7], [3.5, 0.5], [5.0, 5.0]])
    assert expected_hypervolume_improvement(front, means, np.zeros_like(means), ref) == (
        pytest.approx(hypervolume_improvement(front, means, ref))
    )
    rng = np.random.default_rng(0)
    std = np.array([[0.5, 0.8], [0.3, 0.1], [1.0, 1.0], [0.0, 0.6], [0.7, 0.0], [1.5, 2.0]])
    exact = expected_hypervolume_improvement(front, means, std, ref)
    for i in range(len(means)):
        draws = rng.normal(means[i], std[i], size=(200_000, 2))
        sampled = hypervolume_improvement(front, draws, ref)
        error = sampled.std() / math.sqrt(len(draws))
        assert abs(exact[i] - sampled.mean()) < 5 * error + 1e-12
    # an empty front: the box between the candidate and the reference point
    lone = expected_hypervolume_improvement(np.zeros((0, 2)), means[:1], np.zeros((1, 2)), ref)
    assert lone.tolist() == [pytest.approx(2.5 * 2.5)]


def test_predictive_spread_is_the_bayesian_ridge_posterior() -> None:
    """``predict_std`` is s * sqrt(1 + 1/n + x_c A^-1 x_c), A the penalised Gram matrix of the
    centred rows, s^2 estimated by the leave-one-out residuals; rows far from the data spread
    more, and ``recent`` takes s from the last rows only."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5))
    noise = np.where(np.arange(60) < 40, 1.0, 0.1)
    y = x @ rng.normal(size=5) + noise * rng.normal(size=60)
    model = RidgeRegression(0.5).fit(x, y, loo=True, variance=True)
    xc = x - x.mean(axis=0)
    a_inv = np.linalg.inv(xc.T @ xc + 0.5 * np.eye(5))
    hat = np.einsum("ij,jk,ik->i", xc, a_inv, xc) + 1 / 60
    residual = y - model.predict(x)
    s2 = float(np.mean(residual**2 / (1 - hat)))
    new = rng.normal(size=(4, 5)) * np.array([[0.1], [1.0], [3.0], [10.0]])
    nc = new - x.mean(axis=0)
    expected = np.sqrt(s2 * (1 + 1 / 60 + np.einsum("ij,jk,ik->i", nc, a_inv, nc)))
    assert model.predict_std(new) == pytest.approx(expected, rel=1e-9)
    assert np.all(np.diff(model.predict_std(new)) > 0)  # further out, wider
    assert model.loo_mse == pytest.approx(RidgeRegression(0.5).fit(x, y, loo=True).loo_mse)
    recent = RidgeRegression(0.5).fit(x, y, loo=True, variance=True, recent=20)
    assert recent.noise == pytest.approx(float(np.mean((residual**2 / (1 - hat))[-20:])))
    assert recent.noise < 0.5 * model.noise  # the last 20 rows are the quiet ones


def test_screening_picks_the_largest_expected_improvement() -> None:
    """With the default acquisition the pick is the proposal of the largest expected
    hypervolume improvement, the predictor's spread taken from its recent trials, within a
    reference point one front's range beyond the nadir."""
    from autospikformer.pareto import expected_hypervolume_improvement

    sampler = DSPSPlusSampler(space=BIG, seed=0)
    offspring = sampler._offspring
    assert offspring.acquisition == "ehvi" and offspring.reference_margin == 1.0
    study = _run(_random_sampler(), 60)
    view = StudyMirror()
    for t in study.trials:
        view.add_finished(
            TrialSummary(t.number, t._trial_id, t.state, _arch_of(t), 0, (t.values[0], t.values[1]))
        )
    predictor = offspring.predictor(view, 60)
    assert predictor is not None and predictor.variance
    records = [view.finished[n] for n in sorted(view.finished)]
    recent = RidgeRegression().fit(
        *_accuracy_fit(predictor, records), loo=True, variance=True, recent=20
    )
    assert predictor.accuracy.noise == pytest.approx(recent.noise)  # max(20, 0.2 x 60) trials
    import random

    rng = random.Random(5)
    candidates = [BIG.sample(rng) for _ in range(30)]
    mean, spread = predictor.predict_distribution(candidates)
    assert spread is not None and np.all(spread > 0)
    points = np.column_stack((mean[:, 1], -mean[:, 0]))
    _, front, _ = offspring.front(view)
    lo, hi = front.min(axis=0), front.max(axis=0)
    ref = tuple(hi + 1.0 * (hi - lo))
    gains = expected_hypervolume_improvement(front, points, spread[:, ::-1], ref)  # type: ignore[arg-type]
    assert offspring.pick(view, predictor, candidates, me=-1) == int(np.argmax(gains))


def _accuracy_fit(predictor: ObjectivePredictor, records: list[TrialSummary]) -> tuple[Any, Any]:
    """The accuracy model's rows and scaled targets, as the predictor fitted them."""
    acc_x, _ = predictor._features([r.arch for r in records], keep=False)  # type: ignore[misc]
    acc_x = acc_x[:, : predictor.width]
    acc = np.array([r.values[0] for r in records])  # type: ignore[index]
    return acc_x, acc / predictor.acc_scale


def test_the_previous_rule_stays_selectable() -> None:
    """``acquisition = "hvi"``: the point prediction's improvement, no spread fitted; the study
    file option reaches the sampler and is recorded with its settings."""
    sampler = make_sampler("dsps-plus", space=SMALL, seed=0, acquisition="hvi", min_fit_trials=4)
    study = _run(sampler, 12, SMALL)
    config = study._storage.get_study_system_attrs(study._study_id)["autospik:dsps:config"]
    assert config["acquisition"] == "hvi" and config["reference_margin"] == 1.0
    predictor = sampler._offspring.predictor(sampler._view(study), 12)
    assert predictor is not None and not predictor.variance
    assert predictor.predict_distribution(list(sampler._offspring._rows)[:3])[1] is None


def test_the_block_gene_interactions_are_a_study_option() -> None:
    """``interactions = "globals"`` reaches the predictor from a study file's options and is
    recorded; the default is not recorded (studies begun before the option resume unwarned)."""
    sampler = make_sampler(
        "dsps-plus", space=BIG, seed=0, interactions="globals", population_size=20, num_parents=8
    )
    study = _run(sampler, 40)
    config = study._storage.get_study_system_attrs(study._study_id)["autospik:dsps:config"]
    assert config["interactions"] == "globals"
    predictor = sampler._offspring.predictor(sampler._view(study), 40)
    assert predictor is not None and predictor.interactions in ("none", "time_steps", "globals")
    plain = _run(make_sampler("dsps-plus", space=BIG, seed=0, population_size=20, num_parents=8), 4)
    assert (
        "interactions"
        not in plain._storage.get_study_system_attrs(plain._study_id)["autospik:dsps:config"]
    )


def _pool_archs() -> list[Any]:
    from autospikformer.search.architecture import Architecture

    def arch(depth: int, embed: int, t: int, heads: tuple[int, ...]) -> Architecture:
        return Architecture(
            depth=depth,
            embed_dim=embed,
            mlp_ratio=(3.0,) * depth,
            num_heads=heads,
            threshold=(1.0,) * depth,
            tau=(2.0,) * depth,
            time_steps=t,
        )

    return [arch(2, 384, 4, (6, 12)), arch(2, 384, 2, (6, 6)), arch(3, 432, 4, (12, 12, 6))]


def test_gene_pool_draws_follow_the_pool_frequencies_smoothed_by_the_prior() -> None:
    import random

    from autospikformer.search.operators import gene_pool_draw

    pool, n = _pool_archs(), 20000
    rng = random.Random(7)
    draws = [gene_pool_draw(pool, BIG, rng, prior_weight=0.0) for _ in range(n)]
    # without a prior every gene takes a value some pool member holds at that position
    assert {a.depth for a in draws} == {2, 3} and {a.embed_dim for a in draws} == {384, 432}
    assert {a.mlp_ratio[0] for a in draws} == {3.0} and {a.tau[1] for a in draws} == {2.0}
    assert {a.num_heads[2] for a in draws if a.depth == 3} == {6}  # only one member is that deep
    for share, value in ((2 / 3, 384), (1 / 3, 432)):
        assert abs(sum(a.embed_dim == value for a in draws) / n - share) < 0.01
    heads0 = sum(a.num_heads[0] == 6 for a in draws) / n
    assert abs(heads0 - 2 / 3) < 0.01  # block 0: 6, 6, 12
    # a prior weight w adds w / len(choices) to every value's count (TPE's prior)
    w, k = 3.0, len(BIG.choices["embed_dim"])
    draws = [gene_pool_draw(pool, BIG, rng, prior_weight=w) for _ in range(n)]
    for value, count in ((384, 2), (432, 1), (336, 0), (480, 0)):
        expected = (count + w / k) / (len(pool) + w)
        assert abs(sum(a.embed_dim == value for a in draws) / n - expected) < 0.01, value
    assert all(BIG.contains(a) for a in draws)
    grown = [a for a in draws if a.depth == 6]  # no member is that deep: the prior alone
    assert grown and all(len(a.tau) == 6 for a in grown)


def test_gene_pool_proposals_join_the_screened_pool() -> None:
    sampler = DSPSPlusSampler(space=BIG, population_size=20, num_parents=8, pool_prob=0.5, seed=0)
    trials = _run(sampler, 120).get_trials(deepcopy=False)
    origins = Counter(t.system_attrs["autospik:dsps:candidate"]["origin"] for t in trials)
    assert origins["pool"] > 0 and len({_arch(t) for t in trials}) == 120
    off = DSPSPlusSampler(space=BIG, population_size=20, num_parents=8, pool_prob=0.0, seed=0)
    origins = Counter(
        t.system_attrs["autospik:dsps:candidate"]["origin"]
        for t in _run(off, 120).get_trials(deepcopy=False)
    )
    assert origins["pool"] == 0


# --- the Gaussian-process accuracy model (accuracy_model = "gp") -------------------------------
def _records(archs: list[Any], accuracy: Any) -> list[TrialSummary]:
    return [
        TrialSummary(i, i, optuna.trial.TrialState.COMPLETE, a, 0, (accuracy(a), 1.0 + i % 7))
        for i, a in enumerate(archs)
    ]


def test_gene_rows_hold_the_genes_as_numbers() -> None:
    from autospikformer.search.architecture import Architecture

    encoder = DSPSPlusSampler(space=BIG, seed=0)._offspring.encoder
    c = BIG.choices
    arch = Architecture(
        depth=2, embed_dim=c["embed_dim"][0], time_steps=c["time_steps"][-1],
        mlp_ratio=(c["mlp_ratio"][0], c["mlp_ratio"][-1]),
        num_heads=(c["num_heads"][0], c["num_heads"][-1]),
        threshold=(c["threshold"][0], c["threshold"][-1]), tau=(c["tau"][0], c["tau"][-1]),
    )  # fmt: skip
    row = encoder.gene_row(arch)
    assert len(row) == 3 + 5 * max(c["depth"])
    assert row[:3].tolist() == [2, math.log2(arch.embed_dim), arch.time_steps]
    for i in range(2):
        assert row[3 + 5 * i : 8 + 5 * i].tolist() == [
            math.log(arch.threshold[i]), math.log(arch.tau[i]), arch.mlp_ratio[i],
            arch.num_heads[i] / max(c["num_heads"]), 1.0,
        ]  # fmt: skip
    assert not row[13:].any()  # no third block


def test_the_gp_accuracy_model_predicts_what_the_additive_ridge_cannot() -> None:
    """Accuracy where genes act together (a threshold that helps shallow models and hurts deep
    ones; a product of the width, the leak and the threshold): on 100 architectures not fitted
    the GP's error is under a quarter of the ridge's (0.06 and 0.17 of it); both refits repeat."""
    import random

    rng = random.Random(5)
    archs = list(dict.fromkeys(BIG.sample(rng) for _ in range(260)))
    fitted, held = archs[:160], archs[160:260]

    def shallow_low(a: Any) -> float:
        return sum(th * (a.depth - 3.5) for th in a.threshold) / a.depth + a.embed_dim / 100

    def product(a: Any) -> float:
        leak = sum(math.log(t) for t in a.tau) / a.depth
        return math.log(a.embed_dim) * leak * sum(a.threshold) / a.depth

    encoder = DSPSPlusSampler(space=BIG, seed=0)._offspring.encoder
    for accuracy in (shallow_low, product):
        truth = np.array([accuracy(a) for a in held])
        errors = {}
        for model in ("ridge", "gp"):
            fit = ObjectivePredictor(encoder, _records(fitted, accuracy), accuracy_model=model)
            errors[model] = float(np.abs(fit.predict(held)[:, 0] - truth).mean())
            again = ObjectivePredictor(encoder, _records(fitted, accuracy), accuracy_model=model)
            assert np.array_equal(again.predict(held), fit.predict(held))
        assert fit.interactions == "all"
        assert errors["gp"] < 0.25 * errors["ridge"], (accuracy.__name__, errors)


def test_the_gp_is_fitted_on_the_last_trials_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.setattr(predictor_module, "GP_MAX_TRIALS", 30)
    rng = random.Random(2)
    archs = list(dict.fromkeys(BIG.sample(rng) for _ in range(50)))
    encoder = DSPSPlusSampler(space=BIG, seed=0)._offspring.encoder
    records = _records(archs, lambda a: a.embed_dim / 100)
    fit = ObjectivePredictor(encoder, records, accuracy_model="gp")
    assert fit.gp is not None
    expected = np.array([encoder.gene_row(a) for a in archs[-30:]])
    assert np.allclose(fit.gp.model.X_train_ * fit.gp.scale + fit.gp.mean, expected)


def test_the_gp_accuracy_model_is_a_study_option_and_repeats_under_a_seed() -> None:
    """``accuracy_model = "gp"`` reaches the predictor, is recorded (the default is not), and a
    seeded study repeats trial for trial."""

    def run(seed: int) -> optuna.Study:
        sampler = make_sampler(
            "dsps-plus", space=BIG, seed=seed, accuracy_model="gp", population_size=20,
            num_parents=8,
        )  # fmt: skip
        return _run(sampler, 50)

    study = run(3)
    config = study._storage.get_study_system_attrs(study._study_id)["autospik:dsps:config"]
    assert config["accuracy_model"] == "gp"
    assert [t.params for t in run(3).trials] == [t.params for t in study.trials]
    plain = _run(make_sampler("dsps-plus", space=BIG, seed=3, population_size=20, num_parents=8), 4)
    recorded = plain._storage.get_study_system_attrs(plain._study_id)["autospik:dsps:config"]
    assert "accuracy_model" not in recorded
    sampler = make_sampler(
        "dsps-plus", space=BIG, seed=3, accuracy_model="gp", population_size=20, num_parents=8
    )
    own = _run(sampler, 45)
    predictor = sampler._offspring.predictor(sampler._view(own), 45)
    assert predictor is not None and predictor.gp is not None
