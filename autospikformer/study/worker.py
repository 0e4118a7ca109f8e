"""Stage 2 of a study: search workers, in this process or spawned, until N trials are complete.

Design choices (``docs/studies.md`` explains them to users):

- **A worker needs only the study name and the storage URL**: the study holds its whole
  configuration (``study/storage.py``) and the supernet is pinned by stage 1 (``stage1.py``).
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
- **Heartbeats.** Workers beat every ``search.heartbeat_interval`` seconds; a RUNNING trial silent
  for ``search.grace_period`` seconds (its worker was killed) is marked FAIL by the next worker
  that starts a trial and re-queued (WAITING, same parameters) by Optuna's
  ``RetryHeartbeatStaleTrialCallback``; the next free worker evaluates it.
- **Ctrl-C** asks every worker to stop after its current trial; a second Ctrl-C abandons the
  current trial, which is marked FAIL and re-queued the same way. A rerun continues to N.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.data.base import dataset_info
from autospikformer.energy.layers import count_parameters
from autospikformer.energy.report import estimate_energy_mj
from autospikformer.search.architecture import Architecture
from autospikformer.search.samplers import make_sampler
from autospikformer.search.suggest import suggest_architecture
from autospikformer.study.holdout import check_study_holdout, check_supernet_holdout
from autospikformer.study.storage import (
    ANN_ENERGY_ATTR,
    ARCH_JSON_ATTR,
    CALIB_ATTR,
    ENERGY_RECORD_ATTR,
    EVAL_SAMPLES_ATTR,
    EVALUATION_ATTR,
    FIRING_RATE_ATTR,
    NUM_PARAMS_ATTR,
    SECONDS_ATTR,
    SKIPPED_ATTR,
    WORKER_ATTR,
    StudyError,
    load_study,
    open_storage,
    trial_counts,
)
from autospikformer.study.subnet import study_evaluator
from autospikformer.training.evaluate import SubnetResult


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
    threads: int | None = None


def evaluation_record(result: SubnetResult) -> dict[str, Any]:
    """What a trial's evaluation ran (:data:`EVALUATION_ATTR`): images, batch sizes, precision,
    device."""
    return {
        "calib_images": int(result.calib_images),
        "calib_batch_size": int(result.calib_batch_size),
        "eval_images": int(result.samples),
        "eval_batch_size": int(result.eval_batch_size),
        "precision": result.precision,
        "device": result.device,
    }


def worker_devices(device: str, workers: int, gpus: int) -> list[str]:
    """The device of each of ``workers`` local workers, with ``gpus`` visible CUDA devices.

    ``auto`` and ``cuda`` spread the workers round-robin over the GPUs (``cuda:0``, ``cuda:1``,
    ..., ``cuda:0``, ...); a device with an index (``cuda:1``) or ``cpu`` is shared by all, and
    ``auto`` without a GPU is the CPU.
    """
    if device in ("auto", "cuda") and gpus > 0:
        return [f"cuda:{i % gpus}" for i in range(workers)]
    return ["cpu" if device == "auto" else device] * workers


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class _StopFlag:
    """First SIGINT/SIGTERM: stop after the current trial; second: abandon the current trial."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

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


