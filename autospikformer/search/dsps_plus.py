"""DSPS+, our extension of DSPS (SPEC section 5, ``sampler = "dsps-plus"``), as an Optuna sampler.

DSPS ranks parents by one scalarisation (``F_AEB``), so a population converges on one region of
the accuracy/energy front, and it spends an evaluation on every offspring it draws. DSPS+ keeps
DSPS's generations, operators, storage layout and guarantees (:mod:`autospikformer.search.dsps`:
no duplicate evaluation, many workers on one storage, resume with a fresh process, a seeded
sequential run repeats) and changes two things:

* **Parents by Pareto rank.** The pool of generation ``g`` (the complete trials of ``g - 1``
  and their parents) is sorted into non-dominated fronts, feasible trials before infeasible
  ones (a trial is infeasible when one of its Optuna constraints, ``trial.set_constraint``, is
  positive; among those the smaller total violation ranks first); the last front that fits is
  cut by crowding distance (``tie_break = "crowding"``, NSGA-II's rule) or by hypervolume
  contribution (``"hypervolume"``). Ties left are broken by trial number.
* **A predictor screens the offspring.** For every slot ``candidates`` offspring are proposed:
  each, with probability ``local_prob``, is one gene of a random member of the study's current
  front moved to another value of its choice list (local search), otherwise a DSPS offspring of
  the generation's parents (crossover or copy, then mutation). Duplicates of evaluated or running
  architectures and candidates ``feasible`` rejects are dropped. Two ridge regressions fitted on
  the finished trials of the earlier generations predict each candidate's accuracy and energy,
  and the one whose predicted point adds the most hypervolume to the study's current front
  (its complete, feasible trials plus the predicted points of the trials other workers are
  running) is evaluated; when no candidate is predicted to add any, the one closest to the
  front (additive epsilon) is. The features: per block position one-hot encodings of the neuron
  settings and the block's genes, shared (threshold, tau) pairs, time steps, width, depth and
  the log of the transformer's dense parameter count for accuracy; for energy, the dense MACs
  of each block (their ``N``-proportional part ``(4 + 2r) E^2`` and the attention part ``E``)
  times ``T``, split by the block's (threshold, tau) pair, since a block's synaptic operations
  are its firing rate times ``T`` times its MACs and the rate follows the neuron settings.

The first ``min_fit_trials`` trials are uniform draws (the predictor has nothing to learn from
yet); after them screening starts at once, in generation 0 too, where the proposals are uniform
draws of the space (and local moves), so a small budget does not spend a whole population on
unscreened draws. A slot whose candidates are all duplicates or infeasible falls back to DSPS's
own proposal (the DSPS redraw rules then apply as they are). The predictor is refitted every
``refit_every`` trials (every 5 % of the trials so far once that is more) on the complete
trials drawn before the refit point (DSPS's draw indices, not arrival order nor trial numbers:
a resumed run, whose killed trial's re-queued copy has a new number, fits exactly what an
uninterrupted one did); feature rows are kept per architecture, so a refit is
a few small matrix products. The accuracy model is fitted twice, with and without features
that pair the time steps with each block's neuron setting and with the width, and the one with
the smaller leave-one-out error (closed form for ridge regression) is kept: the interactions
help on a real supernet (digits) and only add variance where accuracy is additive. Fitting and
screening read nothing from the storage beyond what DSPS already reads, so the storage calls
per trial stay those of DSPS.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.dsps import (
    DSPSSampler,
    _check_int,
    _check_probability,
    _Record,
    _resize,
    _StudyView,
)
from autospikformer.search.space import SearchSpace

TIE_BREAKS = ("crowding", "hypervolume")
#: Ridge penalty of both predictors (features are one-hot or of order one).
RIDGE_ALPHA = 1.0


# --- Pareto machinery (two objectives, as minimisation of (energy, -accuracy)) ---------------
def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def nondominated_sort(points: Sequence[tuple[float, float]]) -> list[list[int]]:
    """Indices of ``points`` (both minimised) in successive non-dominated fronts."""
    remaining = list(range(len(points)))
    fronts: list[list[int]] = []
    while remaining:
        front = [
            i
            for i in remaining
            if not any(_dominates(points[j], points[i]) for j in remaining if j != i)
        ]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


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


def _staircase(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``points`` (n x 2, minimised), sorted by the first column."""
    if len(points) == 0:
        return points
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    keep = [0]
    for i in range(1, len(points)):
        if points[i, 1] < points[keep[-1], 1]:
            keep.append(i)
    return points[keep]


