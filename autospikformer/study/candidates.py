"""The candidates of the ranking check (``autospik study validate``): which trials, trained by
whom.

- **Which.** K complete trials: about half spread evenly along the Pareto front (by energy), the
  rest spread evenly over the accuracy ranks of the trials below it, so that the check tests the
  supernet's ranking, not only the front's (:func:`validation_candidates`). The choice depends on
  the study's trials only: a rerun on an unchanged study chooses the same ones.
- **Resumable.** A candidate whose record for the schedule is stored is done; one whose training
  was killed resumes from its checkpoint.
- **Workers.** With ``workers`` > 1, worker processes (spawned) share the candidates: each takes
  the next one not done and not being trained by another (its folder's lock), on the devices
  :func:`~autospikformer.study.workers.worker_devices` gives (round-robin over the GPUs) with a
  share of the CPU threads each (``--threads``, else ``OMP_NUM_THREADS``, else the cores split:
  :func:`~autospikformer.threads.worker_threads`), waiting passively like search workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from autospikformer.errors import error_line
from autospikformer.study.storage import DEFAULT_RUNS_DIR, StudyError, load_study, open_storage
from autospikformer.study.subnets import (
    SubnetBusy,
    subnet_evaluator,
    subnet_start,
    train_subnet,
)
from autospikformer.study.trained_subnets import SubnetSchedule, records_of
from autospikformer.threads import passive_waits, set_torch_threads, worker_threads
from autospikformer.units import energy_text

#: The fewest candidates a rank correlation is reported on.
MIN_CANDIDATES = 3


def _spread(items: list[Any], n: int) -> list[Any]:
    """``n`` of ``items`` at evenly spaced positions, both ends included (the middle for one)."""
    if n <= 0 or not items:
        return []
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[len(items) // 2]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def validation_candidates(study: optuna.Study, k: int) -> list[int]:
    """The trial numbers of the ``k`` candidates (see the module docstring), ascending."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values is not None
    ]
    if len(complete) < MIN_CANDIDATES:  # no --top could do: say what is missing
        raise StudyError(
            f"study {study.study_name!r} has {len(complete)} complete trials; the ranking check "
            f"needs at least {MIN_CANDIDATES}: run 'autospik study run {study.study_name}' first"
        )
    if k < MIN_CANDIDATES or k > len(complete):
        raise StudyError(
            f"--top: {k} is not allowed (allowed: {MIN_CANDIDATES} .. {len(complete)}, the "
            f"complete trials of study {study.study_name!r})"
        )
    front = sorted(study.best_trials, key=lambda t: (t.values[1], t.number))
    on_front = {t.number for t in front}
    below = sorted(
        (t for t in complete if t.number not in on_front),
        key=lambda t: (-t.values[0], t.values[1], t.number),
    )
    from_front = min(len(front), max(math.ceil(k / 2), k - len(below)))
    chosen = _spread(front, from_front) + _spread(below, k - from_front)
    return sorted(t.number for t in chosen)


@dataclass(frozen=True, kw_only=True)
class CandidateJob:
    """What every worker needs to train the candidates (picklable for spawned processes)."""

    storage_url: str
    study_name: str
    trials: tuple[int, ...]
    schedule: SubnetSchedule
    runs_dir: str = DEFAULT_RUNS_DIR
    supernet: str | None = None
    data_root: str | None = None
    device: str = "auto"
    progress: bool = True
    threads: int | None = None


def train_candidates(
    job: CandidateJob, *, say: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Train every candidate of ``job`` not done yet in this process; returns the records of
    those trained now. A candidate another process holds is left to it."""
    say = say or (lambda line: None)
    study, config = load_study(open_storage(job.storage_url, write=True), job.study_name)
    evaluator = None  # one for every candidate: the data (and supernet) loaded once
    trained = []
    for index, number in enumerate(job.trials, 1):
        if number in records_of(study, job.schedule.id):
            continue
        start = subnet_start(
            study, config, job.schedule, trial=number, runs_dir=job.runs_dir,
            supernet=job.supernet,
        )  # fmt: skip
        say(f"candidate {index}/{len(job.trials)}: trial {number}, {start.arch}")
        if evaluator is None:
            evaluator = subnet_evaluator(
                config, start, data_root=job.data_root, device=job.device, every_t=True
            )
        try:
            done = train_subnet(
                study, config, start, job.schedule, runs_dir=job.runs_dir,
                data_root=job.data_root, device=job.device, progress=job.progress, wait=False,
                evaluator=evaluator,
            )  # fmt: skip
        except SubnetBusy:
            say(
                f"candidate {index}/{len(job.trials)}: trial {number} is trained by another process"
            )
            continue
        if done.record is not None and done.trained_now:  # not: another worker just finished it
            trained.append(done.record)
            say(_result_line(done.record))
    return trained


def _result_line(record: dict[str, Any]) -> str:
    """A trained candidate in one line: its accuracy before and after, energy, time."""
    split = "validation" if record["eval_split"] == "val" else "test"
    start = record.get("start_accuracy")
    began = "" if start is None else f" (before training {100 * start:.2f} %)"
    return (
        f"  trial {record['trial']}: {split} accuracy {100 * record['accuracy']:.2f} %{began}, "
        f"energy {energy_text(record['energy_mj'])}, trained in {record['train_seconds']:.0f} s"
    )


def _worker(job: CandidateJob, index: int) -> None:
    """A spawned worker: its candidates, its error as one line on stderr (exit code 1)."""
    set_torch_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        train_candidates(job, say=lambda line: print(f"worker {index}: {line.strip()}", flush=True))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        line = error_line(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        print(f"error: worker {index}: {line}", file=sys.stderr, flush=True)
        sys.exit(1)


def run_candidates(
    job: CandidateJob, workers: int = 1, *, say: Callable[[str], None] | None = None
) -> None:
    """Train the candidates with ``workers`` processes (one: in this process); a failed worker
    is one StudyError line once the others are done (a rerun trains what is left)."""
    if workers <= 1:
        train_candidates(job, say=say)
        return
    import torch

    from autospikformer.device import resolve_device
    from autospikformer.study.workers import worker_devices

    resolve_device(job.device)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    passive_waits()  # the spawned workers' OpenMP reads it from the environment they inherit
    threads = worker_threads(job.threads, workers, os.cpu_count())
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for index, device in enumerate(worker_devices(job.device, workers, gpus)):
        mine = CandidateJob(**{**job.__dict__, "device": device, "threads": threads,
                               "progress": False})  # fmt: skip
        proc = ctx.Process(target=_worker, args=(mine, index), name=f"autospik-subnet-{index}")
        proc.start()
        procs.append(proc)
    for proc in procs:
        proc.join()
    failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise StudyError(
            f"{len(failed)} of {workers} workers stopped (worker {', '.join(map(str, failed))}; "
            "their lines above say why): run the command again to train the candidates left"
        )
