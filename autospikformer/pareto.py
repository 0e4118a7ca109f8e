"""Two-objective Pareto math for accuracy (maximised) and energy (minimised), torch-free.

One home for what the search and the reports both need:

- for reports: the Pareto mask (constraint-aware: only feasible points can be on a front, as in
  Optuna's ``study.best_trials``), the hypervolume of a front and its history point by point,
  the reference point several studies share; points as accuracy and energy arrays, a point with
  a non-finite value never on a front;
- for the search (DSPS+): non-dominated sorting (Optuna's), crowding distance, hypervolume
  contribution, constrained Pareto-rank selection, and the hypervolume a candidate would add to
  a front (or is expected to add, under a predictor's spread); points as ``(energy, -accuracy)`` pairs, both minimised.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autospikformer.optuna_api import non_domination_ranks

#: How far beyond the pooled front's nadir a shared reference point lies, as a fraction of the
#: front's range in each objective (Ishibuchi et al., 2018).
REFERENCE_MARGIN = 0.1


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` (accuracy, energy) is at least as accurate and as cheap as ``b``, and better in
    one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


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


# --- ranking and screening (points minimised in both coordinates: (energy, -accuracy)) --------
TIE_BREAKS = ("crowding", "hypervolume")


def nondominated_sort(points: Sequence[tuple[float, float]]) -> list[list[int]]:
    """Indices of ``points`` (both minimised) in successive non-dominated fronts, each in index
    order (Optuna's non-dominated sorting, as NSGA-II ranks)."""
    if not len(points):
        return []
    fronts: dict[int, list[int]] = {}
    for i, rank in enumerate(non_domination_ranks(points)):
        fronts.setdefault(int(rank), []).append(i)
    return [fronts[rank] for rank in sorted(fronts)]


def crowding_distance(points: Sequence[tuple[float, float]]) -> list[float]:
    """NSGA-II crowding distance of each point of one front (extremes: infinity)."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for k in range(2):
        order = sorted(range(n), key=lambda i: (points[i][k], points[i][1 - k]))
        span = points[order[-1]][k] - points[order[0]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if span <= 0:
            continue
        for pos in range(1, n - 1):
            gap = points[order[pos + 1]][k] - points[order[pos - 1]][k]
            distance[order[pos]] += gap / span
    return distance


def hypervolume_contribution(points: Sequence[tuple[float, float]]) -> list[float]:
    """Exclusive hypervolume of each point of one front (extremes: infinity, as they bound it)."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    order = sorted(range(n), key=lambda i: (points[i][0], points[i][1]))
    contribution = [0.0] * n
    contribution[order[0]] = contribution[order[-1]] = math.inf
    for pos in range(1, n - 1):
        here, left, right = points[order[pos]], points[order[pos - 1]], points[order[pos + 1]]
        contribution[order[pos]] = max(0.0, right[0] - here[0]) * max(0.0, left[1] - here[1])
    return contribution


def pareto_select(
    points: Sequence[tuple[float, float]],
    k: int,
    *,
    violations: Sequence[float] | None = None,
    tie_break: str = "crowding",
) -> list[int]:
    """Indices of the ``k`` best ``points`` (both minimised) by constrained Pareto rank.

    Feasible points (violation 0) come first, by non-dominated front; the front that does not
    fit whole is cut by ``tie_break`` (larger crowding distance or hypervolume contribution
    first, then lower index); infeasible points follow by total violation.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    violations = [0.0] * len(points) if violations is None else list(violations)
    feasible = [i for i in range(len(points)) if violations[i] <= 0]
    chosen: list[int] = []
    for front in nondominated_sort([points[i] for i in feasible]):
        members = [feasible[i] for i in front]
        if len(chosen) + len(members) <= k:
            chosen.extend(members)
            continue
        spread = (crowding_distance if tie_break == "crowding" else hypervolume_contribution)(
            [points[i] for i in members]
        )
        ranked = sorted(range(len(members)), key=lambda j: (-spread[j], members[j]))
        chosen.extend(members[j] for j in ranked[: k - len(chosen)])
        break
    if len(chosen) < k:
        infeasible = sorted(
            (i for i in range(len(points)) if violations[i] > 0), key=lambda i: (violations[i], i)
        )
        chosen.extend(infeasible[: k - len(chosen)])
    return chosen[:k]


def staircase(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``points`` (n x 2, minimised), sorted by the first column."""
    if len(points) == 0:
        return points
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    keep = [0]
    for i in range(1, len(points)):
        if points[i, 1] < points[keep[-1], 1]:
            keep.append(i)
    return points[keep]


def _free_steps(front: np.ndarray, ref: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """The region the staircase ``front`` (minimised) leaves free within ``ref``, as steps of
    the first coordinate: below the front's first point it reaches ``ref``, on
    ``[x_j, x_j+1)`` it reaches ``y_j``. Returns each step's left and right end and height."""
    inside = front[(front[:, 0] < ref[0]) & (front[:, 1] < ref[1])] if len(front) else front
    xs = inside[:, 0] if len(inside) else np.zeros(0)
    left = np.concatenate(([-np.inf], xs))
    right = np.concatenate((xs, [ref[0]]))
    height = np.concatenate(([ref[1]], inside[:, 1] if len(inside) else np.zeros(0)))
    return left, right, height


def hypervolume_improvement(
    front: np.ndarray, candidates: np.ndarray, ref: tuple[float, float]
) -> np.ndarray:
    """Hypervolume each candidate row (minimised) adds to the staircase ``front`` within ``ref``:
    the part of its box above the free region (:func:`_free_steps`), summed over the steps
    (vectorised)."""
    left, right, height = _free_steps(front, ref)
    px, py = candidates[:, :1], candidates[:, 1:]
    width = np.clip(right[None, :] - np.maximum(left[None, :], px), 0.0, None)
    rise = np.clip(height[None, :] - py, 0.0, None)
    return (width * rise).sum(axis=1)


def _expected_shortfall(level: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``E[(level - X)^+]`` for ``X ~ N(mean, std^2)`` (broadcast; ``std`` 0: ``(level -
    mean)^+``; ``level`` -inf: 0)."""
    from scipy.special import ndtr

    below = np.isneginf(level)
    gap = np.where(below, 0.0, level) - mean
    safe = np.where(std > 0, std, 1.0)
    z = gap / safe
    smooth = gap * ndtr(z) + safe * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    value = np.where(std > 0, smooth, np.maximum(gap, 0.0))
    return np.where(below, 0.0, np.maximum(value, 0.0))


def expected_hypervolume_improvement(
    front: np.ndarray, mean: np.ndarray, std: np.ndarray, ref: tuple[float, float]
) -> np.ndarray:
    """Expected hypervolume each candidate adds to the staircase ``front`` within ``ref``,
    both coordinates minimised, candidate ``i`` at ``N(mean[i], diag(std[i]^2))``.

    Exact in two dimensions: the improvement of a point (x, y) is a sum over the steps j of
    the free region, ``[l_j, r_j)`` at height ``h_j``, of ``(r_j - max(x, l_j))^+ * (h_j -
    y)^+`` (:func:`hypervolume_improvement`); the width is ``(r_j - x)^+ - (l_j - x)^+``, each
    factor depends on one coordinate, so with independent coordinates the expectation is
    ``sum_j (S_x(r_j) - S_x(l_j)) * S_y(h_j)``, ``S(c) = E[(c - X)^+] = (c - mu) Phi(z) +
    sigma phi(z)``. With ``std`` 0 it is the hypervolume improvement of ``mean``.
    """
    left, right, height = (steps[None, :] for steps in _free_steps(front, ref))
    mx, my = mean[:, :1], mean[:, 1:]
    sx, sy = std[:, :1], std[:, 1:]
    width = _expected_shortfall(right, mx, sx) - _expected_shortfall(left, mx, sx)
    rise = _expected_shortfall(height, my, sy)
    return (np.maximum(width, 0.0) * rise).sum(axis=1)


def epsilon_distance(front: np.ndarray, candidates: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Smallest uniform improvement (in units of ``scale``) that makes each candidate
    non-dominated by ``front``: 0 for a candidate already non-dominated."""
    if len(front) == 0:
        return np.zeros(len(candidates))
    diff = (candidates[:, None, :] - front[None, :, :]) / scale
    return np.maximum(0.0, diff.min(axis=2).max(axis=1))
