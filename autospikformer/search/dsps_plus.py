"""DSPS+, our extension of DSPS (SPEC section 5, ``sampler = "dsps-plus"``): a DSPS sampler with
two other strategies.

- :class:`ParetoParents`: parents by constrained Pareto rank (the feasible trials in
  non-dominated fronts, the last front that fits cut by crowding distance or hypervolume
  contribution, then the infeasible ones by violation), instead of one scalarisation (F_AEB).
- :class:`ScreenedOffspring`: ``candidates`` proposals per slot (DSPS offspring, or with
  probability ``local_prob`` a single-gene move of a member of the study's front, or with
  ``pool_prob`` a gene-pool draw from the parents' and the front's gene values); a predictor
  fitted on the study's trials (:mod:`autospikformer.search.predictor`) picks the one with the
  largest expected hypervolume improvement (:func:`~autospikformer.pareto.expected_hypervolume_improvement`) over the
  front (its complete feasible trials plus the predicted points of the trials running
  elsewhere), under the predictor's own uncertainty, within a reference point one front's
  range beyond the front's nadir.

Everything else is DSPS's (:class:`~autospikformer.search.dsps.DSPSSampler`): generations,
storage layout, many workers, resumes, seeded repeats, no duplicate evaluation. docs/search.md
("DSPS and DSPS+") gives the measured settings.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from autospikformer.checks import check_choice, check_int, check_number, check_probability
from autospikformer.pareto import (
    TIE_BREAKS,
    epsilon_distance,
    expected_hypervolume_improvement,
    hypervolume_improvement,
    pareto_select,
    staircase,
)
from autospikformer.search.architecture import Architecture
from autospikformer.search.dsps import DSPSSampler
from autospikformer.search.mirror import StudyMirror, TrialSummary
from autospikformer.search.operators import gene_pool_draw, single_gene_move
from autospikformer.search.predictor import (
    ACCURACY_MODELS,
    ArchitectureEncoder,
    ObjectivePredictor,
    refit_point,
)
from autospikformer.search.space import SearchSpace
from autospikformer.search.strategies import Draw, Offspring

__all__ = ["DSPSPlusSampler", "ParetoParents", "ScreenedOffspring"]

#: How a screened slot picks among its proposals: ``"ehvi"``, the expected hypervolume
#: improvement under the predictor's uncertainty, or ``"hvi"``, the improvement of the point
#: prediction (the nearest to the front when none improves it; with ``reference_margin`` 0.1,
#: DSPS+ before 2026-12-06).
ACQUISITIONS = ("ehvi", "hvi")
#: The screening's reference point lies this many times the front's range beyond its nadir.
REFERENCE_MARGIN = 1.0
#: Which interactions the accuracy model may add, each nested set kept only where its
#: leave-one-out error is the smallest: ``"time_steps"`` (the default), of the neuron settings and
#: the width with T; ``"globals"``, also of every block gene with the depth, the width and T.
INTERACTIONS = ("time_steps", "globals")
#: The predictor's spread is measured on this share of the fitted trials, the last drawn.
SPREAD_RECENT = 0.2


class ParetoParents:
    """Parents by constrained Pareto rank; ``tie_break`` cuts the last front that fits:
    ``"crowding"`` (NSGA-II's rule) or ``"hypervolume"`` (contribution)."""

    def __init__(self, tie_break: str = "crowding") -> None:
        self.tie_break = check_choice("tie_break", tie_break, TIE_BREAKS)

    def select(self, pool: list[TrialSummary], k: int) -> list[int]:
        points = [(r.values[1], -r.values[0]) for r in pool]  # type: ignore[index]
        order = sorted(range(len(pool)), key=lambda i: pool[i].number)
        chosen = pareto_select(
            [points[i] for i in order],
            k,
            violations=[pool[i].violation for i in order],
            tie_break=self.tie_break,
        )
        return [pool[order[i]].number for i in chosen]

    def settings(self) -> dict[str, Any]:
        return {"tie_break": self.tie_break}


class ScreenedOffspring:
    """DSPS offspring (and single-gene moves of front members) screened by a predictor.

    The first ``min_fit_trials`` complete trials are DSPS's own proposals (the predictor has
    nothing to learn from yet); screening then starts at once, in generation 0 too (uniform
    draws screened). The predictor is refitted every ``refit_every`` draws, or every 5 % of the
    draws so far once that is more (:func:`~autospikformer.search.predictor.refit_point`), on the
    complete trials drawn before the refit point. Feature rows are kept per architecture and the
    front incrementally, so a draw's cost does not grow with the study.

    ``acquisition`` ``"ehvi"`` (the default) evaluates the proposal with the largest expected
    hypervolume improvement under the predictor's spread (Bayesian ridge: what a new
    architecture would measure is normal around the prediction, wider for architectures unlike
    the fitted ones, its noise estimated on the last ``spread_recent`` share of the fitted
    trials, where the search evaluates now); ``"hvi"``, the largest improvement of the point
    prediction. The reference point of both lies ``reference_margin`` times the front's range
    beyond its nadir, so that extending the front at either end counts. ``accuracy_model``
    ``"gp"`` predicts accuracy with a Gaussian process on the genes instead of the ridge.
    """

    def __init__(
        self,
        space: SearchSpace,
        base: Offspring,
        *,
        candidates: int = 16,
        local_prob: float = 0.2,
        pool_prob: float = 0.0,
        pool_prior: float = 1.0,
        min_fit_trials: int = 20,
        refit_every: int = 10,
        acquisition: str = "ehvi",
        reference_margin: float = REFERENCE_MARGIN,
        spread_recent: float = SPREAD_RECENT,
        interactions: str = "time_steps",
        accuracy_model: str = "ridge",
    ) -> None:
        self.base = base
        self.candidates = check_int("candidates", candidates, minimum=1)
        self.local_prob = check_probability("local_prob", local_prob)
        self.pool_prob = check_probability("pool_prob", pool_prob)
        self.pool_prior = check_number("pool_prior", pool_prior, lo=0.0)
        self.min_fit_trials = check_int("min_fit_trials", min_fit_trials, minimum=2)
        self.refit_every = check_int("refit_every", refit_every, minimum=1)
        self.acquisition = check_choice("acquisition", acquisition, ACQUISITIONS)
        self.reference_margin = check_number("reference_margin", reference_margin, lo=0.0)
        self.spread_recent = check_number("spread_recent", spread_recent, lo=0.0, hi=1.0)
        self.interactions = check_choice("interactions", interactions, INTERACTIONS)
        self.accuracy_model = check_choice("accuracy_model", accuracy_model, ACCURACY_MODELS)
        self.reads_first = self.candidates > 1  # the front must hold the trial finished last
        self.encoder = ArchitectureEncoder(space, rich=self.interactions == "globals")
        # per study mirror: (refit point, predictor or None) and (finished count, front, members)
        self._predictors: dict[int, tuple[int, ObjectivePredictor | None]] = {}
        self._rows: dict[Architecture, tuple[np.ndarray, np.ndarray]] = {}  # features per arch
        self._fronts: dict[int, tuple[int, np.ndarray, list[TrialSummary]]] = {}

    def settings(self) -> dict[str, Any]:
        return {
            **self.base.settings(),
            "sampler": "dsps-plus",
            "candidates": self.candidates,
            "local_prob": self.local_prob,
            "min_fit_trials": self.min_fit_trials,
            "refit_every": self.refit_every,
            "acquisition": self.acquisition,
            "reference_margin": self.reference_margin,
            "spread_recent": self.spread_recent,
            # recorded only when used, so studies begun before the option resume unwarned
            **(
                {"pool_prob": self.pool_prob, "pool_prior": self.pool_prior}
                if self.pool_prob
                else {}
            ),
            # recorded only when set, so studies begun before the option resume unwarned
            **({"interactions": self.interactions} if self.interactions != "time_steps" else {}),
            **({"accuracy_model": self.accuracy_model} if self.accuracy_model != "ridge" else {}),
        }

    def propose(self, draw: Draw, rng: random.Random) -> tuple[Architecture, str]:
        predictor = self.predictor(draw.mirror, draw.index) if self.candidates > 1 else None
        if predictor is None:
            return self.base.propose(draw, rng)
        front_records = self.front(draw.mirror)[2]
        genes = self.gene_pool(draw, front_records) if self.pool_prob > 0 else []
        pool: list[tuple[Architecture, str]] = []
        seen: set[Architecture] = set()
        for _ in range(self.candidates):
            if front_records and rng.random() < self.local_prob:
                member = rng.choice(front_records).arch
                arch, origin = single_gene_move(member, draw.space, rng), "local"  # type: ignore[arg-type]
            elif genes and rng.random() < self.pool_prob:
                arch, origin = gene_pool_draw(genes, draw.space, rng, self.pool_prior), "pool"
            else:
                arch, origin = self.base.propose(draw, rng)
            if arch in seen or draw.mirror.taken(arch, exclude=draw.number):
                continue
            if draw.feasible is not None and not draw.feasible(arch):
                continue
            seen.add(arch)
            pool.append((arch, origin))
        if not pool:
            return self.base.propose(draw, rng)
        if len(pool) == 1:
            return pool[0]
        return pool[self.pick(draw.mirror, predictor, [a for a, _ in pool], draw.number)]

    @staticmethod
    def gene_pool(draw: Draw, front_records: list[TrialSummary]) -> list[Architecture]:
        """The architectures whose gene values the gene-pool draws follow: the generation's
        parents and the members of the study's front, each once (in generation 0, the front)."""
        members = [] if draw.generation == 0 else list(draw.parents())
        members += [r.arch for r in front_records if r.arch is not None]
        return list(dict.fromkeys(members))

    def pick(
        self,
        mirror: StudyMirror,
        predictor: ObjectivePredictor,
        archs: list[Architecture],
        me: int,
    ) -> int:
        """Index of the candidate expected to add the most hypervolume (``"ehvi"``: under the
        predictor's spread; ``"hvi"``: at its point prediction) to the front of the complete
        trials and the predicted points of the trials running elsewhere, else the nearest."""
        _, front, _ = self.front(mirror)
        pending = [r.arch for k, r in mirror.live.items() if k != me and r.arch is not None]
        predicted, spread = predictor.predict_distribution([*archs, *pending])
        points = np.column_stack((predicted[:, 1], -predicted[:, 0]))  # minimised
        mine, others = points[: len(archs)], points[len(archs) :]
        if len(others):
            front = staircase(np.concatenate((front, others))) if len(front) else others
        if len(front) == 0:
            return 0
        lo, hi = front.min(axis=0), front.max(axis=0)
        scale = np.where(hi - lo > 0, hi - lo, np.maximum(np.abs(hi), 1e-12))
        ref = (
            float(hi[0] + self.reference_margin * scale[0]),
            float(hi[1] + self.reference_margin * scale[1]),
        )
        if spread is not None:
            std = spread[: len(archs), ::-1]  # (energy, accuracy), as the points
            gain = expected_hypervolume_improvement(front, mine, std, ref)
        else:
            gain = hypervolume_improvement(front, mine, ref)
        if gain.max() > 0:
            return int(np.argmax(gain))
        return int(np.argmin(epsilon_distance(front, mine, scale)))

    def predictor(self, mirror: StudyMirror, draw: int) -> ObjectivePredictor | None:
        """The predictor for the draw with index ``draw``: fitted on the complete trials drawn
        before the last refit point it reached."""
        point = refit_point(draw, self.refit_every)
        cached = self._predictors.get(id(mirror))
        if cached is not None and cached[0] == point:
            return cached[1]
        records = [
            r
            for r in mirror.finished.values()
            if r.values is not None
            and r.arch is not None
            and r.draw_index < point
            and all(math.isfinite(v) for v in r.values)
        ]
        records.sort(key=lambda r: (r.draw_index, r.number))
        predictor = (
            ObjectivePredictor(
                self.encoder,
                records,
                self._rows,
                variance=self.acquisition == "ehvi",
                recent=max(self.min_fit_trials, int(self.spread_recent * len(records))),
                accuracy_model=self.accuracy_model,
            )
            if len(records) >= self.min_fit_trials
            else None
        )
        self._predictors[id(mirror)] = (point, predictor)
        return predictor

    def front(self, mirror: StudyMirror) -> tuple[int, np.ndarray, list[TrialSummary]]:
        """(finished count, staircase of the complete feasible trials, their summaries).

        Incremental: trials only ever join ``mirror.finished`` (in arrival order), and a trial
        dominated once stays dominated, so the new front is that of the old members and the
        trials that finished since, whatever the study's size.
        """
        cached = self._fronts.get(id(mirror))
        if cached is not None and cached[0] == len(mirror.finished):
            return cached
        seen, members = (0, []) if cached is None else (cached[0], cached[2])
        arrived = [
            r
            for r in itertools.islice(mirror.finished.values(), seen, None)
            if r.values is not None and r.arch is not None and r.violation <= 0
        ]
        records = sorted([*members, *arrived], key=lambda r: (r.draw_index, r.number))
        if records:
            points = np.array([(r.values[1], -r.values[0]) for r in records])  # type: ignore[index]
            front = staircase(points)
            on_front = {tuple(p) for p in front.tolist()}
            members = [
                r for r, p in zip(records, points.tolist(), strict=True) if tuple(p) in on_front
            ]
        else:
            front, members = np.zeros((0, 2)), []
        result = (len(mirror.finished), front, members)
        self._fronts[id(mirror)] = result
        return result


class DSPSPlusSampler(DSPSSampler):
    """DSPS+ over one :class:`SearchSpace`: Pareto-rank parents, predictor-screened offspring.

    Example:

        .. code-block:: python

            import optuna
            from autospikformer import SearchSpace
            from autospikformer.search.dsps_plus import DSPSPlusSampler
            from autospikformer.search.suggest import suggest_architecture

            space = SearchSpace.load("digits")

            def objective(trial):
                arch = suggest_architecture(trial, space)
                return arch.embed_dim / 64 - sum(arch.threshold) / 10, arch.depth * arch.time_steps

            sampler = DSPSPlusSampler(space=space, population_size=10, num_parents=4, seed=0)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.optimize(objective, n_trials=40)  # screened from the 20th complete trial on

    Args:
        space, population_size, num_parents, crossover_prob, mutation_prob, feasible,
            max_redraws, settle_timeout, seed: as for :class:`~autospikformer.search.dsps.DSPSSampler`.
        candidates: offspring proposed per slot; the predictor picks one to evaluate (1: no
            screening, every proposal is evaluated as in DSPS).
        local_prob: probability that a proposal is a single-gene move of a front member
            rather than an offspring of the generation's parents.
        pool_prob: probability that a proposal that is not a single-gene move is a gene-pool
            draw (:func:`~autospikformer.search.operators.gene_pool_draw` over the parents and
            the front; origin ``"pool"``); 0, the default, keeps DSPS+'s draws as they were.
        pool_prior: the gene-pool draw's prior weight (pseudo-observations spread evenly over
            each gene's choices).
        tie_break: how the last Pareto front that fits among the parents is cut:
            ``"crowding"`` or ``"hypervolume"`` (contribution).
        min_fit_trials: complete trials needed before the predictor is used (until then
            proposals are evaluated unscreened).
        refit_every: the predictor is refitted every this many draws (or every 5 % of the
            draws so far, when that is more) on the complete trials drawn before the refit
            point.
        acquisition: ``"ehvi"``: a slot evaluates the proposal with the largest expected
            hypervolume improvement under the predictor's uncertainty; ``"hvi"``: the largest
            improvement of the point prediction (else the nearest to the front).
        reference_margin: the screening's reference point lies this many times the front's
            range beyond the front's nadir, in each objective.
        spread_recent: the share of the fitted trials, the last drawn, on which the
            predictor's noise is estimated.
        interactions: the richest interactions the accuracy model may add (:data:`INTERACTIONS`):
            ``"time_steps"`` (the neuron settings and the width crossed with T) or ``"globals"``
            (also each block gene's value crossed with the depth, the width and T).
        accuracy_model: ``"ridge"`` (the default) or ``"gp"``: accuracy predicted by a Gaussian
            process on the genes (:class:`~autospikformer.search.predictor.GaussianProcessAccuracy`),
            more accurate and dearer (a refit grows with the cube of the trials, up to
            :data:`~autospikformer.search.predictor.GP_MAX_TRIALS`); for small budgets of
            expensive trials.
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
        pool_prob: float = 0.0,
        pool_prior: float = 1.0,
        tie_break: str = "crowding",
        min_fit_trials: int = 20,
        refit_every: int = 10,
        acquisition: str = "ehvi",
        reference_margin: float = REFERENCE_MARGIN,
        spread_recent: float = SPREAD_RECENT,
        interactions: str = "time_steps",
        accuracy_model: str = "ridge",
        feasible: Callable[[Architecture], bool] | None = None,
        max_redraws: int = 100,
        settle_timeout: float = 10.0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space: a SearchSpace is required, got {type(space).__name__}")
        base = Offspring(
            check_probability("crossover_prob", crossover_prob),
            check_probability("mutation_prob", mutation_prob),
        )
        super().__init__(
            space=space,
            population_size=population_size,
            num_parents=num_parents,
            feasible=feasible,
            max_redraws=max_redraws,
            settle_timeout=settle_timeout,
            seed=seed,
            parent_selection=ParetoParents(tie_break),
            offspring=ScreenedOffspring(
                space,
                base,
                candidates=candidates,
                local_prob=local_prob,
                pool_prob=pool_prob,
                pool_prior=pool_prior,
                min_fit_trials=min_fit_trials,
                refit_every=refit_every,
                acquisition=acquisition,
                reference_margin=reference_margin,
                spread_recent=spread_recent,
                interactions=interactions,
                accuracy_model=accuracy_model,
            ),
        )
