"""DSPS, the evolutionary search of Auto-Spikformer (SPEC section 5), as an Optuna 5 sampler.

Generations of ``population_size`` candidates: generation 0 uniform draws, each later one the
offspring of parents chosen from the previous generation and its parents. How parents are chosen
and offspring proposed are strategies (:mod:`autospikformer.search.strategies`): the paper's
F_AEB ranking and crossover/mutation by default, DSPS+'s in :mod:`~autospikformer.search.dsps_plus`.
Every piece of state lives in the study's storage (each trial's candidate, each generation's
parents, the sampler's settings), so any number of workers on any number of machines share a
study and a fresh process resumes it; a seeded run repeats, across a kill and a resume too.
docs/search.md ("How DSPS draws") explains the generation rules, the concurrency protocol, the
duplicate check and what each draw reads.
"""

from __future__ import annotations

import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autospikformer.checks import check_int, check_number, check_probability
from autospikformer.optuna_api import (
    FAILED_TRIAL_KEY,
    FIXED_PARAMS_KEY,
    RETRY_HISTORY_KEY,
    storage_of,
    study_id,
    trial_id,
)
from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.mirror import CANDIDATE_KEY, StudyMirror, TrialSummary, summarize
from autospikformer.search.operators import impose
from autospikformer.search.space import SearchSpace
from autospikformer.search.strategies import (
    Draw,
    FitnessParents,
    Offspring,
    OffspringStrategy,
    ParentSelection,
)
from autospikformer.search.suggest import (
    architecture_from_params,
    is_architecture_param,
    param_field,
)

#: Study system attribute prefix: ``PARENTS_KEY_PREFIX + str(g)`` holds generation g's parents.
PARENTS_KEY_PREFIX = "autospik:dsps:parents:"
#: Study system attribute: the settings of the first DSPS sampler that ran the study.
CONFIG_KEY = "autospik:dsps:config"
_DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]

__all__ = ["CANDIDATE_KEY", "CONFIG_KEY", "PARENTS_KEY_PREFIX", "DSPSSampler"]


def _check_directions(study: Study) -> None:
    if list(study.directions) != _DIRECTIONS:
        raise ValueError(
            "DSPSSampler needs a study with directions ['maximize', 'minimize'] for "
            f"[accuracy, energy]; this study has {[d.name.lower() for d in study.directions]}"
        )


