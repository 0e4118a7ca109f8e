"""The accuracy/energy balanced fitness F_AEB that ranks a DSPS population (SPEC section 5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _minmax(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a population with one distinct value scales to 0.5 throughout."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 0.0:
        return np.full_like(values, 0.5, dtype=float)
    return (values - lo) / (hi - lo)


def balanced_fitness(
    accuracies: Sequence[float], energies: Sequence[float], alpha: float = 0.5
) -> np.ndarray:
    """``F_AEB = alpha * acc' + (1 - alpha) * (1 - energy')`` over one population.

    ``'`` is min-max scaling over the population being ranked, so the fitness of a candidate
    depends on its rivals; higher is better. When every accuracy (or energy) is equal that term
    is constant (0.5) and the ranking falls to the other objective.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    acc = np.asarray(accuracies, dtype=float)
    energy = np.asarray(energies, dtype=float)
    if acc.shape != energy.shape or acc.ndim != 1:
        raise ValueError(
            f"accuracies and energies must be 1-D and of equal length, got {acc.shape} and {energy.shape}"
        )
    if acc.size == 0:
        return np.zeros(0)
    if not (np.isfinite(acc).all() and np.isfinite(energy).all()):
        raise ValueError("accuracies and energies must be finite")
    return alpha * _minmax(acc) + (1.0 - alpha) * (1.0 - _minmax(energy))
