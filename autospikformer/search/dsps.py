"""DSPS, the evolutionary search of Auto-Spikformer (SPEC section 5), as an Optuna 5 sampler.

Algorithm
---------
The study has two objectives, ``[accuracy, energy]`` with directions ``[maximize, minimize]``.
Each trial evaluates one *candidate* (an :class:`~autospikformer.Architecture` of the sampler's
:class:`~autospikformer.SearchSpace`); trials are grouped into *generations*:

* **Generation 0**: ``population_size`` candidates drawn uniformly from the space
  (``SearchSpace.sample``). Enqueued trials (``study.enqueue_trial(architecture_params(a))``, for
  example the hand-designed Spikformer-4-384 as a baseline) join the generation that is current
  when they start, so an architecture enqueued before the search counts toward generation 0.
* **Generation g >= 1**: the *pool* is the complete trials of generation ``g - 1`` plus the
  parents of generation ``g - 1``; it is ranked by the balanced fitness ``F_AEB`` (``alpha``,
  min-max scaling over the pool, ties broken by trial number) and the best ``num_parents`` are
  the parents of generation ``g``. Each offspring is, with probability ``crossover_prob``, a
  gene-wise crossover of two distinct parents (every gene, including each block's gene, comes
  from either parent; a block only the deeper parent has comes from it), otherwise a copy of
  one parent; then every gene mutates with probability ``mutation_prob`` to *another* value of
  its choice list. Depth mutates first: the per-block lists are trimmed, or grown with blocks
  drawn uniformly from the choice lists, so they always have ``depth`` entries.
* A proposal is re-drawn when it equals an architecture already evaluated or being evaluated
  (any trial that is RUNNING, WAITING, COMPLETE or PRUNED; a FAILed one may be drawn again), or
  when ``feasible(arch)`` is False (the parameter/energy budgets of the study runner). After
  half of ``max_redraws`` fruitless proposals the sampler draws uniformly instead (a converged
  population can have no new offspring left); after ``max_redraws`` it gives up: a duplicate is
  accepted with a warning, no feasible candidate at all is an error (the trial fails).

A generation is *full* when ``population_size`` trials count toward it: live ones (running, or
a re-queued copy waiting), and COMPLETE or PRUNED ones that suggested their candidate; a FAILed
trial frees its place, as does a trial whose candidate a re-queued copy carries on and an
enqueued trial closed before it suggested anything (found surplus). The next trial then starts
the next generation: workers never wait for stragglers. Generations fill in trial-number order
(see "Concurrency"): with any number of workers, the trials that count, taken by number, make up
generation 0 with the first ``population_size`` of them, generation 1 with the next, and so on
(a trial that takes a freed place, or that was not waited for, is the exception). The parents of
generation ``g`` are computed from the trials of ``g - 1`` complete when its first trial draws
(with one worker: all of them), once, and cached in the study so that every worker uses the same
set. Parameters that are not architecture parameters (say a learning rate) are sampled by an
internal ``RandomSampler``.

Storage layout (all state lives in the study's storage; the keys are pinned, never renamed)
--------------------------------------------------------------------------------------------
* Trial system attribute :data:`CANDIDATE_KEY` (``"autospik:dsps:candidate"``):
  ``{"generation": g, "architecture": Architecture.to_dict(), "origin": o, "draw": i}`` with
  ``o`` one of ``"random"``, ``"crossover"``, ``"copy"`` (a parent copy, mutated),
  ``"enqueued"`` (DSPS+ adds ``"local"``) and ``i`` the draw index (see "Determinism"; absent
  in candidates drawn before it was stored). Written once, as a single value, so no reader sees
  a candidate without its generation.
* Study system attribute :data:`PARENTS_KEY_PREFIX` ``+ str(g)``: the trial numbers of the
  parents of generation ``g``.
* Study system attribute :data:`CONFIG_KEY`: the settings of the first sampler that used the
  study (population size, number of parents, probabilities, alpha, space fingerprint); a later
  sampler with other settings gets a warning, since its generations would not line up.

Hence any number of processes on any number of machines (one RDB storage) can run the same
study, and a fresh process resumes it. Trials of other samplers (no :data:`CANDIDATE_KEY`) are
not part of any generation but are never drawn again.

Concurrency
-----------
*Generation.* Trial numbers are the one order every worker agrees on, so a trial's generation is
settled from the trials numbered below it: before it draws, a trial waits until every
lower-numbered RUNNING trial has written its candidate (or finished), then joins the current
generation, or the next when that is full, and keeps that generation. Each decision thus rests
on final decisions only, and workers that start together fill every generation exactly instead
of each counting the same generation full (or short). The wait is the time the other workers
take from asking for their trial to drawing it (one storage round trip or so); a lower trial
that has not drawn within ``settle_timeout`` seconds (its worker died, or it never suggests an
architecture) is no longer waited for, and a trial asked by the waiting thread itself (several
``ask`` calls before suggesting) is never waited for. Such a trial, and an enqueued one that
starts after higher-numbered trials have drawn, joins the current generation when it draws;
only then, or when a trial fails while its generation is no longer the newest, can a generation
end one or so off its size (a FAILed trial's place is otherwise taken by the next trial, or by
its re-queued copy).

*Duplicates.* A worker proposes from its picture of the study, *writes* its candidate, then
*re-reads* the other trials, and redraws (in the same generation) when the fresh read shows an
equal live candidate. On a storage whose reads see every write committed before them (SQLite,
in-memory, journal; RDB through Optuna's cache as long as trial ids commit in order), two live
trials can never end with equal candidates: of the two final writes, the second one's worker
read after the first write, saw the clash and would have redrawn. Enqueued trials keep their
architecture, and a trial re-queued by Optuna's ``RetryHeartbeatStaleTrialCallback`` (system
attributes ``failed_trial`` and ``retry_history``) inherits the failed trial's candidate and
generation, and its place.

Determinism and cost
--------------------
Each trial draws from its own ``random.Random`` seeded by ``(seed, draw index)``, the draw index
being one past the highest of the trials numbered below it (stored with the candidate; without
kills and enqueued trials it is the trial number). A seeded sequential run repeats exactly, also
across a kill and a resume: the killed trial's re-queued copy carries its original's candidate
and draw index, so the draws after it are those of the uninterrupted run although their trial
numbers are one higher. Concurrent workers sharing a seed still draw different candidates. Finished trials never change, so what the sampler parses from them is kept in the
instance, and a read fetches only the trials it last saw live and the ones numbered after the
last it saw, one by one, never the whole study (Optuna's RDB cache answers finished trials from
memory; a live one is one query). The proposal uses the picture left by the last draw's re-read,
so a sequential draw costs one candidate write and one read; only the first draw of a generation
reads before proposing as well, because its parents must be ranked on every finished trial of
the previous one. With several workers a draw also reads first whenever other workers created
trials since its last read (to settle its generation), and while it waits it re-reads only the
trials it waits for. The cost per trial therefore grows with the number of workers, not of trials.
"""

