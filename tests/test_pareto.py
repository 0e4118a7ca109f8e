"""Two-objective Pareto math against brute force: the constraint-aware mask, the hypervolume kept
point by point, the shared reference point."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from optuna.study import StudyDirection
from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

from autospikformer.pareto import (
    Staircase,
    hypervolume_2d,
    hypervolume_history,
    pareto_mask,
    shared_reference,
)


def brute_front(acc, energy, feasible) -> list[bool]:
    n = len(acc)
    return [
        bool(feasible[i])
        and not any(
            feasible[j]
            and acc[j] >= acc[i]
            and energy[j] <= energy[i]
            and (acc[j] > acc[i] or energy[j] < energy[i])
            for j in range(n)
        )
        for i in range(n)
    ]


def grid_points(seed: int, n: int) -> tuple[list[float], list[float], list[bool]]:
    """A coarse grid: ties in either objective and identical points are likely."""
    rng = random.Random(seed)
    acc = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]) for _ in range(n)]
    energy = [rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]) for _ in range(n)]
    feasible = [rng.random() < 0.7 for _ in range(n)]
    return acc, energy, feasible


@pytest.mark.parametrize("seed", range(8))
def test_the_mask_is_brute_force_and_optunas_best_trials(seed: int) -> None:
    acc, energy, feasible = grid_points(seed, 40)
    mask = pareto_mask(acc, energy, feasible)
    assert mask.tolist() == brute_front(acc, energy, feasible)
    assert pareto_mask(acc, energy).tolist() == brute_front(acc, energy, [True] * 40)
    trials = [
        optuna.trial.create_trial(
            values=[a, e], system_attrs={"constraints:budget": 0.0 if f else 1.0}
        )
        for a, e, f in zip(acc, energy, feasible, strict=True)
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    best = _get_pareto_front_trials_by_trials(
        trials, [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE], consider_constraint=True
    )
    assert sorted(t.number for t in best) == np.flatnonzero(mask).tolist()


def test_non_finite_points_are_never_on_the_front() -> None:
    mask = pareto_mask([0.9, float("nan"), 0.5, 1.0], [1.0, 0.1, float("inf"), float("nan")])
    assert mask.tolist() == [True, False, False, False]
    assert not pareto_mask([], []).any()


@pytest.mark.parametrize("seed", range(6))
def test_the_history_equals_the_hypervolume_of_every_prefix(seed: int) -> None:
    acc, energy, _ = grid_points(seed, 60)
    rng = random.Random(seed)
    acc = [a + rng.choice([0.0, 0.0, rng.random() * 0.01]) for a in acc]  # exact ties and not
    ref = 1.1 * max(energy)
    history = hypervolume_history(acc, energy, ref)
    for k in range(len(acc)):
        assert history[k] == pytest.approx(hypervolume_2d(acc[: k + 1], energy[: k + 1], ref))
    assert (np.diff(history) >= -1e-15).all()  # never shrinks


def test_staircase_closed_forms() -> None:
    front = Staircase(ref_energy=3.0)
    assert front.add(0.5, 1.0) == pytest.approx(0.5 * 2.0)
    assert front.add(0.3, 2.0) == 0.0  # dominated
    assert front.add(0.9, 2.0) == pytest.approx(0.4 * 1.0)
    assert front.add(0.9, 2.0) == 0.0  # equal to a member
    assert front.add(1.0, 0.5) == pytest.approx(1.0 * 2.5 - 0.5 * 2.0 - 0.4 * 1.0)
    assert front.energies == [0.5] and front.volume == pytest.approx(2.5)
    assert front.add(2.0, 3.5) == 0.0  # beyond the reference
    assert front.add(float("nan"), 1.0) == 0.0


def test_infeasible_points_add_nothing_to_the_history() -> None:
    acc = [0.5, 0.9, 0.7]
    energy = [1.0, 0.5, 2.0]
    history = hypervolume_history([0.5, np.nan, 0.7], energy, 3.0)
    assert history.tolist() == pytest.approx([1.0, 1.0, 1.2])
    assert hypervolume_history(acc, energy, 3.0)[-1] == pytest.approx(0.9 * 2.5)


def test_shared_reference_is_the_pooled_nadir_moved_out() -> None:
    acc = [0.9, 0.5, 0.7, 0.4]
    energy = [2.0, 1.0, 1.5, 3.0]  # the last point is dominated
    ref = shared_reference(acc, energy)
    assert ref == pytest.approx(
        {
            "accuracy": 0.5 - 0.1 * 0.4,
            "energy_mj": 2.0 + 0.1 * 1.0,
            "ideal_accuracy": 0.9,
            "ideal_energy_mj": 1.0,
            "box": (0.9 - 0.46) * (2.1 - 1.0),
        }
    )
    assert shared_reference([np.nan], [1.0]) is None
    single = shared_reference([0.5], [2.0])
    assert single["accuracy"] == pytest.approx(0.45) and single["energy_mj"] == pytest.approx(2.2)


def test_the_mask_scales() -> None:
    """10,000 points with a large front: the sweep agrees with a vectorised brute force."""
    rng = np.random.default_rng(0)
    energy = rng.random(10_000)
    acc = np.sqrt(energy) + rng.normal(0, 0.01, 10_000)
    mask = pareto_mask(acc, energy)
    order = np.argsort(energy, kind="stable")
    best = np.maximum.accumulate(acc[order])
    expected = np.zeros(10_000, dtype=bool)
    expected[order] = acc[order] >= best  # distinct energies: on the front iff a running maximum
    assert (mask == expected).all() and mask.sum() > 50
