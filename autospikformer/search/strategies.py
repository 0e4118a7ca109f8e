"""How a DSPS sampler chooses parents and proposes offspring: strategies it composes, as Optuna's
``NSGAIISampler`` takes ``elite_population_selection_strategy`` and ``child_generation_strategy``.

A *parent selection* ranks the pool of a generation (the complete trials of the previous one and
its parents) and returns the trial numbers of the parents. An *offspring strategy* proposes the
candidate of one draw. DSPS's own are :class:`FitnessParents` (the paper's F_AEB ranking) and
:class:`Offspring` (crossover or copy, then mutation); DSPS+'s are in
:mod:`autospikformer.search.dsps_plus`. ``settings()`` is what the study records of a strategy,
so that a later sampler with other settings is warned.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from autospikformer.search.architecture import Architecture
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.mirror import StudyMirror, TrialSummary
from autospikformer.search.operators import crossover, mutate
from autospikformer.search.space import SearchSpace


@dataclass(frozen=True)
class Draw:
    """One draw of a candidate, as an offspring strategy sees it."""

    mirror: StudyMirror  # the sampler's picture of the study
    space: SearchSpace
    number: int  # the drawing trial's number
    index: int  # its draw index (it seeds the draw's generator)
    generation: int
    feasible: Callable[[Architecture], bool] | None  # the budgets known before evaluation
    parents: Callable[[], list[Architecture]]  # the generation's parents (chosen once per study)


class ParentSelection(Protocol):
    """``select(pool, k)``: the trial numbers of the ``k`` parents chosen from ``pool``."""

    def select(self, pool: list[TrialSummary], k: int) -> list[int]: ...

    def settings(self) -> dict[str, Any]: ...


class OffspringStrategy(Protocol):
    """``propose(draw, rng)``: one candidate and its origin; ``reads_first``: the sampler reads the
    study before proposing (the proposal depends on the latest finished trials)."""

    reads_first: bool

    def propose(self, draw: Draw, rng: random.Random) -> tuple[Architecture, str]: ...

    def settings(self) -> dict[str, Any]: ...


class FitnessParents:
    """The paper's parents: the pool within the budgets ranked by F_AEB (min-max scaled over
    them; ties: trial number), then the trials over a budget by their total violation."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha

    def select(self, pool: list[TrialSummary], k: int) -> list[int]:
        feasible = [r for r in pool if r.violation <= 0]
        fitness = balanced_fitness(
            [r.values[0] for r in feasible],  # type: ignore[index]
            [r.values[1] for r in feasible],  # type: ignore[index]
            self.alpha,
        )
        order = sorted(range(len(feasible)), key=lambda i: (-float(fitness[i]), feasible[i].number))
        over = sorted((r for r in pool if r.violation > 0), key=lambda r: (r.violation, r.number))
        return ([feasible[i].number for i in order] + [r.number for r in over])[:k]

    def settings(self) -> dict[str, Any]:
        return {}  # alpha is the sampler's own setting


class Offspring:
    """DSPS's offspring: generation 0 draws uniformly; later, with probability ``crossover_prob``
    a gene-wise crossover of two parents, otherwise a copy of one, then each gene mutates with
    probability ``mutation_prob`` to another value of its choice list."""

    reads_first = False

    def __init__(self, crossover_prob: float = 0.3, mutation_prob: float = 0.4) -> None:
        self.crossover_prob = crossover_prob
        self.mutation_prob = mutation_prob

    def propose(self, draw: Draw, rng: random.Random) -> tuple[Architecture, str]:
        if draw.generation == 0:
            return draw.space.sample(rng), "random"
        parents = draw.parents()
        if not parents:  # nothing of the previous generation has finished yet
            return draw.space.sample(rng), "random"
        if len(parents) >= 2 and rng.random() < self.crossover_prob:
            a, b = rng.sample(parents, 2)
            child, origin = crossover(a, b, rng), "crossover"
        else:
            child, origin = rng.choice(parents), "copy"
        return mutate(child, draw.space, self.mutation_prob, rng), origin

    def settings(self) -> dict[str, Any]:
        return {"crossover_prob": self.crossover_prob, "mutation_prob": self.mutation_prob}