from __future__ import annotations

import math
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import BaseStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import (
    architecture_from_params,
    is_architecture_param,
    param_field,
)

#: Trial system attribute: the trial's candidate, generation and origin (see the module doc).
CANDIDATE_KEY = "autospik:dsps:candidate"
#: Study system attribute prefix: ``PARENTS_KEY_PREFIX + str(g)`` holds generation g's parents.
PARENTS_KEY_PREFIX = "autospik:dsps:parents:"
#: Study system attribute: the settings of the first DSPS sampler that ran the study.
CONFIG_KEY = "autospik:dsps:config"

_FIXED_PARAMS_KEY = "fixed_params"  # Optuna's own key for enqueued parameters
#: Optuna's keys on a re-queued trial: the trials it replaces (oldest first), and the first.
_RETRY_HISTORY_KEY = "retry_history"
_FAILED_TRIAL_KEY = "failed_trial"
_CONSTRAINTS_KEY = "constraints"  # Optuna's own key (prefix) for trial.set_constraint values
_DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


@dataclass(frozen=True)
class _Record:
    """What the sampler needs of one trial."""

    number: int
    trial_id: int
    state: TrialState
    arch: Architecture | None
    generation: int | None
    values: tuple[float, float] | None  # finite [accuracy, energy] of a COMPLETE trial
    suggested: bool = False  # some architecture parameter is set (by us or another sampler)
    supersedes: int | None = None  # the trial whose candidate this re-queued trial carries on
    violation: float = 0.0  # sum of the trial's positive Optuna constraint values
    draw: int | None = None  # the draw index its candidate was drawn with (see "Determinism")

    @property
    def draw_index(self) -> int:
        """The draw index (trials drawn before DSPS stored it: the trial number)."""
        return self.number if self.draw is None else self.draw

    @property
    def undrawn(self) -> bool:
        """Running, and its candidate (if any) still to be drawn: its generation is not known."""
        return self.state == TrialState.RUNNING and self.generation is None and not self.suggested


