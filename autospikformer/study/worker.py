"""Stage 2 of a study: one search worker, evaluating the candidates its sampler proposes until the
study holds N complete trials (:mod:`autospikformer.study.workers` runs several).

Design choices (``docs/studies.md`` explains them to users):

- **A worker needs only the study name and the storage URL**: the study holds its whole
  configuration (``study/storage.py``) and the supernet is pinned by stage 1
  (``study/supernet_stage.py``).
- **Exactly N complete trials across any number of workers.** Before each trial a worker counts
  COMPLETE and RUNNING trials and waits while they already reach N (a running trial may still
  fail). Two workers can pass that check at the same instant; inside the trial, before any
  parameter is suggested, the trial checks its rank: if the COMPLETE trials plus the RUNNING trials
  numbered below it already reach N it is surplus, is closed as PRUNED without parameters (user
  attribute ``autospik:skipped = "surplus"``) and the worker goes back to waiting.
- **No duplicate architectures.** The samplers re-draw candidates already evaluated, but two
  workers can propose the same candidate at the same moment. After suggesting, a trial looks for
  a COMPLETE or RUNNING trial with the same parameters and, if there is one, closes itself as
  PRUNED (``autospik:skipped = "duplicate"``). Each trial stores its parameters before looking,
  so of two simultaneous twins at least one sees the other.
- **What grows with the study is not read again.** The counts, the evaluated parameters and the
  running trials come from a :class:`~autospikformer.study.ledger.TrialLedger`, which fetches
  only the trials new or unfinished since its last look. A trial writes its label first (a kill
  is seen), then its parameters and architecture in one storage transaction (they mark it as
  being evaluated), then its record in one more (``optuna_api.set_trial_attrs``).
- **Heartbeats.** Workers beat every ``search.heartbeat_interval`` seconds; a RUNNING trial silent
  for ``search.grace_period`` seconds (its worker was killed) is marked FAIL by the next worker
  that looks for stale trials (between two trials, at most every 2 s) and re-queued (WAITING,
  same parameters) by Optuna's
  ``RetryHeartbeatStaleTrialCallback``; the next free worker evaluates it. A trial whose process
  (``autospik:worker``) is gone from this machine is re-queued at once.
- **Ctrl-C** asks every worker to stop after its current trial; a second Ctrl-C abandons the
  current trial, which is marked FAIL and re-queued the same way. A rerun continues to N.
- **A database outage** is ridden out (``study/retrying_storage.py``): every storage call of a
  worker is retried with back-off for up to ``search.max_outage`` seconds, so an evaluated trial
  keeps its result until it is saved; a worker that cannot reach the database for longer stops
  with one line. A full disk under the database is handled the same way; a full disk met
  elsewhere during a trial re-queues the trial's candidate, as a second Ctrl-C does. The trial
  loop is Optuna's ask and tell, run here rather than by ``study.optimize``, whose trial runner
  loses the database's error when saving a result fails.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.errors import disk_full
from autospikformer.optuna_api import (
    FIXED_PARAMS_KEY,
    get_heartbeat_thread,
    storage_of,
    study_id,
    trial_id,
)
from autospikformer.processes import dead_here, process_label
from autospikformer.search.architecture import Architecture
from autospikformer.search.samplers import DSPS_SAMPLERS
from autospikformer.search.suggest import suggest_architecture
from autospikformer.study.evaluator import study_evaluator
from autospikformer.study.holdout import check_study_holdout, check_supernet_holdout
from autospikformer.study.ledger import ledger_of
from autospikformer.study.retrying_storage import (
    RetryingStorage,
    StorageOutage,
    start_silent_trials_clocks,
)
from autospikformer.study.sampling import study_sampler
from autospikformer.study.storage import (
    ANN_ENERGY_ATTR,
    ARCH_JSON_ATTR,
    CALIB_ATTR,
    ENERGY_MEASUREMENT_ATTR,
    EVAL_SAMPLES_ATTR,
    EVALUATION_ATTR,
    FIRING_RATE_ATTR,
    NUM_PARAMS_ATTR,
    SECONDS_ATTR,
    SKIPPED_ATTR,
    WORKER_ATTR,
    StudyError,
    describe_url,
    load_study,
    open_storage,
)
from autospikformer.training.evaluate import SubnetResult

#: A worker whose sampler proposes this many architectures in a row that the study already holds
#: stops with :class:`SearchStalled`: the sampler has converged on the space and would otherwise
#: spin (Optuna's GP re-proposes its acquisition's optimum, which a pruned duplicate leaves where
#: it is; on the digits space it stalls near 100 distinct architectures).
MAX_DUPLICATES_IN_A_ROW = 100


class SearchStalled(StudyError):
    """The sampler keeps proposing architectures the study already holds."""

    #: In every message (the command that ran the workers recognises their lines by it).
    MARK = "architectures in a row that the study already holds"


@dataclass(frozen=True)
class WorkerOptions:
    """Everything a worker process needs: picklable, so ``--workers K`` can spawn it."""

    storage_url: str
    study_name: str
    trials: int
    checkpoint: str
    device: str = "auto"
    data_root: str | None = None
    worker_index: int = 0
    threads: int | None = None  # torch's CPU threads (None: torch's choice)
    sharing: int = 1  # workers on this worker's device (they split its feature memory)


def evaluation_settings(result: SubnetResult) -> dict[str, Any]:
    """What a trial's evaluation ran (:data:`EVALUATION_ATTR`): images, batch sizes, precision,
    device, and SPS's features: ``"off"`` (a whole pass), ``"computed"`` (SPS ran, its outputs
    kept for later trials) or ``"reused"`` (SPS's outputs of an earlier trial, SPEC section 10)."""
    return {
        "calib_images": int(result.calib_images),
        "calib_batch_size": int(result.calib_batch_size),
        "eval_images": int(result.samples),
        "eval_batch_size": int(result.eval_batch_size),
        "precision": result.precision,
        "device": result.device,
        "features": result.features,
    }


class StopFlag:
    """First SIGINT/SIGTERM: stop after the current trial; second: abandon the current trial.

    :meth:`request` asks for the first kind only (a worker whose command is gone)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def request(self) -> None:
        """Stop after the current trial (never more, however often asked)."""
        self.requested = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Put a trial's parameters back in the queue (same record as a heartbeat retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


class Worker:
    """Evaluates the candidates a study's sampler proposes until the study holds N complete trials.

    One worker owns one loaded supernet and one evaluator; ``run`` returns the number of trials
    this worker completed. ``on_trial`` is called after each trial (the progress display).
    """

    def __init__(self, options: WorkerOptions, *, stop: StopFlag | None = None) -> None:
        self.options = options
        self.stop = stop or StopFlag()
        probe = open_storage(options.storage_url)
        _, config = load_study(probe, options.study_name)
        self.config = config
        search = config.search
        self.label = f"worker {options.worker_index}"
        self._rdb = open_storage(
            options.storage_url,
            write=True,
            heartbeat_interval=search.heartbeat_interval,
            grace_period=search.grace_period,
        )
        self.storage = RetryingStorage(
            optuna.storages.get_storage(self._rdb),
            max_outage=search.max_outage,
            label=self.label,
            url=describe_url(options.storage_url),
            seed=config.seed + options.worker_index,
        )
        self.budgets = config.budgets
        trials_so_far = 0
        if search.sampler not in DSPS_SAMPLERS:  # seeded per worker start (study/sampling.py)
            counted = optuna.load_study(study_name=options.study_name, storage=self.storage)
            trials_so_far = len(counted.get_trials(deepcopy=False))
        sampler = study_sampler(
            config, worker_index=options.worker_index, trials_so_far=trials_so_far
        )
        self.study = optuna.load_study(
            study_name=options.study_name, storage=self.storage, sampler=sampler
        )
        supernet, supernet_meta = load_supernet_checkpoint(options.checkpoint, space=config.space)
        if options.device.startswith("cuda:"):  # this process's GPU (no context on cuda:0 too)
            import torch

            torch.cuda.set_device(options.device)
        self.evaluator = study_evaluator(
            config,
            supernet,
            data_root=options.data_root,
            device=options.device,
            progress=options.worker_index == 0,
            sharing=options.sharing,
        )
        if config.holdout is not None:  # every worker ranks on the split the study recorded
            split = self.evaluator.holdout_description(int(config.space.choices["time_steps"][0]))
            check_study_holdout(self.study, split)
            check_supernet_holdout(supernet_meta, config, options.checkpoint, split)
        self.host_label = process_label()
        self._current: int | None = None
        self.duplicates_in_a_row = 0
        self.ledger = ledger_of(self.study)

    # -- one trial ---------------------------------------------------------------------------
    def _objective(self, trial: optuna.Trial) -> tuple[float, float]:
        self._current = trial.number
        trial.set_user_attr(WORKER_ATTR, self.host_label)  # first: a kill from here on is seen
        ledger, n = self.ledger, self.options.trials
        ledger.refresh(me=trial.number)
        ahead = sum(t.number < trial.number for t in ledger.running)
        if ledger.complete + ahead >= n:
            self._close_surplus(trial)
        with self.storage.written_together(trial_id(trial)):  # one write, not one per gene
            arch = suggest_architecture(trial, self.config.space)
            trial.set_user_attr(ARCH_JSON_ATTR, arch.to_dict())  # from here on: being evaluated
        ledger.refresh(me=trial.number)  # a twin drawn meanwhile by another worker is seen
        twin = ledger.duplicate_of(trial.params, trial.number)
        if twin is not None:
            trial.set_user_attr(SKIPPED_ATTR, "duplicate")
            self.duplicates_in_a_row += 1
            raise optuna.TrialPruned(f"duplicate of trial {twin}")
        self.duplicates_in_a_row = 0
        self._check_budgets(trial, arch)
        self.storage.doing = f"evaluating trial {trial.number}"
        result = self.evaluator.evaluate(arch)
        self.storage.doing = f"saving the result of trial {trial.number}"
        self._record(trial, result)
        return float(result.accuracy), float(result.energy_mj)

    def _close_surplus(self, trial: optuna.Trial) -> None:
        """Close a trial the study no longer needs (PRUNED, never evaluated); a re-queued or
        enqueued candidate it carried goes back to the queue."""
        study = self.study
        frozen = storage_of(study).get_trial(trial_id(trial))
        fixed = frozen.system_attrs.get(FIXED_PARAMS_KEY)
        if frozen.params:  # a re-queued trial: keep its candidate for later
            _requeue(study, frozen)
        elif fixed:  # an enqueued trial (the baseline): enqueue it again
            study.enqueue_trial(fixed, user_attrs=dict(frozen.user_attrs))
        trial.set_user_attr(SKIPPED_ATTR, "surplus")
        raise optuna.TrialPruned("surplus: the study already has N trials done or running")

    def _check_budgets(self, trial: optuna.Trial, arch: Architecture) -> None:
        """Budgets as Optuna constraints, so that NSGA-II, TPE and GP learn them too. Optuna keeps
        the first value of a constraint, so each is set once: a breaker (never evaluated, this
        raises) with its pre-evaluation figures; an evaluated trial with its exact parameter
        count now and with its measured energy after the evaluation."""
        budgets = self.budgets.before_evaluation(arch)
        why = next((why for value, why in budgets.values() if value > 0), None)
        if why is not None:
            for name, (value, _) in budgets.items():
                trial.set_constraint(name, value)
            trial.set_user_attr(SKIPPED_ATTR, f"constraint: {why}")
            raise optuna.TrialPruned(why)
        if "max_params" in budgets:
            trial.set_constraint("max_params", budgets["max_params"][0])

    def _record(self, trial: optuna.Trial, result: SubnetResult) -> None:
        """What an evaluated trial records, in one storage transaction: its figures, what ran,
        and what re-pricing under another energy model needs (``study export --energy-model``);
        then the measured energy as a constraint, where the study has an energy budget."""
        self.storage.set_trial_attrs(
            trial_id(trial),
            user_attrs={
                NUM_PARAMS_ATTR: int(result.num_parameters),
                FIRING_RATE_ATTR: float(result.mean_firing_rate),
                SECONDS_ATTR: round(float(result.seconds), 4),
                CALIB_ATTR: int(result.calib_batches),
                EVAL_SAMPLES_ATTR: self.config.search.eval_samples,
                EVALUATION_ATTR: evaluation_settings(result),
                ANN_ENERGY_ATTR: float(result.report.ann_energy_mj),
            },
            system_attrs={ENERGY_MEASUREMENT_ATTR: result.report.measurement().to_json()},
        )
        measured = self.budgets.measured_energy(result.energy_mj)
        if measured is not None:  # the measured energy decides
            trial.set_constraint("max_energy_mj", measured)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_trial: Callable[[optuna.Study], None] | None = None) -> int:
        study, n = self.study, self.options.trials
        search = self.config.search
        poll = min(2.0, float(search.heartbeat_interval))
        done = 0
        silent_checked = False
        stale_checked = -math.inf  # a trial goes stale after grace_period: a look every poll
        while not self.stop.requested:
            self.storage.doing = "checking the study's progress"
            now = time.monotonic()
            # no missed beat is the outage's
            if now - stale_checked >= poll and self.storage.quiet_for(search.grace_period):
                stale_checked = now
                if not silent_checked:  # at start, and while the last trials run elsewhere
                    self._start_silent_trials_clocks()
                    silent_checked = True
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            self.ledger.refresh()
            if self._requeue_dead_here(self.ledger.running):
                continue  # their re-queued copies are evaluated first, as a rerun would
            complete, running = self.ledger.complete, len(self.ledger.running)
            if complete >= n:
                break
            if complete + running >= n:  # the last trials are running elsewhere: they may fail
                silent_checked = False
                if on_trial is not None:
                    on_trial(study)
                time.sleep(poll)
                continue
            done += self.run_trial() == TrialState.COMPLETE
            if self.duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
                why = (
                    "the space (within the budgets) has nothing left the study does not hold"
                    if search.sampler in DSPS_SAMPLERS  # they re-draw until they give up
                    else "it has converged on this space; 'dsps' and 'dsps-plus' never propose "
                    "an architecture the study holds"
                )
                raise SearchStalled(
                    f"{self.label}: the {search.sampler!r} sampler proposed "
                    f"{self.duplicates_in_a_row} {SearchStalled.MARK} ({self.ledger.complete} of "
                    f"{n} trials complete): {why}; the study keeps its trials (export them)"
                )
            if on_trial is not None:
                on_trial(study)
        return done

    def _requeue_dead_here(self, trials: list[FrozenTrial]) -> int:
        """Fail and re-queue the RUNNING trials whose process, on this machine, is gone (killed,
        out of memory), at once rather than after the grace period, so that a rerun right
        after a kill draws what the uninterrupted run drew; returns how many."""
        done = 0
        for trial in trials:
            label = trial.user_attrs.get(WORKER_ATTR)
            if trial.state != TrialState.RUNNING or not dead_here(label):
                continue
            try:
                failed = self.storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                failed = False  # another worker did it first
            if failed:
                _requeue(self.study, self.storage.get_trial(trial_id(trial)))
                print(
                    f"note: {self.label}: trial {trial.number} was left running by a process "
                    f"that is gone ({label}); re-queued",
                    file=sys.stderr,
                    flush=True,
                )
                done += 1
        return done

    def _start_silent_trials_clocks(self) -> None:
        """Give RUNNING trials that never beat a first heartbeat (``retrying_storage.py``), so that a
        trial whose worker lost the database before its first beat goes stale and is re-queued."""
        sid = study_id(self.study)
        self.storage.call("get_study_name_from_id", sid)  # waits out an outage first
        with contextlib.suppress(Exception):  # an outage right now: tried again next time
            start_silent_trials_clocks(self._rdb, sid)

    def run_trial(self) -> TrialState:
        """Ask for a trial, evaluate it under heartbeats, tell its result; returns its state.

        An interrupted trial (a second Ctrl-C) or one whose evaluation raised is told FAIL, the
        interrupted one re-queued; a trial left when the storage was lost stays RUNNING and is
        re-queued by the next worker after the grace period.
        """
        study = self.study
        self.storage.doing = "starting a trial"
        with warnings.catch_warnings():  # the heartbeats Optuna's warning asks for run below
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        self._current = trial.number
        self.storage.doing = f"preparing trial {trial.number}"
        values: tuple[float, float] | None = None
        with get_heartbeat_thread(trial_id(trial), self.storage):
            try:
                values = self._objective(trial)
                state = TrialState.COMPLETE
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except StorageOutage:
                raise
            except optuna.exceptions.UpdateFinishedTrialError:
                return self._failed_elsewhere(trial, "while it was being evaluated")
            except BaseException as exc:
                self._abandon(trial, requeue=isinstance(exc, KeyboardInterrupt) or disk_full(exc))
                raise
            self.storage.doing = f"saving the result of trial {trial.number}"
            return self._tell(trial, values, state)

    def _tell(
        self, trial: optuna.Trial, values: tuple[float, float] | None, state: TrialState
    ) -> TrialState:
        try:
            self.ledger.note(self.study.tell(trial, values, state=state))
        except ValueError:  # "Cannot tell a FAIL trial": failed as stale by another worker
            if storage_of(self.study).get_trial(trial_id(trial)).state != TrialState.FAIL:
                raise
            return self._failed_elsewhere(trial, "while its result waited for the storage")
        return state

    def _failed_elsewhere(self, trial: optuna.Trial, when: str) -> TrialState:
        """A trial another worker failed as stale (its heartbeats were late: a lost storage, or
        a machine so loaded that the heartbeat thread missed the grace period): one warning,
        and the search goes on; the re-queued copy is evaluated again."""
        print(
            f"warning: {self.label}: trial {trial.number} was failed as stale by another worker "
            f"{when}; its re-queued copy is evaluated again",
            file=sys.stderr,
            flush=True,
        )
        return TrialState.FAIL

    def _abandon(self, trial: optuna.Trial, *, requeue: bool) -> None:
        """Tell an unfinished trial FAIL (and re-queue its candidate), if the storage answers."""
        study = self.study
        with self.storage.single_attempts(), contextlib.suppress(Exception):
            study.tell(trial, state=TrialState.FAIL)
            frozen = storage_of(study).get_trial(trial_id(trial))
            if requeue and frozen.params:
                _requeue(study, frozen)
