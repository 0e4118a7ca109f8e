"""Riding out a storage outage: a worker's storage calls retried with back-off, up to a limit.

A PostgreSQL restart, or a database stopped for a while, makes every storage call fail until
the server answers again. A worker's Optuna storage is wrapped in :class:`RetryingStorage`:

- a call that fails for want of the database (connection refused or closed, the server
  starting or shutting down, SQLite's lock timeout: :func:`outage_reason`) is retried with
  exponential back-off (0.5 s doubling to 5 s, with jitter), with one warning line when the
  call first fails and one when it goes through. A trial's evaluation result waits in memory
  meanwhile, so a finished evaluation is saved once the database is back, not thrown away;
- heartbeats are tried once each (the next is due a heartbeat interval later); a heartbeat
  missed because the database was down is not a sign that the worker died, so a worker does
  not fail stale trials until ``grace_period`` seconds after it last saw the storage fail
  (:meth:`RetryingStorage.quiet_for`): by then every live worker has beaten again;
- a storage that answers nothing for longer than ``max_outage`` seconds makes the call raise
  :class:`StorageOutage`, one line naming the database's error, and every later call raise it
  at once: the worker stops, its trial stays RUNNING and is re-queued by the next worker after
  the grace period, like the trial of a killed worker;
- a retried write whose first attempt reached the database before the connection dropped is
  recognised (a trial already finished with the same state and values), so it is not refused
  as a second write.

A full disk under the database (SQLite's ``database or disk is full``, PostgreSQL's ``could
not extend file``) is handled the same way: the write is retried until space is freed or
``max_outage`` runs out, so a finished evaluation is saved rather than marked FAIL.

Any other storage error (a read-only file, a broken schema) is not an outage and is raised at
once. A trial left RUNNING without a single heartbeat (its worker lost the database between
creating it and its first beat, or never heard that its creation went through and created it a
second time) is one Optuna never counts as stale: :func:`start_silent_trials_clocks` gives it
a first beat, so it goes stale after the grace period like the trial of a killed worker.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from autospikformer.errors import database_error, database_reason
from autospikformer.optuna_api import BaseHeartbeat, heartbeat_tables, set_trial_attrs
from autospikformer.study.storage import StudyError

#: Phrases of the database drivers' errors that mean "no database right now", lower case.
OUTAGE_PHRASES = (
    "could not connect",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "connection already closed",
    "connection reset",
    "connection timed out",
    "no connection to the server",
    "ssl connection has been closed",
    "could not receive data from server",
    "could not send data to server",
    "timeout expired",
    "broken pipe",
    "database is locked",
)
#: Phrases (lower case) and PostgreSQL error classes of a database whose disk is full.
DISK_FULL_PHRASES = (
    "database or disk is full",
    "no space left on device",
    "could not extend file",
    "could not write to file",
    "disk quota exceeded",
)
DISK_FULL_CODES = ("53100",)  # PostgreSQL's disk_full
FIRST_DELAY = 0.5  # seconds before the first retry
MAX_DELAY = 5.0  # the back-off doubles up to this


class StorageOutage(StudyError):
    """The storage answered nothing for longer than the worker's ``max_outage``."""


def outage_reason(exc: BaseException) -> str | None:
    """The database's words when ``exc`` means the database cannot be reached now, else None."""
    orig = database_error(exc)
    if orig is None:
        return None
    wrapper = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    code = str(getattr(orig, "pgcode", None) or "")
    text = str(orig).lower()
    if isinstance(wrapper, sqlalchemy.exc.PendingRollbackError):  # a session the drop broke
        return "the connection was lost in the middle of a transaction (sqlalchemy.PendingRollbackError)"
    if (
        getattr(wrapper, "connection_invalidated", False)
        or code.startswith(("08", "57P", *DISK_FULL_CODES))
        or any(phrase in text for phrase in (*OUTAGE_PHRASES, *DISK_FULL_PHRASES))
    ):
        return database_reason(exc)
    return None


def _trouble(reason: str) -> str:
    """How a warning line names the storage's state: full, or unreachable."""
    return "is full" if any(p in reason.lower() for p in DISK_FULL_PHRASES) else "unreachable"