def _parse(trial: FrozenTrial, attrs: Mapping[str, Any] | None = None) -> _Record:
    """Read a trial's candidate (ours, or else its parameters / enqueued parameters).

    ``attrs`` stands in for ``trial.system_attrs`` when the caller already has them.
    """
    attrs = trial.system_attrs if attrs is None else attrs
    arch: Architecture | None = None
    generation: int | None = None
    draw: int | None = None
    stored = attrs.get(CANDIDATE_KEY)
    if isinstance(stored, dict):
        try:
            arch = Architecture.from_dict(stored["architecture"])
            generation = int(stored["generation"])
            draw = int(stored["draw"]) if "draw" in stored else None
        except (KeyError, TypeError, ValueError):
            arch, generation, draw = None, None, None
    if arch is None:
        params = trial.params
        if not trial.state.is_finished():
            params = {**attrs.get(_FIXED_PARAMS_KEY, {}), **params}
        try:
            arch = architecture_from_params(params)
        except (ValueError, TypeError):
            arch = None
    values = None
    if trial.state == TrialState.COMPLETE and trial.values is not None and len(trial.values) == 2:
        acc, energy = (float(v) for v in trial.values)
        if math.isfinite(acc) and math.isfinite(energy):
            values = (acc, energy)
    supersedes: int | None = None
    if generation is not None:
        history = attrs.get(_RETRY_HISTORY_KEY)
        previous = history[-1] if isinstance(history, list) and history else None
        if previous is None:
            previous = attrs.get(_FAILED_TRIAL_KEY)
        if isinstance(previous, int) and not isinstance(previous, bool):
            supersedes = previous
    suggested = any(is_architecture_param(k) for k in trial.params)
    violation = 0.0
    if values is not None:
        for key, value in attrs.items():
            if key == _CONSTRAINTS_KEY or key.startswith(_CONSTRAINTS_KEY + ":"):
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, (int, float)) and v > 0:
                        violation += float(v)
    return _Record(
        trial.number,
        trial._trial_id,
        trial.state,
        arch,
        generation,
        values,
        suggested,
        supersedes,
        violation,
        draw,
    )


def _fetch(storage: BaseStorage, study_id: int, number: int) -> FrozenTrial | None:
    """Trial ``number`` of the study, or None when the study has no such trial (yet)."""
    try:
        return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:
        return None