class DSPSSampler(BaseSampler):
    """The DSPS evolutionary search over one :class:`SearchSpace`, for the two objectives
    ``[accuracy, energy]`` with directions ``["maximize", "minimize"]``.

    Example:

        .. code-block:: python

            import optuna
            from autospikformer import DSPSSampler, SearchSpace
            from autospikformer.search.suggest import suggest_architecture

            space = SearchSpace.load("digits")

            def objective(trial):
                arch = suggest_architecture(trial, space)
                return arch.embed_dim / 64 - sum(arch.threshold) / 10, arch.depth * arch.time_steps

            sampler = DSPSSampler(space=space, population_size=10, num_parents=4, seed=0)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.optimize(objective, n_trials=30)  # generations 0, 1 and 2

    Args:
        space: the search space; the objective must suggest with
            :func:`autospikformer.search.suggest.suggest_architecture` over the same space.
        population_size: trials per generation (generation 0 is random).
        num_parents: parents kept for the next generation, ranked by ``F_AEB``.
        crossover_prob: probability that an offspring is a crossover of two parents.
        mutation_prob: per-gene probability of mutating to another value of its choice list.
        alpha: weight of accuracy in ``F_AEB``.
        feasible: ``feasible(arch) -> bool``; False rejects the candidate before evaluation
            (how the study runner passes parameter and energy budgets).
        max_redraws: proposals tried per trial before giving up (duplicates, infeasible).
        seed: base seed; each trial draws from a generator seeded by (seed, draw index), so a
            seeded run repeats, across a resume too.
        settle_timeout: seconds a draw waits at most for a lower-numbered running trial to
            draw its own candidate (docs/search.md, "Concurrency"); 0 never waits.
        parent_selection: how parents are chosen (default: ``FitnessParents(alpha)``, the
            paper's F_AEB ranking within the budgets first).
        offspring: how a candidate is proposed (default: ``Offspring(crossover_prob,
            mutation_prob)``); ``crossover_prob`` and ``mutation_prob`` are then unused.
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        population_size: int = 50,
        num_parents: int = 20,
        crossover_prob: float = 0.3,
        mutation_prob: float = 0.4,
        alpha: float = 0.5,
        feasible: Callable[[Architecture], bool] | None = None,
        max_redraws: int = 100,
        seed: int | None = None,
        settle_timeout: float = 10.0,
        parent_selection: ParentSelection | None = None,
        offspring: OffspringStrategy | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space: a SearchSpace is required, got {type(space).__name__}")
        self._space = space
        self._population_size = check_int("population_size", population_size, minimum=2)
        self._num_parents = check_int("num_parents", num_parents, minimum=1)
        if num_parents > population_size:
            raise ValueError(
                f"num_parents: {num_parents} is not allowed (allowed: 1 .. population_size = "
                f"{population_size})"
            )
        self._alpha = check_probability("alpha", alpha)
        self._parent_selection = parent_selection or FitnessParents(self._alpha)
        self._offspring = offspring or Offspring(
            check_probability("crossover_prob", crossover_prob),
            check_probability("mutation_prob", mutation_prob),
        )
        if feasible is not None and not callable(feasible):
            raise ValueError(f"feasible: {feasible!r} is not allowed (allowed: a callable, None)")
        self._feasible = feasible
        self._max_redraws = check_int("max_redraws", max_redraws, minimum=1)
        check_int("seed", seed, allow_none=True)
        self._seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self._settle_timeout = check_number("settle_timeout", settle_timeout, lo=0.0)
        self._random = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)  # notified after every draw
        self._views: dict[tuple[int, int], StudyMirror] = {}
        self._drawn: dict[int, tuple[Architecture, int]] = {}  # trial id -> (candidate, gen)
        self._arrived: dict[int, dict[str, Any]] = {}  # trial id -> its system attrs we use
        self._threads: dict[int, int] = {}  # trial id -> the thread that asked for it

    # --- read-only settings -------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return self._space

    @property
    def population_size(self) -> int:
        return self._population_size

    @property
    def num_parents(self) -> int:
        return self._num_parents

    def _config(self) -> dict[str, Any]:
        """What the study records of this sampler (a later one with other settings is warned)."""
        return {
            "population_size": self._population_size,
            "num_parents": self._num_parents,
            "alpha": self._alpha,
            "space": self._space.fingerprint(),
            **self._offspring.settings(),
            **self._parent_selection.settings(),
        }

    # --- BaseSampler -----------------------------------------------------------------------
    def reseed_rng(self) -> None:
        """Pick a new base seed (Optuna calls this per thread with ``n_jobs > 1``)."""
        with self._lock:
            self._seed = random.SystemRandom().getrandbits(63)
            self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Nothing is sampled jointly (the candidate is drawn whole on the first architecture
        parameter); a study with other directions is refused here, on the trial's first
        suggestion of any parameter, before its objective can evaluate anything."""
        _check_directions(study)
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Give an enqueued architecture its generation now: it suggests nothing through us.

        Nothing here raises for a wrong study (an error in ``before_trial`` would leave the
        trial RUNNING forever); the first drawn trial reports it instead. The system
        attributes the draw needs are kept from here: later, Optuna hands the sampler a trial
        whose ``system_attrs`` cost a storage query to read.
        """
        self._random.before_trial(study, trial)
        attrs = trial.system_attrs
        with self._lock:
            self._arrived[trial_id(trial)] = {
                k: attrs[k]
                for k in (CANDIDATE_KEY, FIXED_PARAMS_KEY, RETRY_HISTORY_KEY, FAILED_TRIAL_KEY)
                if k in attrs
            }
            self._threads[trial_id(trial)] = threading.get_ident()
        if CANDIDATE_KEY in attrs:
            return  # a re-queued trial: its candidate and generation are already stored
        fixed = {
            k: v for k, v in attrs.get(FIXED_PARAMS_KEY, {}).items() if is_architecture_param(k)
        }
        if not fixed or list(study.directions) != _DIRECTIONS:
            return
        try:
            architecture_from_params(fixed)
        except (ValueError, TypeError):
            return  # partly fixed: drawn (around the fixed values) on the first suggestion
        self._candidate(study, trial)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if not is_architecture_param(param_name) or not isinstance(
            param_distribution, CategoricalDistribution
        ):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        arch, _ = self._candidate(study, trial)
        field = param_field(param_name)
        if field in PER_BLOCK_FIELDS:
            block = int(param_name.rpartition("_")[2])
            if block >= arch.depth:  # the objective suggests blocks the candidate lacks
                return self._random.sample_independent(study, trial, param_name, param_distribution)
            value = getattr(arch, field)[block]
        else:
            value = getattr(arch, field)
        for choice in param_distribution.choices:
            if choice == value:
                return choice
        raise ValueError(
            f"parameter {param_name!r}: DSPSSampler's space {self._space.name!r} proposed "
            f"{value!r}, which the objective's choices {param_distribution.choices} lack; "
            "build the objective and the sampler from the same SearchSpace"
        )

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        with self._lock:
            self._drawn.pop(trial_id(trial), None)
            self._arrived.pop(trial_id(trial), None)
            self._threads.pop(trial_id(trial), None)
        self._random.after_trial(study, trial, state, values)

    # --- the draw --------------------------------------------------------------------------
    def _candidate(self, study: Study, trial: FrozenTrial) -> tuple[Architecture, int]:
        """The trial's candidate and generation: drawn once, then remembered."""
        with self._lock:
            hit = self._drawn.get(trial_id(trial))
            if hit is None:
                try:
                    hit = self._draw(study, trial)
                    self._drawn[trial_id(trial)] = hit
                finally:
                    self._settled.notify_all()  # a thread may wait for this trial's draw
            return hit

    def _view(self, study: Study) -> StudyMirror:
        key = (id(storage_of(study)), study_id(study))
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = StudyMirror()
        return view

    def _refresh(self, study: Study, view: StudyMirror, me: TrialSummary) -> None:
        view.refresh(storage_of(study), study_id(study), me)

    def _generation(self, view: StudyMirror, number: int) -> int:
        """The generation a new trial joins: the current one, or the next when it is full.

        Exact once :meth:`_settle` has run: the picture then holds the final generation of every
        lower-numbered trial that draws one.
        """
        generation = view.current_generation(exclude=number)
        if view.count(generation, exclude=number) >= self._population_size:
            generation += 1
        return generation

    def _draw(self, study: Study, trial: FrozenTrial) -> tuple[Architecture, int]:
        _check_directions(study)
        view = self._view(study)
        self._check_config(study, view)
        attrs = self._arrived.get(trial_id(trial))
        if attrs is None:
            attrs = dict(trial.system_attrs)
        me = summarize(trial, attrs)
        if me.generation is not None and me.arch is not None:
            return me.arch, me.generation  # a re-queued trial: it keeps its candidate
        fixed = {
            k: v
            for k, v in {**attrs.get(FIXED_PARAMS_KEY, {}), **trial.params}.items()
            if is_architecture_param(k)
        }
        # The generation is settled first, from the final generations of all lower-numbered
        # trials, and never changes. Proposals use the picture left by this process's last
        # draw (every candidate is checked against a fresh read after it is written); a read
        # comes first only when that picture lacks lower-numbered trials, or the generation's
        # parents are still to be chosen, since those must see every finished trial of the
        # previous generation.
        refreshed = self._settle(study, view, me)
        generation = self._generation(view, me.number)
        if generation > 0 and generation not in view.parents and not refreshed:
            self._refresh(study, view, me)
            generation = self._generation(view, me.number)
        if self._offspring.reads_first and view.scanned:
            self._refresh(study, view, me)  # the front and the running trials, as of now
        return self._redraw(study, view, me, fixed, generation)

    def _settle(self, study: Study, view: StudyMirror, me: TrialSummary) -> bool:
        """Wait until every lower-numbered running trial has drawn its candidate; True if read.

        Generations fill in trial-number order: a trial's generation follows from those of the
        trials numbered below it, so concurrent workers cannot all count the same generation
        short, nor overfill it. A trial that has not drawn within ``settle_timeout`` (its
        worker died, or it suggests nothing) is no longer waited for; one asked by this very
        thread cannot draw meanwhile and is not waited for either (it joins when it draws).
        """
        refreshed = False
        if not view.scanned or view.scanned != me.number or view.pending(me.number):
            self._refresh(study, view, me)
            refreshed = True
        deadline: float | None = None
        pause = 0.002
        while True:
            waiting = [k for k in view.pending(me.number) if self._may_draw_meanwhile(view.live[k])]
            if not waiting:
                return refreshed
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._settle_timeout
            if now >= deadline:
                view.given_up.update(waiting)
                return refreshed
            self._settled.wait(min(pause, deadline - now))  # lets this process's threads draw
            pause = min(2 * pause, 0.05)
            view.recheck(storage_of(study), study_id(study), waiting)

    def _may_draw_meanwhile(self, record: TrialSummary) -> bool:
        if record.trial_id in self._drawn:
            return False
        return self._threads.get(record.trial_id) != threading.get_ident()

    def _redraw(
        self,
        study: Study,
        view: StudyMirror,
        me: TrialSummary,
        fixed: dict[str, Any],
        generation: int,
    ) -> tuple[Architecture, int]:
        """Propose, write and check until a candidate is new and feasible."""
        number = me.number
        try:
            full = architecture_from_params(fixed) if fixed else None
        except (ValueError, TypeError):
            full = None  # partly fixed: drawn around the fixed values
        draw = view.next_draw(number)
        rng = random.Random(f"autospik-dsps:{self._seed}:{draw}")
        context = Draw(
            mirror=view,
            space=self._space,
            number=number,
            index=draw,
            generation=generation,
            feasible=self._feasible,
            parents=lambda: self._parent_architectures(study, view, generation),
        )
        duplicate: tuple[Architecture, str] | None = None
        written: tuple[Architecture, int] | None = None
        for attempt in range(1, self._max_redraws + 1):
            if full is not None:
                arch, origin = full, "enqueued"
            else:
                if attempt > self._max_redraws // 2:  # a converged population: uniform draws
                    arch, origin = self._space.sample(rng), "random"
                else:
                    arch, origin = self._offspring.propose(context, rng)
                if fixed:
                    arch = impose(arch, fixed, self._space, rng)
                if self._feasible is not None and not self._feasible(arch):
                    continue
                if view.taken(arch, exclude=number):
                    duplicate = (arch, origin)
                    continue
            written = (arch, generation)
            if self._write_and_check(
                study, view, number, me.trial_id, arch, generation, origin, draw
            ):
                return written
            # Another trial shows this architecture: draw again, in the same generation.
        if written is not None:
            warnings.warn(
                f"DSPSSampler: trial {number} still clashes with concurrent trials after "
                f"{self._max_redraws} draws; keeping {written[0]}",
                UserWarning,
                stacklevel=2,
            )
            return written
        if duplicate is None:
            raise RuntimeError(
                f"DSPSSampler: all {self._max_redraws} candidates drawn for trial {number} were "
                "rejected by `feasible`; relax the parameter/energy budget or raise max_redraws"
            )
        warnings.warn(
            f"DSPSSampler: no new architecture in {self._max_redraws} draws for trial "
            f"{number}; evaluating {duplicate[0]} again (is the space nearly exhausted?)",
            UserWarning,
            stacklevel=2,
        )
        self._write(storage_of(study), me.trial_id, duplicate[0], generation, duplicate[1], draw)
        return duplicate[0], generation

    def _write(
        self,
        storage: Any,
        trial_id: int,
        arch: Architecture,
        generation: int,
        origin: str,
        draw: int,
    ) -> None:
        value = {
            "generation": generation,
            "architecture": arch.to_dict(),
            "origin": origin,
            "draw": draw,
        }
        storage.set_trial_system_attr(trial_id, CANDIDATE_KEY, value)

    def _write_and_check(
        self,
        study: Study,
        view: StudyMirror,
        number: int,
        trial_id: int,
        arch: Architecture,
        generation: int,
        origin: str,
        draw: int,
    ) -> bool:
        """Write, re-read, and accept unless another trial shows the same architecture (see
        "Concurrency" in the module docstring)."""
        self._write(storage_of(study), trial_id, arch, generation, origin, draw)
        me = TrialSummary(number, trial_id, TrialState.RUNNING, arch, generation, None, draw=draw)
        self._refresh(study, view, me)
        return origin == "enqueued" or not view.taken(arch, exclude=number)

    def _parent_architectures(
        self, study: Study, view: StudyMirror, generation: int
    ) -> list[Architecture]:
        """The architectures of the parents of ``generation`` that the picture holds."""
        return [
            view.finished[n].arch  # type: ignore[misc]
            for n in self._parents(study, view, generation)
            if n in view.finished and view.finished[n].arch is not None
        ]

    def _parents(self, study: Study, view: StudyMirror, generation: int) -> list[int]:
        """Trial numbers of the parents of ``generation``: computed once, kept in the study."""
        if generation <= 0:
            return []
        if generation in view.parents:
            return view.parents[generation]
        key = f"{PARENTS_KEY_PREFIX}{generation}"
        stored = storage_of(study).get_study_system_attrs(study_id(study)).get(key)
        if stored is not None:
            view.parents[generation] = [int(n) for n in stored]
            return view.parents[generation]
        pool = dict.fromkeys(
            [
                *view.gen_complete.get(generation - 1, []),
                *self._parents(study, view, generation - 1),
            ]
        )
        records = [view.finished[n] for n in pool if n in view.finished and view.finished[n].values]
        if not records:
            return []  # not cached: a later draw computes it once trials complete
        chosen = self._parent_selection.select(records, self._num_parents)
        storage_of(study).set_study_system_attr(study_id(study), key, chosen)
        view.parents[generation] = chosen
        return chosen

    def _check_config(self, study: Study, view: StudyMirror) -> None:
        """Record this sampler's settings in the study, or warn when they differ; once per view."""
        if view.config_checked:
            return
        attrs = storage_of(study).get_study_system_attrs(study_id(study))
        for key, value in attrs.items():
            if key.startswith(PARENTS_KEY_PREFIX):
                view.parents[int(key[len(PARENTS_KEY_PREFIX) :])] = [int(n) for n in value]
        mine = self._config()
        stored = attrs.get(CONFIG_KEY)
        if stored is None:
            storage_of(study).set_study_system_attr(study_id(study), CONFIG_KEY, mine)
        elif stored != mine:
            differ = sorted(k for k in set(mine) | set(stored) if mine.get(k) != stored.get(k))
            warnings.warn(
                f"DSPSSampler: this study was started with other DSPS settings ({', '.join(differ)}"
                f" differ: {', '.join(f'{k}={stored.get(k)!r}' for k in differ)}); "
                "generations from different settings do not line up",
                UserWarning,
                stacklevel=2,
            )
        view.config_checked = True
