"""The balanced fitness F_AEB (SPEC section 5): min-max scaled over the population ranked."""

from __future__ import annotations

import numpy as np
import pytest

from autospikformer import balanced_fitness

ALPHAS = [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]


def test_hand_computed_values() -> None:
    acc = [0.75, 0.5, 1.0]
    energy = [1.0, 0.5, 2.0]
    # acc' = (0.5, 0, 1); energy' = (1/3, 0, 1)
    expected_half = [0.5 * 0.5 + 0.5 * (2 / 3), 0.5 * 0 + 0.5 * 1, 0.5 * 1 + 0.5 * 0]
    np.testing.assert_allclose(balanced_fitness(acc, energy), expected_half, rtol=1e-12)
    np.testing.assert_allclose(
        balanced_fitness(acc, energy, alpha=0.8), [0.8 * 0.5 + 0.2 * (2 / 3), 0.2, 0.8]
    )
    np.testing.assert_allclose(balanced_fitness(acc, energy, alpha=1.0), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(balanced_fitness(acc, energy, alpha=0.0), [2 / 3, 1.0, 0.0])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_a_dominated_candidate_ranks_below_the_one_that_dominates_it(alpha: float) -> None:
    rng = np.random.default_rng(int(alpha * 1000))
    checked = 0
    for _ in range(200):
        n = int(rng.integers(2, 12))
        acc = rng.choice(np.linspace(0.1, 0.99, 8), size=n)  # coarse grid: ties happen
        energy = rng.choice(np.linspace(0.2, 3.0, 8), size=n)
        fit = balanced_fitness(acc, energy, alpha=alpha)
        for i in range(n):
            for j in range(n):
                dominates = (
                    acc[i] >= acc[j]
                    and energy[i] <= energy[j]
                    and (acc[i] > acc[j] or energy[i] < energy[j])
                )
                if dominates:
                    assert fit[i] > fit[j], (alpha, acc, energy, i, j)
                    checked += 1
    assert checked > 500


@pytest.mark.parametrize("alpha", ALPHAS)
def test_domination_in_one_objective_with_a_tie_in_the_other(alpha: float) -> None:
    # equal accuracy, lower energy wins; equal energy, higher accuracy wins
    fit = balanced_fitness([0.7, 0.7, 0.9], [1.0, 2.0, 2.0], alpha=alpha)
    assert fit[0] > fit[1] and fit[2] > fit[1]


def test_ranking_depends_on_alpha_between_non_dominated_candidates() -> None:
    acc, energy = [0.95, 0.80], [2.0, 0.5]  # accurate but costly vs cheap but worse
    assert np.argmax(balanced_fitness(acc, energy, alpha=0.9)) == 0
    assert np.argmax(balanced_fitness(acc, energy, alpha=0.1)) == 1


def test_constant_objective_and_edge_cases() -> None:
    np.testing.assert_allclose(balanced_fitness([0.5, 0.5], [1.0, 2.0]), [0.75, 0.25])
    np.testing.assert_allclose(balanced_fitness([0.5], [1.0]), [0.5])
    assert balanced_fitness([], []).shape == (0,)
    with pytest.raises(ValueError, match="alpha"):
        balanced_fitness([0.5], [1.0], alpha=1.5)
    with pytest.raises(ValueError, match="equal length"):
        balanced_fitness([0.5, 0.6], [1.0])
    with pytest.raises(ValueError, match="finite"):
        balanced_fitness([0.5, float("nan")], [1.0, 2.0])