class _StudyView:
    """The sampler's incremental picture of one study: finished trials parsed once, live re-read.

    A trial *counts toward* its generation (holds one of its ``population_size`` places) while
    it is live, and once it is COMPLETE or PRUNED after suggesting its candidate; a FAILed
    trial frees its place, and so does a trial whose candidate a re-queued copy carries on
    (Optuna's ``retry_history``), and one closed before suggesting anything (an enqueued trial
    found surplus).
    """

    def __init__(self) -> None:
        self.finished: dict[int, _Record] = {}
        self.scanned = 0  # trial numbers below this have been seen at least once
        self.unfinished: set[int] = set()  # numbers seen RUNNING/WAITING, re-read every time
        self.evaluated: set[Architecture] = set()  # COMPLETE/PRUNED architectures
        self.gen_count: Counter[int] = Counter()  # finished trials counting toward each generation
        self.counted: dict[int, int] = {}  # number -> generation of those finished trials
        self.superseded: set[int] = set()  # trials whose candidate a re-queued copy carries on
        self.gen_complete: dict[int, list[int]] = {}  # rankable trial numbers per generation
        self.max_gen = 0
        self.live: dict[int, _Record] = {}  # RUNNING/WAITING trials as of the last refresh
        self.given_up: set[int] = set()  # undrawn trials no longer waited for (settle_timeout)
        self.parents: dict[int, list[int]] = {}
        self.config_checked = False
        self.draws: dict[int, int] = {}  # number -> draw index of every trial with a candidate
        self.top_draw = (-1, -1)  # (highest draw index seen, the number of its trial)

    def refresh(self, storage: BaseStorage, study_id: int, me: _Record) -> None:
        """Take in new trials and state changes, at a cost that does not grow with the study.

        ``me`` is the reading trial, as its own process knows it. The trials seen live last
        time are fetched again, and so is every number above the last one seen, up to the
        first number the storage does not have yet; nothing else is read, so a read costs
        one fetch per live or new trial plus one probe past the end (Optuna's RDB cache
        answers finished trials from memory). A trial that is finished stays finished.
        """
        live: dict[int, _Record] = {}
        top = max(self.scanned, me.number + 1)
        for number in sorted({*self.unfinished, *range(self.scanned, top)} - {me.number}):
            self._take(_fetch(storage, study_id, number), live)
        while (trial := _fetch(storage, study_id, top)) is not None:
            self._take(trial, live)
            top += 1
        self.scanned = top
        live[me.number] = me
        self._note_draw(me)
        self.live = live
        self.unfinished = set(live)

    def recheck(self, storage: BaseStorage, study_id: int, numbers: Iterable[int]) -> None:
        """Fetch again only the live trials ``numbers`` (the ones a draw waits for)."""
        for number in numbers:
            trial = _fetch(storage, study_id, number)
            if trial is None:
                continue
            if trial.state.is_finished():
                self.live.pop(number, None)
                self.unfinished.discard(number)
            self._take(trial, self.live)

    def _take(self, trial: FrozenTrial | None, live: dict[int, _Record]) -> None:
        if trial is None:
            return
        record = _parse(trial)
        if record.supersedes is not None:
            self._supersede(record.supersedes)
        self._note_draw(record)
        if not trial.state.is_finished():
            live[record.number] = record
        elif record.number not in self.finished:
            self._add_finished(record)

    def _note_draw(self, record: _Record) -> None:
        if record.generation is not None:
            self.draws[record.number] = record.draw_index
            if record.draw_index > self.top_draw[0]:
                self.top_draw = (record.draw_index, record.number)

    def _supersede(self, number: int) -> None:
        self.superseded.add(number)
        generation = self.counted.pop(number, None)
        if generation is not None:
            self.gen_count[generation] -= 1

    def _add_finished(self, record: _Record) -> None:
        self.finished[record.number] = record
        if record.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return  # FAIL: the place is free again and the architecture may be redrawn
        if record.state == TrialState.PRUNED and not record.suggested:
            return  # closed before its candidate was used (an enqueued trial found surplus)
        if record.arch is not None:
            self.evaluated.add(record.arch)
        if record.generation is not None:
            if record.number not in self.superseded:
                self.gen_count[record.generation] += 1
                self.counted[record.number] = record.generation
            self.max_gen = max(self.max_gen, record.generation)
            if record.values is not None:
                self.gen_complete.setdefault(record.generation, []).append(record.number)

    def _members(self, exclude: int) -> Iterable[_Record]:
        """Live trials with a generation, other than ``exclude``."""
        for k, r in self.live.items():
            if k != exclude and r.generation is not None and k not in self.superseded:
                yield r

    def current_generation(self, exclude: int) -> int:
        return max([self.max_gen, *(r.generation for r in self._members(exclude))])  # type: ignore[list-item]

    def count(self, generation: int, exclude: int) -> int:
        """Trials counting toward ``generation`` (see the class docstring), other than ``exclude``."""
        running = sum(1 for r in self._members(exclude) if r.generation == generation)
        return self.gen_count[generation] + running

    def pending(self, number: int) -> list[int]:
        """Trials numbered below ``number`` that are running with their candidate undrawn."""
        return sorted(
            k for k, r in self.live.items() if k < number and r.undrawn and k not in self.given_up
        )

    def next_draw(self, number: int) -> int:
        """The draw index of trial ``number``: one past the highest of the trials numbered below
        it (a re-queued copy carries its original's), so a resumed run, whose killed trial's
        copy gets a new number, draws what the uninterrupted run drew."""
        top, owner = self.top_draw
        if owner >= number:  # a higher-numbered trial drew first (it did not wait for this one)
            top = max((d for k, d in self.draws.items() if k < number), default=-1)
        return top + 1

    def taken(self, arch: Architecture, exclude: int) -> bool:
        """Is ``arch`` evaluated or under evaluation by a trial other than ``exclude``?"""
        if arch in self.evaluated:
            return True
        return any(k != exclude and r.arch == arch for k, r in self.live.items())


