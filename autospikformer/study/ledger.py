"""What a search worker and the progress line know of a study's trials, read incrementally.

A worker needs, before and during every trial: how many trials are COMPLETE, which are RUNNING
(the N check, the surplus check, trials of dead processes), whether a COMPLETE or RUNNING trial
already holds the parameters it was given (duplicates), and the progress line needs the
feasible Pareto front. Reading the whole study for each of these costs a time that grows with
the study (Optuna's ``study.best_trials`` deep-copies every trial), so a 10,000-trial study
would spend most of its time on it. A :class:`TrialLedger` keeps the finished trials' share of
the answers (a count, a dict of parameters, the front) and, at each refresh, reads only the
trials created since its last look (one query by trial id, which Optuna's index serves without
reading the older trials: ``optuna_api.trials_after``) and those it last saw unfinished (one
fetch each, by id): a refresh costs a few storage reads however long the study. A trial that
commits after one created later (concurrent workers on PostgreSQL) leaves its number skipped;
it is looked for by that number until it is seen.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Hashable, Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from autospikformer.optuna_api import storage_of, study_id, trial_id, trials_after
from autospikformer.pareto import dominates

_ID_OF_NUMBER = "get_trial_id_from_study_id_trial_number"
HOLE_LOOKS = 100  # looks for a skipped trial number before it is taken for no trial


def params_key(params: Mapping[str, Any]) -> Hashable:
    """A hashable form of a trial's parameters: equal keys for equal parameter dicts."""
    return tuple(sorted(params.items()))


class TrialLedger:
    """One study's trial states, evaluated parameters and feasible front, kept incrementally.

    ``storage`` is any Optuna storage (a worker's retrying one rides out an outage); call
    :meth:`refresh` before reading. ``complete`` counts COMPLETE trials; ``live`` holds the
    other processes' RUNNING and WAITING trials as last fetched; ``front`` is the accuracy and
    energy of the COMPLETE trials within every constraint (Optuna's feasibility) that no other
    such trial dominates, equal points all kept, as ``study.best_trials`` gives them.
    """

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id
        self.complete = 0
        self.live: dict[int, FrozenTrial] = {}
        self.front: list[tuple[float, float]] = []
        self._last_id = -1  # every trial of the study with an id up to this has been seen
        self._watch: dict[int, int] = {}  # id -> number of the trials unfinished when last seen
        self._top = -1  # the highest trial number seen
        self._holes: dict[int, int] = {}  # numbers below it not seen yet -> looks since
        self._evaluated: dict[Hashable, int] = {}  # params of COMPLETE trials -> a number
        self._refreshed_at = -float("inf")  # time.monotonic() of the last refresh

    def refresh(self, me: int | None = None, *, max_age: float = 0.0) -> None:
        """Take in the trials created and the states changed since the last refresh (the
        first reads the whole study once): one query for the trials created since, one fetch
        per trial unfinished at the last look. ``me``, the reader's own running trial, is
        only watched for its end. ``max_age``: a reader content with a picture that many
        seconds old (a progress line) reads nothing when the last refresh is that recent."""
        now = time.monotonic()
        if now - self._refreshed_at < max_age:
            return
        self._refreshed_at = now
        new = self._read(trials_after, self.study_id, self._last_id)
        if new:
            self._last_id = max(self._last_id, max(trial_id(t) for t in new))
        new += self._late_trials({t.number for t in new})
        for trial in new:
            self._see(trial.number)
        fresh = {trial_id(t) for t in new}
        again = [
            self._read("get_trial", i)
            for i, number in self._watch.items()
            if i not in fresh and number != me  # the reader knows its own trial is running
        ]
        watch = {i: number for i, number in self._watch.items() if number == me}
        live: dict[int, FrozenTrial] = {}
        for trial in sorted([*again, *new], key=lambda t: t.number):
            if trial.number == me and not trial.state.is_finished():
                watch[trial_id(trial)] = trial.number
                continue
            self._take(trial, live)
            if not trial.state.is_finished():
                watch[trial_id(trial)] = trial.number
        self.live, self._watch = live, watch

    def _see(self, number: int) -> None:
        if number > self._top:
            self._holes.update(dict.fromkeys(range(self._top + 1, number), 0))
            self._top = number
        self._holes.pop(number, None)

    def _late_trials(self, arrived: set[int]) -> list[FrozenTrial]:
        """Trials whose number was skipped: created before a trial already seen but committed
        after it (possible on PostgreSQL, never on SQLite), fetched by number until seen; a
        number still missing after :data:`HOLE_LOOKS` looks is no trial (Optuna's concurrent
        numbering can skip one) and is given up."""
        late = []
        for number in sorted(set(self._holes) - arrived):
            try:
                found = self._read(_ID_OF_NUMBER, self.study_id, number)
                late.append(self._read("get_trial", found))
            except KeyError:  # not committed yet: looked for again next time
                self._holes[number] += 1
                if self._holes[number] > HOLE_LOOKS:
                    del self._holes[number]
        return late

    def _read(self, method: Any, *args: Any) -> Any:
        """A storage read, retried through an outage when the storage does that (a worker's)."""
        call = getattr(self.storage, "call", None)
        if call is not None:
            return call(method, *args)
        return (
            method(self.storage, *args)
            if callable(method)
            else getattr(self.storage, method)(*args)
        )

    def _take(self, trial: FrozenTrial, live: dict[int, FrozenTrial]) -> None:
        if not trial.state.is_finished():
            live[trial.number] = trial
            return
        if trial.state != TrialState.COMPLETE:  # each finished trial is taken once
            return
        self.complete += 1
        self._evaluated.setdefault(params_key(trial.params), trial.number)
        if trial.values is not None and all(c <= 0 for c in trial.constraints.values()):
            self._add_to_front((float(trial.values[0]), float(trial.values[1])))

    def _add_to_front(self, point: tuple[float, float]) -> None:
        if any(dominates(member, point) for member in self.front):
            return
        self.front = [m for m in self.front if not dominates(point, m)] + [point]

    def note(self, trial: FrozenTrial) -> None:
        """A trial the reader itself just finished (as ``study.tell`` returned it), taken in
        without a fetch; ignored unless it is watched (it was the ``me`` of a refresh)."""
        if trial_id(trial) in self._watch and trial.state.is_finished():
            del self._watch[trial_id(trial)]
            self._take(trial, self.live)

    @property
    def running(self) -> list[FrozenTrial]:
        """The other processes' RUNNING trials, as last fetched."""
        return [t for t in self.live.values() if t.state == TrialState.RUNNING]

    def duplicate_of(self, params: Mapping[str, Any], me: int) -> int | None:
        """A COMPLETE or RUNNING trial other than ``me`` with exactly these parameters."""
        done = self._evaluated.get(params_key(params))
        if done is not None and done != me:
            return done
        return next((t.number for t in self.running if t.number != me and t.params == params), None)


_LEDGERS: weakref.WeakKeyDictionary[Any, dict[int, TrialLedger]] = weakref.WeakKeyDictionary()


def ledger_of(study: optuna.Study) -> TrialLedger:
    """The ledger of ``study`` as read through its storage object: one per storage object and
    study, so that a worker and the progress line in its process share their reads."""
    per_study = _LEDGERS.setdefault(storage_of(study), {})
    sid = study_id(study)
    if sid not in per_study:
        per_study[sid] = TrialLedger(storage_of(study), sid)
    return per_study[sid]
