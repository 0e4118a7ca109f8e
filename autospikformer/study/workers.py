"""Stage 2 with several workers: worker processes spawned on this machine, one per GPU or a
share of the CPU threads each, watched until the study holds N complete trials.

- **A worker process that fails** reports its one-line error to the parent, which prints it as
  it happens (or names the signal that killed the worker); the command fails with one line for
  all stopped workers unless the others completed the study.
- With one worker the worker runs in this process (:class:`~autospikformer.study.worker.Worker`).
- ``--workers K`` spreads the workers round-robin over the visible GPUs (:func:`worker_devices`).
- **A worker process ends with the command** that started it: killed or not, once the command
  is gone its workers finish their current trial and start no other
  (:func:`autospikformer.processes.on_parent_exit`), so no orphan goes on searching alone.
- **What this command did** is counted from the trials its own processes completed (their
  ``autospik:worker`` label), not from the study's total: two commands sharing a study, or a
  rerun after a kill, each count their own (:attr:`RunOutcome.completed_here`).
- **Threads.** Each spawned worker runs torch on ``--threads`` threads, else ``OMP_NUM_THREADS``,
  else its share of the cores (:func:`~autospikformer.threads.worker_threads`); every worker
  inherits OpenMP's passive wait policy, set before any is started
  (:func:`~autospikformer.threads.passive_waits`). A single worker runs in this process with
  ``--threads`` or torch's choice.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.errors import error_line
from autospikformer.optuna_api import storage_of
from autospikformer.processes import on_parent_exit, process_label
from autospikformer.study.retrying_storage import RetryingStorage, outage_reason
from autospikformer.study.storage import (
    WORKER_ATTR,
    StudyError,
    describe_url,
    load_study,
    open_storage,
    trial_counts,
)
from autospikformer.study.worker import SearchStalled, StopFlag, Worker, WorkerOptions
from autospikformer.threads import passive_waits, set_torch_threads, worker_threads

__all__ = [
    "RunOutcome",
    "WorkerOptions",
    "completed_by",
    "run_workers",
    "spawned_options",
    "worker_devices",
]


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


def _worker_process(options: WorkerOptions, errors: Any = None) -> None:
    """Entry point of a spawned worker: an error becomes one line for the parent, exit code 1."""
    set_torch_threads(options.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stop = StopFlag()
    stop.install()

    def orphaned() -> None:
        if not stop.requested:
            print(
                f"worker {options.worker_index}: the command that started it is gone; stopping "
                "after the current trial",
                file=sys.stderr,
                flush=True,
            )
        stop.request()

    on_parent_exit(orphaned)
    try:
        Worker(options, stop=stop).run()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        line = error_line(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if not line.startswith(f"worker {options.worker_index}:"):
            line = f"worker {options.worker_index}: {line}"
        if errors is not None:
            errors.put(line)
        else:
            print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(1)


@dataclass
class RunOutcome:
    """How stage 2 ended: the study's complete trials of ``target``, and how many of them the
    workers of this run completed (``completed_here``; other commands' do not count)."""

    complete: int
    target: int
    interrupted: bool
    completed_here: int


def completed_by(trials: list[FrozenTrial], labels: set[str], since: datetime) -> int:
    """The COMPLETE trials that the processes named by ``labels`` (:func:`process_label`)
    started at ``since`` or later (a process id reused since an earlier run does not count)."""
    return sum(
        t.state == TrialState.COMPLETE
        and t.user_attrs.get(WORKER_ATTR) in labels
        and t.datetime_start is not None
        and t.datetime_start >= since
        for t in trials
    )


def run_workers(
    options: WorkerOptions,
    workers: int,
    *,
    on_poll: Callable[[optuna.Study], None] | None = None,
) -> RunOutcome:
    """Run ``workers`` worker processes (spawned) or, for one, the worker in this process.

    ``on_poll`` refreshes a display: after each trial (one worker) or every second (several);
    a refresh that meets a storage outage is skipped.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed progress poll says nothing
    storage = open_storage(options.storage_url)
    study, config = load_study(storage, options.study_name)
    since = datetime.now()  # Optuna's trial times are local and naive
    if on_poll is not None:  # the display starts where the study stands (a rerun: not at 0)
        on_poll(study)
    stop = StopFlag()
    stop.install()
    interrupted = False
    labels = {process_label()}
    try:
        if workers == 1:
            set_torch_threads(options.threads)
            try:
                Worker(options, stop=stop).run(on_trial=on_poll)
            except KeyboardInterrupt:
                interrupted = True
            interrupted = interrupted or stop.requested
        else:
            interrupted, failures, printed, labels = _run_processes(
                options, workers, study, stop, on_poll
            )
            if failures and not interrupted:
                _settle_failures(study, options.trials, workers, failures, printed)
    finally:
        stop.restore()
    retrying = RetryingStorage(
        optuna.storages.get_storage(storage),
        max_outage=config.search.max_outage,
        label="autospik",
        url=describe_url(options.storage_url),
    )
    trials = optuna.load_study(study_name=options.study_name, storage=retrying).get_trials(
        deepcopy=False
    )
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return RunOutcome(
        complete,
        options.trials,
        interrupted and complete < options.trials,
        completed_by(trials, labels, since),
    )


def _settle_failures(
    study: optuna.Study, n: int, workers: int, failures: list[str], printed: set[str]
) -> None:
    """Raise a StudyError naming the failed workers, unless the others completed the study
    (then the failures not printed yet become warnings)."""
    try:
        complete: int | None = trial_counts(study).get("COMPLETE", 0)
    except Exception:  # the storage is down (the workers' own lines say so)
        complete = None
    if complete is None or complete < n:
        held = "" if complete is None else f"; {complete} of {n} trials complete"
        advice = (
            "a rerun would stall the same way"  # their sampler has nothing new to propose
            if all(SearchStalled.MARK in line for line in failures)
            else "run the command again to continue the study"
        )
        raise StudyError(
            f"{len(failures)} of {workers} workers stopped ({'; '.join(failures)}){held}: {advice}"
        )
    for line in failures:
        if line not in printed:
            print(f"warning: {line}; the other workers completed the study", file=sys.stderr)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (its trial is re-queued after the study's grace period)"
    return f"exited with code {code} without an error message"


def spawned_options(options: WorkerOptions, workers: int) -> list[WorkerOptions]:
    """Each spawned worker's options: its index, its threads (:func:`worker_threads`), its
    device (:func:`worker_devices`; a bad device name or a missing GPU fails here, before any
    spawn) and how many workers share that device (they split its feature memory)."""
    from autospikformer.device import resolve_device

    resolve_device(options.device)
    threads = worker_threads(options.threads, workers, os.cpu_count())
    devices = worker_devices(options.device, workers, _visible_gpus())
    return [
        WorkerOptions(
            **{
                **options.__dict__,
                "worker_index": i,
                "threads": threads,
                "device": devices[i],
                "sharing": devices.count(devices[i]),
            }
        )
        for i in range(workers)
    ]


def _run_processes(
    options: WorkerOptions,
    workers: int,
    study: optuna.Study,
    stop: StopFlag,
    on_poll: Callable[[optuna.Study], None] | None,
) -> tuple[bool, list[str], set[str], set[str]]:
    """Spawn the workers and wait for them; returns whether the run was interrupted, one line
    per failed worker, those of the lines already printed (as a warning, at once, while
    other workers went on), and the workers' process labels."""
    passive_waits()  # inherited by every worker before its torch loads
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = []
    for index, opts in enumerate(spawned_options(options, workers)):
        proc = ctx.Process(
            target=_worker_process, args=(opts, errors), name=f"autospik-worker-{index}"
        )
        proc.start()
        procs.append(proc)
    reported: dict[int, str] = {}
    printed: set[str] = set()

    def report() -> None:
        """Print a failure at once while other workers go on (the last one ends the command)."""
        lines = []
        while not errors.empty():
            line = errors.get()
            reported[int(line.split(":", 1)[0].split()[-1])] = line
            lines.append(line)
        for index, proc in enumerate(procs):
            if proc.exitcode not in (None, 0, 1, 130) and index not in reported:
                reported[index] = f"worker {index} {_exit_reason(proc.exitcode)}"
                lines.append(reported[index])
        if any(p.is_alive() for p in procs):
            for line in lines:
                print(f"warning: {line}", file=sys.stderr, flush=True)
                printed.add(line)

    def poll() -> None:
        if on_poll is None:
            return
        try:
            on_poll(study)
        except Exception as exc:
            if outage_reason(exc) is None:
                raise
            with contextlib.suppress(Exception):  # a fresh session for the next refresh
                storage_of(study).remove_session()

    interrupted = False
    try:
        while any(p.is_alive() for p in procs):
            poll()
            for p in procs:
                p.join(timeout=1.0 / workers)
            report()
    except KeyboardInterrupt:  # a second Ctrl-C: the workers abandon their trials too
        interrupted = True
        for p in procs:
            p.join()
    interrupted = interrupted or stop.requested
    report()
    poll()
    failed = [i for i, p in enumerate(procs) if p.exitcode not in (0, 130)]
    for index in failed:
        reported.setdefault(index, f"worker {index} {_exit_reason(procs[index].exitcode)}")
    labels = {process_label(p.pid) for p in procs if p.pid is not None}
    return interrupted, [reported[i] for i in failed], printed, labels
