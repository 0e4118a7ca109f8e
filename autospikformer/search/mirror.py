"""The sampler's picture of a study: what DSPS needs of each trial, read incrementally.

A :class:`TrialSummary` is what the sampler needs of one trial (its candidate, generation, draw
index, objective values, total constraint violation). A :class:`StudyMirror` keeps the finished
trials parsed once and re-reads only the live ones and the ones numbered past the last it saw,
so a read costs one fetch per live or new trial, never the whole study (Optuna's RDB cache
answers finished trials from memory). docs/search.md explains the generation rules it serves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from autospikformer import optuna_api
from autospikformer.optuna_api import (
    CONSTRAINTS_KEY,
    FAILED_TRIAL_KEY,
    FIXED_PARAMS_KEY,
    RETRY_HISTORY_KEY,
)
from autospikformer.search.architecture import Architecture
from autospikformer.search.suggest import architecture_from_params, is_architecture_param

#: Trial system attribute: the trial's candidate, generation, origin and draw index.
CANDIDATE_KEY = "autospik:dsps:candidate"


@dataclass(frozen=True)
class TrialSummary:
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
    draw: int | None = None  # the draw index its candidate was drawn with (docs/search.md)

    @property
    def draw_index(self) -> int:
        """The draw index (trials drawn before DSPS stored it: the trial number)."""
        return self.number if self.draw is None else self.draw

    @property
    def undrawn(self) -> bool:
        """Running, and its candidate (if any) still to be drawn: its generation is not known."""
        return self.state == TrialState.RUNNING and self.generation is None and not self.suggested


def summarize(trial: FrozenTrial, attrs: Mapping[str, Any] | None = None) -> TrialSummary:
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
            params = {**attrs.get(FIXED_PARAMS_KEY, {}), **params}
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
        history = attrs.get(RETRY_HISTORY_KEY)
        previous = history[-1] if isinstance(history, list) and history else None
        if previous is None:
            previous = attrs.get(FAILED_TRIAL_KEY)
        if isinstance(previous, int) and not isinstance(previous, bool):
            supersedes = previous
    suggested = any(is_architecture_param(k) for k in trial.params)
    violation = 0.0
    if values is not None:
        for key, value in attrs.items():
            if key == CONSTRAINTS_KEY or key.startswith(CONSTRAINTS_KEY + ":"):
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, (int, float)) and v > 0:
                        violation += float(v)
    return TrialSummary(
        trial.number,
        optuna_api.trial_id(trial),
        trial.state,
        arch,
        generation,
        values,
        suggested,
        supersedes,
        violation,
        draw,
    )


def fetch_trial(storage: BaseStorage, study_id: int, number: int) -> FrozenTrial | None:
    """Trial ``number`` of the study, or None when the study has no such trial (yet)."""
    try:
        return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:
        return None


class StudyMirror:
    """The sampler's incremental picture of one study: finished trials parsed once, live re-read.

    A trial *counts toward* its generation (holds one of its ``population_size`` places) while
    it is live, and once it is COMPLETE or PRUNED after suggesting its candidate; a FAILed
    trial frees its place, and so does a trial whose candidate a re-queued copy carries on
    (Optuna's ``retry_history``), and one closed before suggesting anything (an enqueued trial
    found surplus).
    """

    def __init__(self) -> None:
        self.finished: dict[int, TrialSummary] = {}
        self.scanned = 0  # trial numbers below this have been seen at least once
        self.unfinished: set[int] = set()  # numbers seen RUNNING/WAITING, re-read every time
        self.evaluated: set[Architecture] = set()  # COMPLETE/PRUNED architectures
        self.gen_count: Counter[int] = Counter()  # finished trials counting toward each generation
        self.counted: dict[int, int] = {}  # number -> generation of those finished trials
        self.superseded: set[int] = set()  # trials whose candidate a re-queued copy carries on
        self.gen_complete: dict[int, list[int]] = {}  # rankable trial numbers per generation
        self.max_gen = 0
        self.live: dict[int, TrialSummary] = {}  # RUNNING/WAITING trials as of the last refresh
        self.given_up: set[int] = set()  # undrawn trials no longer waited for (settle_timeout)
        self.parents: dict[int, list[int]] = {}
        self.config_checked = False
        self.draws: dict[int, int] = {}  # number -> draw index of every trial with a candidate
        self.top_draw = (-1, -1)  # (highest draw index seen, the number of its trial)

    def refresh(self, storage: BaseStorage, study_id: int, me: TrialSummary) -> None:
        """Take in new trials and state changes, at a cost that does not grow with the study.

        ``me`` is the reading trial, as its own process knows it. The trials seen live last
        time are fetched again, and so is every number above the last one seen, up to the
        first number the storage does not have yet; nothing else is read, so a read costs
        one fetch per live or new trial plus one probe past the end (Optuna's RDB cache
        answers finished trials from memory). A trial that is finished stays finished.
        """
        live: dict[int, TrialSummary] = {}
        top = max(self.scanned, me.number + 1)
        for number in sorted({*self.unfinished, *range(self.scanned, top)} - {me.number}):
            self._take(fetch_trial(storage, study_id, number), live)
        while (trial := fetch_trial(storage, study_id, top)) is not None:
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
            trial = fetch_trial(storage, study_id, number)
            if trial is None:
                continue
            if trial.state.is_finished():
                self.live.pop(number, None)
                self.unfinished.discard(number)
            self._take(trial, self.live)

    def _take(self, trial: FrozenTrial | None, live: dict[int, TrialSummary]) -> None:
        if trial is None:
            return
        record = summarize(trial)
        if record.supersedes is not None:
            self._supersede(record.supersedes)
        self._note_draw(record)
        if not trial.state.is_finished():
            live[record.number] = record
        elif record.number not in self.finished:
            self.add_finished(record)

    def _note_draw(self, record: TrialSummary) -> None:
        if record.generation is not None:
            self.draws[record.number] = record.draw_index
            if record.draw_index > self.top_draw[0]:
                self.top_draw = (record.draw_index, record.number)

    def _supersede(self, number: int) -> None:
        self.superseded.add(number)
        generation = self.counted.pop(number, None)
        if generation is not None:
            self.gen_count[generation] -= 1

    def add_finished(self, record: TrialSummary) -> None:
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

    def _members(self, exclude: int) -> Iterable[TrialSummary]:
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
