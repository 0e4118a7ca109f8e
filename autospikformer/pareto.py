"""Two-objective Pareto math for accuracy (maximised) and energy (minimised), torch-free.

One home for what the search and the reports both need: the Pareto mask (constraint-aware: only
feasible points can be on a front, as in Optuna's ``study.best_trials``), the hypervolume of a
front and its history trial by trial, and the reference point several studies share. Points are
given as accuracy and energy arrays; a point with a non-finite value is never on a front.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

#: How far beyond the pooled front's nadir a shared reference point lies, as a fraction of the
#: front's range in each objective (Ishibuchi et al., 2018).
REFERENCE_MARGIN = 0.1


def pareto_mask(accuracy: Any, energy: Any, feasible: Any = None) -> np.ndarray:
    """True where no other (feasible) point is at least as accurate, at most as costly and
    better in one; identical points are all on the front. ``feasible``: a boolean mask, False
    points are never on the front and dominate nothing. O(n log n): a sweep by rising energy."""
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy, dtype=float)
    mask = np.zeros(acc.size, dtype=bool)
    usable = np.isfinite(acc) & np.isfinite(en)
    if feasible is not None:
        usable &= np.asarray(feasible, dtype=bool)
    index = np.flatnonzero(usable)
    if index.size == 0:
        return mask
    order = index[np.lexsort((-acc[index], en[index]))]  # energy up, then accuracy down
    best_below = -math.inf  # best accuracy among strictly cheaper points
    start = 0
    while start < order.size:
        stop = start
        energy_here = en[order[start]]
        while stop < order.size and en[order[stop]] == energy_here:
            stop += 1
        top = acc[order[start]]  # the group's best accuracy comes first
        if top > best_below:
            group = order[start:stop]
            mask[group[acc[group] == top]] = True
            best_below = top
        start = stop
    return mask


def hypervolume_2d(
    accuracy: Any, energy: Any, ref_energy: float, ref_accuracy: float = 0.0
) -> float:
    """Area dominated by the points (max accuracy, min energy) within the reference point.

    A sorted sweep: in order of rising energy, each point that beats the best accuracy so far
    adds the strip ``(acc - best) x (ref_energy - energy)``.
    """
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy, dtype=float)
    keep = (en < ref_energy) & (acc > ref_accuracy)
    order = np.lexsort((-acc[keep], en[keep]))
    best, area = ref_accuracy, 0.0
    for a, e in zip(acc[keep][order], en[keep][order], strict=True):
        if a > best:
            area += (a - best) * (ref_energy - e)
            best = a
    return float(area)


class Staircase:
    """A front kept point by point, and the hypervolume it dominates within a reference point.

    ``add`` costs a binary search plus the removal of the points the new one dominates (each
    point is removed at most once), so the hypervolume after each of n points in turn costs
    O(n log n) comparisons in all, instead of a front recomputed for every prefix.
    """

    def __init__(self, ref_energy: float, ref_accuracy: float = 0.0) -> None:
        self.ref_energy = float(ref_energy)
        self.ref_accuracy = float(ref_accuracy)
        self.energies: list[float] = []  # rising; accuracies rise with them
        self.accuracies: list[float] = []
        self.volume = 0.0

    def add(self, accuracy: float, energy: float) -> float:
        """Take in one point; returns the hypervolume it adds (0 when dominated or outside)."""
        a, e = float(accuracy), float(energy)
        if not (math.isfinite(a) and math.isfinite(e)):
            return 0.0
        if e >= self.ref_energy or a <= self.ref_accuracy:
            return 0.0
        xs, ys = self.energies, self.accuracies
        i = bisect.bisect_left(xs, e)  # points before i are strictly cheaper
        below = ys[i - 1] if i else self.ref_accuracy
        if below >= a or (i < len(xs) and xs[i] == e and ys[i] >= a):
            return 0.0  # dominated (or equalled)
        gained, left, height = 0.0, e, below
        k = i
        while k < len(xs) and ys[k] <= a:  # dominated by the new point: removed
            gained += (a - height) * (xs[k] - left)
            left, height = xs[k], ys[k]
            k += 1
        right = xs[k] if k < len(xs) else self.ref_energy
        gained += (a - height) * (right - left)
        xs[i:k] = [e]
        ys[i:k] = [a]
        self.volume += gained
        return gained


def hypervolume_history(
    accuracy: Any, energy: Any, ref_energy: float, ref_accuracy: float = 0.0
) -> np.ndarray:
    """The hypervolume after each point in the order given (points of a study in the order its
    trials completed); ``[-1]`` equals :func:`hypervolume_2d` of all of them."""
    front = Staircase(ref_energy, ref_accuracy)
    out = np.empty(len(accuracy), dtype=float)
    for k, (a, e) in enumerate(zip(accuracy, energy, strict=True)):
        front.add(a, e)
        out[k] = front.volume
    return out


def shared_reference(
    accuracy: Any, energy: Any, margin: float = REFERENCE_MARGIN
) -> dict[str, float] | None:
    """The reference point for fronts that must be compared: the nadir (lowest accuracy,
    highest energy) of the front of all the points pooled, moved out by ``margin`` of that
    front's range in each objective (a front of one point: of its own values). Also the ideal
    point (``ideal_accuracy``, ``ideal_energy_mj``) and the ``box`` between the two, by which
    hypervolumes are normalised. None when no point is finite."""
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy, dtype=float)
    front = pareto_mask(acc, en)
    if not front.any():
        return None
    best_acc, worst_acc = float(acc[front].max()), float(acc[front].min())
    best_energy, worst_energy = float(en[front].min()), float(en[front].max())
    acc_span = best_acc - worst_acc or abs(best_acc) or 1.0
    energy_span = worst_energy - best_energy or abs(best_energy) or 1.0
    ref_acc = worst_acc - margin * acc_span
    ref_energy = worst_energy + margin * energy_span
    return {
        "accuracy": ref_acc,
        "energy_mj": ref_energy,
        "ideal_accuracy": best_acc,
        "ideal_energy_mj": best_energy,
        "box": (best_acc - ref_acc) * (ref_energy - best_energy),
    }