def _counts(trials: list[FrozenTrial]) -> tuple[int, int]:
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return complete, running


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

    def __init__(self, options: WorkerOptions, *, stop: _StopFlag | None = None) -> None:
        self.options = options
        self.stop = stop or _StopFlag()
        probe = open_storage(options.storage_url)
        _, config = load_study(probe, options.study_name)
        self.config = config
        search = config.search
        self.storage = open_storage(
            options.storage_url,
            heartbeat_interval=search.heartbeat_interval,
            grace_period=search.grace_period,
        )
        info = dataset_info(config.dataset)
        shape = {
            "in_channels": info.in_channels,
            "img_size": info.img_size,
            "num_classes": info.num_classes,
        }

        def reject(arch: Architecture) -> str | None:
            """Why ``arch`` breaks a budget (checked before evaluation), or None."""
            if search.max_params is not None:
                params = count_parameters(arch, **shape, variant=info.variant)
                if params > search.max_params:
                    return f"{params} parameters > max_params {search.max_params}"
            if search.max_energy_mj is not None:
                energy = estimate_energy_mj(
                    arch,
                    rate=search.energy_rate,
                    event_data=info.event_based,
                    model=config.energy,
                    **shape,
                )
                if energy > search.max_energy_mj:
                    return (
                        f"estimated {energy:.4g} mJ at rate {search.energy_rate} > "
                        f"max_energy_mj {search.max_energy_mj}"
                    )
            return None

        self.reject = reject
        study0 = optuna.load_study(study_name=options.study_name, storage=self.storage)
        seed = config.seed + options.worker_index + 7919 * len(study0.get_trials(deepcopy=False))
        sampler_options = dict(search.options)
        if search.sampler == "dsps":
            sampler_options["alpha"] = search.alpha
            if search.max_params is not None or search.max_energy_mj is not None:
                sampler_options["feasible"] = lambda arch: reject(arch) is None
        sampler = make_sampler(search.sampler, space=config.space, seed=seed, **sampler_options)
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
        )
        if config.holdout is not None:  # every worker ranks on the split the study recorded
            record = self.evaluator.holdout_record(int(config.space.choices["time_steps"][0]))
            check_study_holdout(self.study, record)
            check_supernet_holdout(supernet_meta, config, options.checkpoint, record)
        self.label = f"{socket.gethostname()}:{os.getpid()}"
        self._current: int | None = None

    # -- one trial ---------------------------------------------------------------------------
    def _objective(self, trial: optuna.Trial) -> tuple[float, float]:
        self._current = trial.number
        study, n = self.study, self.options.trials
        others = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        complete = sum(t.state == TrialState.COMPLETE for t in others)
        ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in others)
        if complete + ahead >= n:
            frozen = study._storage.get_trial(trial._trial_id)
            fixed = frozen.system_attrs.get("fixed_params")
            if frozen.params:  # a re-queued trial: keep its candidate for later
                _requeue(study, frozen)
            elif fixed:  # an enqueued trial (the baseline): enqueue it again
                study.enqueue_trial(fixed, user_attrs=dict(frozen.user_attrs))
            trial.set_user_attr(SKIPPED_ATTR, "surplus")
            raise optuna.TrialPruned("surplus: the study already has N trials done or running")

        arch = suggest_architecture(trial, self.config.space)
        trial.set_user_attr(ARCH_JSON_ATTR, arch.to_dict())
        trial.set_user_attr(WORKER_ATTR, self.label)
        for other in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)
        ):
            if other.number != trial.number and other.params == trial.params:
                trial.set_user_attr(SKIPPED_ATTR, "duplicate")
                raise optuna.TrialPruned(f"duplicate of trial {other.number}")
        why = self.reject(arch)
        if why is not None:
            trial.set_user_attr(SKIPPED_ATTR, f"constraint: {why}")
            raise optuna.TrialPruned(why)

        result = self.evaluator.evaluate(arch)
        trial.set_user_attr(NUM_PARAMS_ATTR, int(result.num_parameters))
        trial.set_user_attr(FIRING_RATE_ATTR, float(result.mean_firing_rate))
        trial.set_user_attr(SECONDS_ATTR, round(float(result.seconds), 4))
        trial.set_user_attr(CALIB_ATTR, int(result.calib_batches))
        trial.set_user_attr(EVAL_SAMPLES_ATTR, self.config.search.eval_samples)
        trial.set_user_attr(EVALUATION_ATTR, evaluation_record(result))
        trial.set_user_attr(ANN_ENERGY_ATTR, float(result.report.ann_energy_mj))
        # what re-pricing under another energy model needs (autospik study export --energy-model)
        study._storage.set_trial_system_attr(
            trial._trial_id, ENERGY_RECORD_ATTR, result.report.record().to_json()
        )
        return float(result.accuracy), float(result.energy_mj)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, on_trial: Callable[[optuna.Study], None] | None = None) -> int:
        study, n = self.study, self.options.trials
        poll = min(2.0, float(self.config.search.heartbeat_interval))
        done = 0
        while not self.stop.requested:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            complete, running = _counts(
                study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            )
            if complete >= n:
                break
            if complete + running >= n:  # the last trials are running elsewhere: they may fail
                if on_trial is not None:
                    on_trial(study)
                time.sleep(poll)
                continue
            self._current = None
            try:
                study.optimize(self._objective, n_trials=1)
            except KeyboardInterrupt:
                if self._current is not None:
                    frozen = study.get_trials(deepcopy=False)
                    mine = [t for t in frozen if t.number == self._current]
                    if mine and mine[0].state == TrialState.FAIL and mine[0].params:
                        _requeue(study, mine[0])
                raise
            if self._current is not None:
                last = [t for t in study.get_trials(deepcopy=False) if t.number == self._current]
                done += bool(last and last[0].state == TrialState.COMPLETE)
            if on_trial is not None:
                on_trial(study)
        return done