def hypervolume_improvement(
    front: np.ndarray, candidates: np.ndarray, ref: tuple[float, float]
) -> np.ndarray:
    """Hypervolume each candidate row (minimised) adds to the staircase ``front`` within ``ref``.

    The region the front leaves free is a step function of the first coordinate: below the
    front's first point it reaches ``ref``, on ``[x_j, x_j+1)`` it reaches ``y_j``. A
    candidate adds the part of its box above that region, summed over the steps (vectorised).
    """
    inside = front[(front[:, 0] < ref[0]) & (front[:, 1] < ref[1])] if len(front) else front
    xs = inside[:, 0] if len(inside) else np.zeros(0)
    left = np.concatenate(([-np.inf], xs))
    right = np.concatenate((xs, [ref[0]]))
    height = np.concatenate(([ref[1]], inside[:, 1] if len(inside) else np.zeros(0)))
    px, py = candidates[:, :1], candidates[:, 1:]
    width = np.clip(right[None, :] - np.maximum(left[None, :], px), 0.0, None)
    rise = np.clip(height[None, :] - py, 0.0, None)
    return (width * rise).sum(axis=1)


def epsilon_distance(front: np.ndarray, candidates: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Smallest uniform improvement (in units of ``scale``) that makes each candidate
    non-dominated by ``front``: 0 for a candidate already non-dominated."""
    if len(front) == 0:
        return np.zeros(len(candidates))
    diff = (candidates[:, None, :] - front[None, :, :]) / scale
    return np.maximum(0.0, diff.min(axis=2).max(axis=1))


# --- the predictor ---------------------------------------------------------------------------
class _Encoder:
    """Feature rows of architectures of one space, for the accuracy and the energy model."""

    def __init__(self, space: SearchSpace) -> None:
        c = space.choices
        self.depth = max(c["depth"])
        self.index: dict[str, dict[Any, int]] = {f: {v: i for i, v in enumerate(c[f])} for f in c}
        self.pairs = {
            (th, tau): i
            for i, (th, tau) in enumerate((a, b) for a in c["threshold"] for b in c["tau"])
        }
        n = {f: len(c[f]) for f in c}
        self.globals = ["depth", "embed_dim", "time_steps"]
        offset = 0
        self.global_at: dict[str, int] = {}
        for field in self.globals:
            self.global_at[field] = offset
            offset += n[field]
        self.block_at: dict[str, int] = {}
        for field in PER_BLOCK_FIELDS:
            self.block_at[field] = offset
            offset += n[field] * self.depth
        self.pair_at = offset
        offset += len(self.pairs)
        self.size_at = offset
        offset += 2
        self.plain_width = offset
        # interactions with the time steps: a neuron setting, and a width, serve T differently
        self.steps = {t: i for i, t in enumerate(c["time_steps"])}
        self.pair_steps_at = offset
        offset += len(self.pairs) * len(self.steps)
        self.embed_steps_at = offset
        offset += n["embed_dim"] * len(self.steps)
        self.acc_width = offset
        self.max_embed = float(max(c["embed_dim"]))
        self.energy_width = 2 * len(self.pairs) + 2

    def accuracy_row(self, arch: Architecture) -> np.ndarray:
        row = np.zeros(self.acc_width)
        for field in self.globals:
            row[self.global_at[field] + self.index[field][getattr(arch, field)]] = 1.0
        share = 1.0 / arch.depth
        for field in PER_BLOCK_FIELDS:
            at, width = self.block_at[field], len(self.index[field])
            for i, value in enumerate(getattr(arch, field)):
                row[at + i * width + self.index[field][value]] = share
        for th, tau in zip(arch.threshold, arch.tau, strict=True):
            row[self.pair_at + self.pairs[(th, tau)]] += share
        e = arch.embed_dim / self.max_embed
        params = sum((4 + 2 * r) * e * e for r in arch.mlp_ratio)
        row[self.size_at] = math.log(params)
        row[self.size_at + 1] = math.log(params) ** 2
        t, steps = self.steps[arch.time_steps], len(self.steps)
        for th, tau in zip(arch.threshold, arch.tau, strict=True):
            row[self.pair_steps_at + self.pairs[(th, tau)] * steps + t] += share
        embed = self.index["embed_dim"][arch.embed_dim]
        row[self.embed_steps_at + embed * steps + t] = 1.0
        return row

    def energy_row(self, arch: Architecture) -> np.ndarray:
        row = np.zeros(self.energy_width)
        e = arch.embed_dim / self.max_embed
        t = float(arch.time_steps)
        width = len(self.pairs)
        for i in range(arch.depth):
            k = self.pairs[(arch.threshold[i], arch.tau[i])]
            row[k] += t * (4 + 2 * arch.mlp_ratio[i]) * e * e
            row[width + k] += t * e
        row[2 * width] = t * e * e  # spike-driven patch-splitting convolutions
        row[2 * width + 1] = e  # the first convolution, on real-valued input
        return row


class _Ridge:
    """Least squares with an L2 penalty and an unpenalised intercept (a closed form: fast)."""

    def __init__(self, alpha: float = RIDGE_ALPHA) -> None:
        self.alpha = alpha
        self.coef = np.zeros(0)
        self.intercept = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray, *, loo: bool = False) -> _Ridge:
        """Fit; ``loo``: also set ``loo_mse``, the leave-one-out mean squared error, in closed
        form (residual / (1 - h_ii), h the hat matrix's diagonal, to which centring adds 1/n),
        which model selection compares."""
        mean_x, mean_y = x.mean(axis=0), float(y.mean())
        xc = x - mean_x
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        if loo:
            solved = np.linalg.solve(gram, xc.T)  # one solve gives the weights and the hat
            self.coef = solved @ (y - mean_y)
        else:
            self.coef = np.linalg.solve(gram, xc.T @ (y - mean_y))
        self.intercept = mean_y - float(mean_x @ self.coef)
        if loo:
            hat = np.einsum("ij,ji->i", xc, solved) + 1.0 / len(y)
            residual = y - self.predict(x)
            self.loo_mse = float(np.mean((residual / np.maximum(1.0 - hat, 1e-9)) ** 2))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept


class _Predictor:
    """Predicted (accuracy, energy) of architectures, fitted on complete trials.

    ``rows`` caches each architecture's feature rows across refits (one sampler's cache).
    """

    def __init__(
        self,
        encoder: _Encoder,
        records: Sequence[_Record],
        rows: dict[Architecture, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.encoder = encoder
        self.rows = {} if rows is None else rows
        acc_x, energy_x = self._features([r.arch for r in records], keep=True)  # type: ignore[misc]
        acc = np.array([r.values[0] for r in records])  # type: ignore[index]
        energy = np.array([r.values[1] for r in records])  # type: ignore[index]
        self.acc_scale = float(acc.std()) or 1.0
        self.energy_scale = float(np.abs(energy).mean()) or 1.0
        # with or without the time-step interactions, whichever predicts left-out trials better
        # (they help on real supernets and only add variance where accuracy is additive)
        plain = _Ridge().fit(acc_x[:, : encoder.plain_width], acc / self.acc_scale, loo=True)
        full = _Ridge().fit(acc_x, acc / self.acc_scale, loo=True)
        self.interactions = full.loo_mse < plain.loo_mse
        self.accuracy = full if self.interactions else plain
        self.energy = _Ridge(alpha=1e-3).fit(energy_x, energy / self.energy_scale)

    def _features(
        self, archs: Sequence[Architecture], *, keep: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature matrices of ``archs``; ``keep``: cache the rows (evaluated architectures
        only: proposals that are never evaluated would grow the cache without bound)."""
        rows = []
        for arch in archs:
            row = self.rows.get(arch)
            if row is None:
                row = (self.encoder.accuracy_row(arch), self.encoder.energy_row(arch))
                if keep:
                    self.rows[arch] = row
            rows.append(row)
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """n x 2 array of (accuracy, energy)."""
        acc_x, energy_x = self._features(archs, keep=False)
        if not self.interactions:
            acc_x = acc_x[:, : self.encoder.plain_width]
        acc = self.accuracy.predict(acc_x)
        energy = self.energy.predict(energy_x)
        return np.column_stack((acc * self.acc_scale, energy * self.energy_scale))


class DSPSPlusSampler(DSPSSampler):
    """DSPS+ over one :class:`SearchSpace`: Pareto-rank parents, predictor-screened offspring.

    Args:
        space, population_size, num_parents, crossover_prob, mutation_prob, feasible,
            max_redraws, settle_timeout, seed: as for :class:`~autospikformer.search.dsps.DSPSSampler`.
        candidates: offspring proposed per slot; the predictor picks one to evaluate (1: no
            screening, every proposal is evaluated as in DSPS).
        local_prob: probability that a proposal is a single-gene move of a front member
            rather than an offspring of the generation's parents.
        tie_break: how the last Pareto front that fits among the parents is cut:
            ``"crowding"`` or ``"hypervolume"`` (contribution).
        min_fit_trials: complete trials needed before the predictor is used (until then
            proposals are evaluated unscreened).
        refit_every: the predictor is refitted every this many trials (or every 5 % of the
            trials so far, when that is more) on the complete trials drawn before the refit
            point.
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        population_size: int = 50,
        num_parents: int = 20,
        crossover_prob: float = 0.3,
        mutation_prob: float = 0.4,
        candidates: int = 16,
        local_prob: float = 0.2,
        tie_break: str = "crowding",
        min_fit_trials: int = 20,
        refit_every: int = 10,
        feasible: Callable[[Architecture], bool] | None = None,
        max_redraws: int = 100,
        settle_timeout: float = 10.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space=space,
            population_size=population_size,
            num_parents=num_parents,
            crossover_prob=crossover_prob,
            mutation_prob=mutation_prob,
            feasible=feasible,
            max_redraws=max_redraws,
            settle_timeout=settle_timeout,
            seed=seed,
        )
        self._candidates = _check_int("candidates", candidates, 1)
        self._local_prob = _check_probability("local_prob", local_prob)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
        self._tie_break = tie_break
        self._min_fit_trials = _check_int("min_fit_trials", min_fit_trials, 2)
        self._refit_every = _check_int("refit_every", refit_every, 1)
        self._encoder = _Encoder(space)
        self._drawing = -1  # number of the trial being drawn
        # per study view: (refit point, predictor or None) and (finished count, front, members)
        self._predictors: dict[int, tuple[int, _Predictor | None]] = {}
        self._rows: dict[Architecture, tuple[np.ndarray, np.ndarray]] = {}  # features per arch
        self._fronts: dict[int, tuple[int, np.ndarray, list[_Record]]] = {}

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "sampler": "dsps-plus",
            "candidates": self._candidates,
            "local_prob": self._local_prob,
            "tie_break": self._tie_break,
            "min_fit_trials": self._min_fit_trials,
            "refit_every": self._refit_every,
        }

    # --- parents ---------------------------------------------------------------------------
    def _select_parents(self, records: list[_Record]) -> list[int]:
        points = [(r.values[1], -r.values[0]) for r in records]  # type: ignore[index]
        order = sorted(range(len(records)), key=lambda i: records[i].number)
        chosen = pareto_select(
            [points[i] for i in order],
            self._num_parents,
            violations=[records[i].violation for i in order],
            tie_break=self._tie_break,
        )
        return [records[order[i]].number for i in chosen]

    # --- proposal --------------------------------------------------------------------------
    def _propose(
        self, study: Any, view: _StudyView, generation: int, rng: random.Random, uniform: bool
    ) -> tuple[Architecture, str]:
        if uniform:
            return super()._propose(study, view, generation, rng, uniform)
        predictor = self._predictor(view, self._draw_index) if self._candidates > 1 else None
        if predictor is None:
            return super()._propose(study, view, generation, rng, uniform)
        front_records = self._front(view)[2]
        pool: list[tuple[Architecture, str]] = []
        seen: set[Architecture] = set()
        me = self._drawing
        for _ in range(self._candidates):
            if front_records and rng.random() < self._local_prob:
                arch, origin = (
                    _single_gene(rng.choice(front_records).arch, self._space, rng),
                    "local",
                )  # type: ignore[arg-type]
            else:
                arch, origin = super()._propose(study, view, generation, rng, uniform)
            if arch in seen or view.taken(arch, exclude=me):
                continue
            if self._feasible is not None and not self._feasible(arch):
                continue
            seen.add(arch)
            pool.append((arch, origin))
        if not pool:
            return super()._propose(study, view, generation, rng, uniform)
        if len(pool) == 1:
            return pool[0]
        return pool[self._pick(view, predictor, [a for a, _ in pool], me)]

    def _redraw(
        self, study: Any, view: _StudyView, me: _Record, fixed: dict[str, Any], generation: int
    ) -> tuple[Architecture, int]:
        """Read before proposing too (DSPS proposes from its last re-read): the front and the
        running trials must include the trial that finished last, and a resumed run then
        sees exactly what an uninterrupted one did. One read more per trial."""
        if view.scanned and self._candidates > 1:
            self._refresh(study, view, me)
        self._drawing = me.number  # the draw runs under the sampler's lock
        return super()._redraw(study, view, me, fixed, generation)

    def _pick(
        self, view: _StudyView, predictor: _Predictor, archs: list[Architecture], me: int
    ) -> int:
        """Index of the candidate predicted to add the most hypervolume (else the nearest)."""
        _, front, _ = self._front(view)
        pending = [r.arch for k, r in view.live.items() if k != me and r.arch is not None]
        predicted = predictor.predict([*archs, *pending])
        points = np.column_stack((predicted[:, 1], -predicted[:, 0]))  # minimised
        mine, others = points[: len(archs)], points[len(archs) :]
        if len(others):
            front = _staircase(np.concatenate((front, others))) if len(front) else others
        if len(front) == 0:
            return 0
        lo, hi = front.min(axis=0), front.max(axis=0)
        scale = np.where(hi - lo > 0, hi - lo, np.maximum(np.abs(hi), 1e-12))
        ref = (float(hi[0] + 0.1 * scale[0]), float(hi[1] + 0.1 * scale[1]))
        gain = hypervolume_improvement(front, mine, ref)
        if gain.max() > 0:
            return int(np.argmax(gain))
        return int(np.argmin(epsilon_distance(front, mine, scale)))

    def _predictor(self, view: _StudyView, draw: int) -> _Predictor | None:
        """The predictor for the draw with index ``draw``: fitted on the complete trials drawn
        before the last refit point it reached (:func:`refit_point`)."""
        point = refit_point(draw, self._refit_every)
        cached = self._predictors.get(id(view))
        if cached is not None and cached[0] == point:
            return cached[1]
        records = [
            r
            for r in view.finished.values()
            if r.values is not None
            and r.arch is not None
            and r.draw_index < point
            and all(math.isfinite(v) for v in r.values)
        ]
        records.sort(key=lambda r: (r.draw_index, r.number))
        predictor = (
            _Predictor(self._encoder, records, self._rows)
            if len(records) >= self._min_fit_trials
            else None
        )
        self._predictors[id(view)] = (point, predictor)
        return predictor

    def _front(self, view: _StudyView) -> tuple[int, np.ndarray, list[_Record]]:
        """(finished count, staircase of the complete feasible trials, their records).

        Incremental: trials only ever join ``view.finished`` (in arrival order), and a trial
        dominated once stays dominated, so the new front is that of the old members and the
        trials that finished since, whatever the study's size.
        """
        cached = self._fronts.get(id(view))
        if cached is not None and cached[0] == len(view.finished):
            return cached
        seen, members = (0, []) if cached is None else (cached[0], cached[2])
        arrived = [
            r
            for r in itertools.islice(view.finished.values(), seen, None)
            if r.values is not None and r.arch is not None and r.violation <= 0
        ]
        records = sorted([*members, *arrived], key=lambda r: (r.draw_index, r.number))
        if records:
            points = np.array([(r.values[1], -r.values[0]) for r in records])  # type: ignore[index]
            front = _staircase(points)
            on_front = {tuple(p) for p in front.tolist()}
            members = [
                r for r, p in zip(records, points.tolist(), strict=True) if tuple(p) in on_front
            ]
        else:
            front, members = np.zeros((0, 2)), []
        result = (len(view.finished), front, members)
        self._fronts[id(view)] = result
        return result


def refit_point(number: int, every: int) -> int:
    """The last refit point at or below draw index ``number``: points are ``every`` draws
    apart, or 5 % of the draws so far when that is more, so a refit costs O(1) per trial
    amortised however long the study runs (a function of the index alone: resumed runs agree)."""
    point = 0
    while True:
        step = max(every, point // 20)
        if point + step > number:
            return point
        point += step


def _single_gene(arch: Architecture, space: SearchSpace, rng: random.Random) -> Architecture:
    """``arch`` with one gene (a global field, or one block's field) moved to another value;
    a depth move trims the blocks or grows uniform ones, as DSPS's mutation does."""
    c = space.choices
    genes: list[tuple[str, int | None]] = [
        (f, None) for f in ("depth", "embed_dim", "time_steps") if len(c[f]) > 1
    ]
    genes += [(f, i) for f in PER_BLOCK_FIELDS if len(c[f]) > 1 for i in range(arch.depth)]
    if not genes:
        return arch
    field, block = rng.choice(genes)
    fields: dict[str, Any] = {
        "depth": arch.depth,
        "embed_dim": arch.embed_dim,
        "time_steps": arch.time_steps,
        **{f: list(getattr(arch, f)) for f in PER_BLOCK_FIELDS},
    }
    if block is None:
        value = rng.choice([v for v in c[field] if v != getattr(arch, field)])
        fields[field] = value
        if field == "depth":
            fields.update(_resize(arch, int(value), space, rng))
    else:
        values = fields[field]
        values[block] = rng.choice([v for v in c[field] if v != values[block]])
    return Architecture(**fields)


__all__ = [
    "TIE_BREAKS",
    "DSPSPlusSampler",
    "crowding_distance",
    "hypervolume_contribution",
    "hypervolume_improvement",
    "nondominated_sort",
    "pareto_select",
    "refit_point",
]
