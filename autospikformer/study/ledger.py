"""What a search worker and the progress line know of a study's trials, read incrementally.

A worker needs, before and during every trial: how many trials are COMPLETE, which are RUNNING
(the N check, the surplus check, trials of dead processes), whether a COMPLETE or RUNNING trial
already holds the parameters it was given (duplicates), and the progress line needs the
feasible Pareto front. Reading the whole study for each of these costs a time that grows with
the study (Optuna's ``study.best_trials`` deep-copies every trial), so a 10,000-trial study
would spend most of its time on it. A :class:`TrialLedger` keeps the finished trials' share of
the answers (a count, a dict of parameters, the front) and, at each refresh, fetches only the
trials it last saw unfinished and those numbered past the last it saw (the way the DSPS
sampler's mirror reads, ``search/mirror.py``): a refresh costs a few storage reads however
long the study.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from autospikformer.optuna_api import storage_of, study_id
from autospikformer.search.mirror import fetch_trial


def params_key(params: Mapping[str, Any]) -> Hashable:
    """A hashable form of a trial's parameters: equal keys for equal parameter dicts."""
    return tuple(sorted(params.items()))


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as accurate and as cheap as ``b``, and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


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
        self._scanned = 0  # every trial numbered below has been fetched at least once
        self._watch: set[int] = set()  # unfinished when last seen (the reader's own included)
        self._evaluated: dict[Hashable, int] = {}  # params of COMPLETE trials -> a number
        self._started = False

    def refresh(self, me: int | None = None) -> None:
        """Take in the trials created and the states changed since the last refresh (the
        first reads the whole study once); ``me``, the reader's own running trial, is not
        fetched, only watched for its end."""
        live: dict[int, FrozenTrial] = {}
        if not self._started:
            self._started = True
            for trial in self.storage.get_all_trials(self.study_id, deepcopy=False):
                if trial.number != me:
                    self._take(trial, live)
                self._scanned = max(self._scanned, trial.number + 1)
        top = max(self._scanned, -1 if me is None else me + 1)
        for number in sorted({*self._watch, *range(self._scanned, top)} - {me}):
            self._take(fetch_trial(self.storage, self.study_id, number), live)
        while (trial := fetch_trial(self.storage, self.study_id, top)) is not None:
            self._take(trial, live)
            top += 1
        self._scanned = top
        self.live = live
        self._watch = set(live) | ({me} if me is not None else set())

    def _take(self, trial: FrozenTrial | None, live: dict[int, FrozenTrial]) -> None:
        if trial is None:
            return
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
        if any(_dominates(member, point) for member in self.front):
            return
        self.front = [m for m in self.front if not _dominates(point, m)] + [point]

    def note(self, trial: FrozenTrial) -> None:
        """A trial the reader itself just finished (as ``study.tell`` returned it), taken in
        without a fetch; ignored unless it was the ``me`` of a refresh."""
        if trial.number in self._watch and trial.state.is_finished():
            self._watch.discard(trial.number)
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