def _worker_process(options: WorkerOptions) -> None:
    """Entry point of a spawned worker: errors become one line on stderr and exit code 1."""
    import sys

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stop = _StopFlag()
    stop.install()
    try:
        Worker(options, stop=stop).run()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        message = " ".join(str(exc).split())
        print(
            f"error: worker {options.worker_index}: {type(exc).__name__}: {message}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


# --- stage 2: many workers ---------------------------------------------------------------------
@dataclass
class RunOutcome:
    complete: int
    target: int
    interrupted: bool
    completed_here: int


def run_workers(
    options: WorkerOptions,
    workers: int,
    *,
    on_poll: Callable[[optuna.Study], None] | None = None,
) -> RunOutcome:
    """Run ``workers`` worker processes (spawned) or, for one, the worker in this process.

    ``on_poll`` refreshes a display: after each trial (one worker) or every second (several).
    """
    storage = open_storage(options.storage_url)
    study, _ = load_study(storage, options.study_name)
    before = trial_counts(study).get("COMPLETE", 0)
    stop = _StopFlag()
    stop.install()
    interrupted = False
    try:
        if workers == 1:
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            try:
                Worker(options, stop=stop).run(on_trial=on_poll)
            except KeyboardInterrupt:
                interrupted = True
            interrupted = interrupted or stop.requested
        else:
            interrupted = _run_processes(options, workers, study, stop, on_poll)
    finally:
        stop.restore()
    complete = trial_counts(study).get("COMPLETE", 0)
    return RunOutcome(
        complete, options.trials, interrupted and complete < options.trials, complete - before
    )


def spawned_options(options: WorkerOptions, workers: int) -> list[WorkerOptions]:
    """Each spawned worker's options: its index, its share of the CPU threads and its device
    (:func:`worker_devices`; a bad device name or a missing GPU fails here, before any spawn)."""
    from autospikformer.device import resolve_device

    resolve_device(options.device)
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = worker_devices(options.device, workers, _visible_gpus())
    return [
        WorkerOptions(
            **{**options.__dict__, "worker_index": i, "threads": threads, "device": devices[i]}
        )
        for i in range(workers)
    ]


def _run_processes(
    options: WorkerOptions,
    workers: int,
    study: optuna.Study,
    stop: _StopFlag,
    on_poll: Callable[[optuna.Study], None] | None,
) -> bool:
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for index, opts in enumerate(spawned_options(options, workers)):
        proc = ctx.Process(target=_worker_process, args=(opts,), name=f"autospik-worker-{index}")
        proc.start()
        procs.append(proc)
    interrupted = False
    try:
        while any(p.is_alive() for p in procs):
            if on_poll is not None:
                on_poll(study)
            for p in procs:
                p.join(timeout=1.0 / workers)
    except KeyboardInterrupt:  # a second Ctrl-C: the workers abandon their trials too
        interrupted = True
        for p in procs:
            p.join()
    interrupted = interrupted or stop.requested
    if on_poll is not None:
        on_poll(study)
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode not in (0, 130)]
    if failed and not interrupted:
        index, code = failed[0]
        raise StudyError(
            f"worker {index} exited with code {code} (its error is printed above); "
            f"{len(failed)} of {workers} workers failed"
        )
    return interrupted