def _check_directions(study: Study) -> None:
    if list(study.directions) != _DIRECTIONS:
        raise ValueError(
            "DSPSSampler needs a study with directions ['maximize', 'minimize'] for "
            f"[accuracy, energy]; this study has {[d.name.lower() for d in study.directions]}"
        )


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class DSPSSampler(BaseSampler):
    """The DSPS evolutionary search over one :class:`SearchSpace` (see the module docstring).

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
            draw its own candidate (see "Concurrency"); 0 never waits.
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
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        self._space = space
        self._population_size = _check_int("population_size", population_size, 2)
        self._num_parents = _check_int("num_parents", num_parents, 1)
        if num_parents > population_size:
            raise ValueError(
                f"num_parents must be <= population_size ({population_size}), got {num_parents}"
            )
        self._crossover_prob = _check_probability("crossover_prob", crossover_prob)
        self._mutation_prob = _check_probability("mutation_prob", mutation_prob)
        self._alpha = _check_probability("alpha", alpha)
        if feasible is not None and not callable(feasible):
            raise ValueError(f"feasible must be a callable or None, got {feasible!r}")
        self._feasible = feasible
        self._max_redraws = _check_int("max_redraws", max_redraws, 1)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self._seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        if (
            isinstance(settle_timeout, bool)
            or not isinstance(settle_timeout, (int, float))
            or not 0.0 <= settle_timeout < math.inf
        ):
            raise ValueError(
                f"settle_timeout must be a finite number of seconds >= 0, got {settle_timeout!r}"
            )
        self._settle_timeout = float(settle_timeout)
        self._random = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)  # notified after every draw
        self._views: dict[tuple[int, int], _StudyView] = {}
        self._drawn: dict[int, tuple[Architecture, int]] = {}  # trial id -> (candidate, gen)
        self._arrived: dict[int, dict[str, Any]] = {}  # trial id -> its system attrs we use
        self._threads: dict[int, int] = {}  # trial id -> the thread that asked for it
        self._draw_index = -1  # draw index of the trial being drawn (under the lock)

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
        return {
            "population_size": self._population_size,
            "num_parents": self._num_parents,
            "crossover_prob": self._crossover_prob,
            "mutation_prob": self._mutation_prob,
            "alpha": self._alpha,
            "space": self._space.fingerprint(),
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
            self._arrived[trial._trial_id] = {
                k: attrs[k]
                for k in (CANDIDATE_KEY, _FIXED_PARAMS_KEY, _RETRY_HISTORY_KEY, _FAILED_TRIAL_KEY)
                if k in attrs
            }
            self._threads[trial._trial_id] = threading.get_ident()
        if CANDIDATE_KEY in attrs:
            return  # a re-queued trial: its candidate and generation are already stored
        fixed = {
            k: v for k, v in attrs.get(_FIXED_PARAMS_KEY, {}).items() if is_architecture_param(k)
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
            self._drawn.pop(trial._trial_id, None)
            self._arrived.pop(trial._trial_id, None)
            self._threads.pop(trial._trial_id, None)
        self._random.after_trial(study, trial, state, values)

    # --- the draw --------------------------------------------------------------------------
    def _candidate(self, study: Study, trial: FrozenTrial) -> tuple[Architecture, int]:
        """The trial's candidate and generation: drawn once, then remembered."""
        with self._lock:
            hit = self._drawn.get(trial._trial_id)
            if hit is None:
                try:
                    hit = self._draw(study, trial)
                    self._drawn[trial._trial_id] = hit
                finally:
                    self._settled.notify_all()  # a thread may wait for this trial's draw
            return hit

    def _view(self, study: Study) -> _StudyView:
        key = (id(study._storage), study._study_id)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = _StudyView()
        return view

    def _refresh(self, study: Study, view: _StudyView, me: _Record) -> None:
        view.refresh(study._storage, study._study_id, me)

    def _generation(self, view: _StudyView, number: int) -> int:
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
        attrs = self._arrived.get(trial._trial_id)
        if attrs is None:
            attrs = dict(trial.system_attrs)
        me = _parse(trial, attrs)
        if me.generation is not None and me.arch is not None:
            return me.arch, me.generation  # a re-queued trial: it keeps its candidate
        fixed = {
            k: v
            for k, v in {**attrs.get(_FIXED_PARAMS_KEY, {}), **trial.params}.items()
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
        return self._redraw(study, view, me, fixed, generation)

    def _settle(self, study: Study, view: _StudyView, me: _Record) -> bool:
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
            view.recheck(study._storage, study._study_id, waiting)

    def _may_draw_meanwhile(self, record: _Record) -> bool:
        if record.trial_id in self._drawn:
            return False
        return self._threads.get(record.trial_id) != threading.get_ident()

    def _redraw(
        self,
        study: Study,
        view: _StudyView,
        me: _Record,
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
        self._draw_index = draw  # what DSPS+'s predictor schedule follows (see refit_point)
        rng = random.Random(f"autospik-dsps:{self._seed}:{draw}")
        duplicate: tuple[Architecture, str] | None = None
        written: tuple[Architecture, int] | None = None
        for attempt in range(1, self._max_redraws + 1):
            if full is not None:
                arch, origin = full, "enqueued"
            else:
                arch, origin = self._propose(
                    study, view, generation, rng, uniform=attempt > self._max_redraws // 2
                )
                if fixed:
                    arch = self._apply_fixed(arch, fixed, rng)
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
        self._write(study._storage, me.trial_id, duplicate[0], generation, duplicate[1], draw)
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
        view: _StudyView,
        number: int,
        trial_id: int,
        arch: Architecture,
        generation: int,
        origin: str,
        draw: int,
    ) -> bool:
        """Write, re-read, and accept unless another trial shows the same architecture (see
        "Concurrency" in the module docstring)."""
        self._write(study._storage, trial_id, arch, generation, origin, draw)
        me = _Record(number, trial_id, TrialState.RUNNING, arch, generation, None, draw=draw)
        self._refresh(study, view, me)
        return origin == "enqueued" or not view.taken(arch, exclude=number)

    def _propose(
        self, study: Study, view: _StudyView, generation: int, rng: random.Random, uniform: bool
    ) -> tuple[Architecture, str]:
        if generation == 0 or uniform:
            return self._space.sample(rng), "random"
        parents = [
            view.finished[n].arch
            for n in self._parents(study, view, generation)
            if n in view.finished and view.finished[n].arch is not None
        ]
        if not parents:  # nothing of the previous generation has finished yet
            return self._space.sample(rng), "random"
        if len(parents) >= 2 and rng.random() < self._crossover_prob:
            a, b = rng.sample(parents, 2)
            child, origin = _crossover(a, b, rng), "crossover"  # type: ignore[arg-type]
        else:
            child, origin = rng.choice(parents), "copy"
        return _mutate(child, self._space, self._mutation_prob, rng), origin  # type: ignore[arg-type]

    def _parents(self, study: Study, view: _StudyView, generation: int) -> list[int]:
        """Trial numbers of the parents of ``generation``: computed once, kept in the study."""
        if generation <= 0:
            return []
        if generation in view.parents:
            return view.parents[generation]
        key = f"{PARENTS_KEY_PREFIX}{generation}"
        stored = study._storage.get_study_system_attrs(study._study_id).get(key)
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
        chosen = self._select_parents(records)
        study._storage.set_study_system_attr(study._study_id, key, chosen)
        view.parents[generation] = chosen
        return chosen

    def _select_parents(self, records: list[_Record]) -> list[int]:
        """The best ``num_parents`` of a pool of complete trials: the feasible ones by ``F_AEB``
        (scaled over the feasible ones; ties: number), then those over a budget by their total
        violation (ties: number)."""
        feasible = [r for r in records if r.violation <= 0]
        fitness = balanced_fitness(
            [r.values[0] for r in feasible],  # type: ignore[index]
            [r.values[1] for r in feasible],  # type: ignore[index]
            self._alpha,
        )
        order = sorted(range(len(feasible)), key=lambda i: (-float(fitness[i]), feasible[i].number))
        over = sorted(
            (r for r in records if r.violation > 0), key=lambda r: (r.violation, r.number)
        )
        ranked = [feasible[i].number for i in order] + [r.number for r in over]
        return ranked[: self._num_parents]

    def _check_config(self, study: Study, view: _StudyView) -> None:
        """Record this sampler's settings in the study, or warn when they differ; once per view."""
        if view.config_checked:
            return
        attrs = study._storage.get_study_system_attrs(study._study_id)
        for key, value in attrs.items():
            if key.startswith(PARENTS_KEY_PREFIX):
                view.parents[int(key[len(PARENTS_KEY_PREFIX) :])] = [int(n) for n in value]
        mine = self._config()
        stored = attrs.get(CONFIG_KEY)
        if stored is None:
            study._storage.set_study_system_attr(study._study_id, CONFIG_KEY, mine)
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

    def _apply_fixed(
        self, arch: Architecture, fixed: dict[str, Any], rng: random.Random
    ) -> Architecture:
        """``arch`` with the enqueued (or already suggested) parameter values imposed."""
        depth = int(fixed.get("depth", arch.depth))
        blocks = _resize(arch, depth, self._space, rng)
        for field in PER_BLOCK_FIELDS:
            for i in range(depth):
                name = f"{field}_{i}"
                if name in fixed:
                    blocks[field][i] = fixed[name]
        return Architecture(
            depth=depth,
            embed_dim=int(fixed.get("embed_dim", arch.embed_dim)),
            time_steps=int(fixed.get("time_steps", arch.time_steps)),
            **blocks,
        )


def _resize(
    arch: Architecture, depth: int, space: SearchSpace, rng: random.Random
) -> dict[str, list[Any]]:
    """Per-block lists of ``arch`` trimmed or grown (uniform new blocks) to ``depth`` entries."""
    blocks = {field: list(getattr(arch, field))[:depth] for field in PER_BLOCK_FIELDS}
    for _ in range(arch.depth, depth):
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(rng.choice(space.choices[field]))
    return blocks


def _crossover(a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
    """Gene-wise crossover: each gene from either parent; a block only one parent has is its."""
    depth = rng.choice((a.depth, b.depth))
    blocks: dict[str, list[Any]] = {field: [] for field in PER_BLOCK_FIELDS}
    for i in range(depth):
        donors = [p for p in (a, b) if i < p.depth]
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(getattr(rng.choice(donors), field)[i])
    return Architecture(
        depth=depth,
        embed_dim=rng.choice((a.embed_dim, b.embed_dim)),
        time_steps=rng.choice((a.time_steps, b.time_steps)),
        **blocks,
    )


def _mutate(
    arch: Architecture, space: SearchSpace, prob: float, rng: random.Random
) -> Architecture:
    """Each gene moves to another value of its choice list with probability ``prob``."""

    def gene(value: Any, choices: Iterable[Any]) -> Any:
        others = [c for c in choices if c != value]
        if others and rng.random() < prob:
            return rng.choice(others)
        return value

    c = space.choices
    depth = int(gene(arch.depth, c["depth"]))
    embed_dim = int(gene(arch.embed_dim, c["embed_dim"]))
    time_steps = int(gene(arch.time_steps, c["time_steps"]))
    blocks = _resize(arch, depth, space, rng)
    for i in range(min(depth, arch.depth)):  # grown blocks are already uniform draws
        for field in PER_BLOCK_FIELDS:
            blocks[field][i] = gene(blocks[field][i], c[field])
    return Architecture(depth=depth, embed_dim=embed_dim, time_steps=time_steps, **blocks)