#: Every storage method a worker may call; each goes through :meth:`RetryingStorage.call`.
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs", "_get_stale_trial_ids",
)  # fmt: skip


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose calls ride out a database outage of up to ``max_outage`` s.

    ``backend`` is the storage to wrap (e.g. ``optuna.storages.get_storage(rdb_storage)``);
    ``label`` and ``url`` name the worker and the storage in the warning lines, which go to
    ``stream`` (stderr). Set :attr:`doing` to what the worker is doing ("saving trial 31"), for
    those lines. ``seed`` seeds the back-off jitter.
    """

    def __init__(
        self,
        backend: BaseStorage,
        *,
        max_outage: float,
        label: str = "worker",
        url: str = "",
        stream: TextIO | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(backend, BaseStorage):
            raise TypeError(f"backend: {backend!r} is not an Optuna storage")
        if not isinstance(max_outage, (int, float)) or max_outage <= 0:
            raise ValueError(f"max_outage: {max_outage!r} is not allowed (allowed: seconds > 0)")
        self._backend = backend
        self.max_outage = float(max_outage)
        self.label = label
        self.url = url
        self.doing = "using the storage"
        self._stream = stream
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._down_since: float | None = None  # first failure since the storage last answered
        self._last_failure: float | None = None
        self._gave_up: StorageOutage | None = None
        self._once = threading.local()
        self._kept = threading.local()  # what :meth:`written_together` keeps
        self._heartbeat_warned = False

    def reseed_rng(self, seed: int | None = None) -> None:
        self._rng.seed(seed)

    # -- the retry loop ----------------------------------------------------------------------
    def call(self, method: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``backend.<method>(*args, **kwargs)`` (or ``method(backend, *args, **kwargs)`` for a
        function), retried through an outage."""
        func = (
            getattr(self._backend, method)
            if isinstance(method, str)
            else functools.partial(method, self._backend)
        )
        failed_at: float | None = None
        trouble = "unreachable"
        delay = FIRST_DELAY
        while True:
            if self._gave_up is not None:
                raise self._gave_up
            try:
                result = func(*args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed_at is None or not self._landed(method, *args, **kwargs):
                    raise
                result = True  # the first attempt was saved; only its answer was lost
            except Exception as exc:
                reason = outage_reason(exc)
                if reason is None or getattr(self._once, "active", False):
                    raise
                with contextlib.suppress(Exception):  # a fresh session for the next attempt
                    self._backend.remove_session()
                now = time.monotonic()
                self._failed(now, reason)
                if failed_at is None:
                    failed_at, trouble = now, _trouble(reason)
                    self._say(
                        f"warning: {self.label}: storage {self.url} {trouble} while "
                        f"{self.doing} ({reason}); retrying with back-off for up to "
                        f"{self.max_outage:g} s"
                    )
                left = self.max_outage - (now - (self._down_since or now))  # give up on time
                time.sleep(max(0.01, min(delay * self._rng.uniform(0.8, 1.2), left + 0.01)))
                delay = min(2 * delay, MAX_DELAY)
                continue
            self._answered()
            if failed_at is not None:
                back = "writable" if trouble == "is full" else "reachable"
                self._say(
                    f"{self.label}: storage {back} again after "
                    f"{time.monotonic() - failed_at:.1f} s; {self.doing} went through"
                )
            return result

    def _failed(self, now: float, reason: str) -> None:
        with self._lock:
            self._last_failure = now
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since > self.max_outage:
                full = _trouble(reason) == "is full"
                self._gave_up = StorageOutage(
                    f"{self.label}: storage {self.url} {'full' if full else 'unreachable'} for "
                    f"over {self.max_outage:g} s (search.max_outage) while {self.doing}: "
                    f"{reason}; run the command again once "
                    + ("space is freed" if full else "the database is back")
                )
                raise self._gave_up

    def _answered(self) -> None:
        with self._lock:
            self._down_since = None

    def _landed(self, method: str | Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Whether a retried ``set_trial_state_values`` had already been saved."""
        if method != "set_trial_state_values":
            return False
        names = ("trial_id", "state", "values")
        given = dict(zip(names, args, strict=False)) | kwargs
        trial = self.call("get_trial", given["trial_id"])
        values = given.get("values")
        return trial.state == given["state"] and (
            values is None or trial.values == [float(v) for v in values]
        )

    def _say(self, line: str) -> None:
        print(line, file=self._stream or sys.stderr, flush=True)

    @contextlib.contextmanager
    def single_attempts(self) -> Iterator[None]:
        """Calls in this block (this thread) are tried once: for clean-up on the way out."""
        self._once.active = True
        try:
            yield
        finally:
            self._once.active = False

    def quiet_for(self, seconds: float) -> bool:
        """Whether no storage call failed in the last ``seconds`` (stale checks are fair)."""
        last = self._last_failure
        return last is None or time.monotonic() - last >= seconds

    @property
    def gave_up(self) -> StorageOutage | None:
        """The outage that stopped this storage, or None."""
        return self._gave_up

    def set_trial_attrs(
        self,
        trial_id: int,
        *,
        params: dict[str, tuple[float, BaseDistribution]] | None = None,
        user_attrs: dict[str, Any] | None = None,
        system_attrs: dict[str, Any] | None = None,
    ) -> None:
        """Parameters and attributes of a running trial in one transaction
        (:func:`~autospikformer.optuna_api.set_trial_attrs`), retried through an outage."""
        self.call(
            set_trial_attrs,
            trial_id,
            params=params,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )

    @contextlib.contextmanager
    def written_together(self, trial_id: int) -> Iterator[None]:
        """The parameters and user attributes this thread sets on trial ``trial_id`` inside the
        block are kept and written at its end, in one transaction (:meth:`set_trial_attrs`),
        instead of one commit each: a trial suggests an architecture in one write. Optuna's
        trial keeps its own copy of what it set, so nothing inside reads them back; a block
        that raises writes none of them (the trial fails, never evaluated)."""
        kept: tuple[int, dict[str, Any], dict[str, Any]] = (trial_id, {}, {})
        self._kept.value = kept
        try:
            yield
        finally:
            self._kept.value = None
        if kept[1] or kept[2]:
            self.set_trial_attrs(trial_id, params=kept[1], user_attrs=kept[2])

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        kept = getattr(self._kept, "value", None)
        if kept is not None and kept[0] == trial_id:
            kept[1][param_name] = (param_value_internal, distribution)
            return
        self.call("set_trial_param", trial_id, param_name, param_value_internal, distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        kept = getattr(self._kept, "value", None)
        if kept is not None and kept[0] == trial_id:
            kept[2][key] = value
            return
        self.call("set_trial_user_attr", trial_id, key, value)

    # -- heartbeats: tried once, never raised ------------------------------------------------
    def record_heartbeat(self, trial_id: int) -> None:
        if self._gave_up is not None:
            return
        try:
            self._backend.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception as exc:
            reason = outage_reason(exc)
            if reason is None:
                if not self._heartbeat_warned:
                    self._heartbeat_warned = True
                    self._say(
                        f"warning: {self.label}: a heartbeat failed: {database_reason(exc) or exc}"
                    )
                return
            with contextlib.suppress(Exception):
                self._backend.remove_session()
            with contextlib.suppress(StorageOutage):
                self._failed(time.monotonic(), reason)
            return
        self._answered()

    def get_heartbeat_interval(self) -> int | None:
        return self._backend.get_heartbeat_interval()  # type: ignore[attr-defined]

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None:
        return self._backend.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]

    # -- plain delegation --------------------------------------------------------------------
    def remove_session(self) -> None:
        self._backend.remove_session()

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self._backend.check_trial_is_updatable(trial_id, trial_state)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_backend":
            raise AttributeError(name)
        return getattr(self._backend, name)


def _retried(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` of the wrapped storage, retried through an outage."
    return method


for _name in _RETRIED:
    setattr(RetryingStorage, _name, _retried(_name))
abc.update_abstractmethods(RetryingStorage)


def start_silent_trials_clocks(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """Record a first heartbeat for each RUNNING trial of the study that has none; their ids.

    Optuna counts a RUNNING trial as stale only from its last heartbeat, so a trial whose worker
    lost the database before its first beat would stay RUNNING forever and hold back the
    study's last trials. Started here, its clock runs out after ``grace_period`` unless its
    worker is alive and beats (a beat recorded for a live trial is harmless). The query reads
    Optuna's own tables (``trials``, ``trial_heartbeats``): the RDB storage has no public call
    for trials without a heartbeat.
    """
    engine = storage.engine
    trials, beats = heartbeat_tables()
    query = (
        sqlalchemy.select(trials.c.trial_id)
        .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
        .where(trials.c.study_id == study_id)
        .where(trials.c.state == TrialState.RUNNING)
        .where(beats.c.trial_heartbeat_id.is_(None))
    )
    with engine.connect() as connection:
        silent = [int(row[0]) for row in connection.execute(query)]
    for trial_id in silent:
        storage.record_heartbeat(trial_id)
    return silent
