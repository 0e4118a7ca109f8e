"""A whole study run, as ``autospik study run`` does it, from Python: register the study, train its
supernet if missing (stage 1), search until N trials are complete (stage 2), measure the front
on the test split under the validation protocol, export.

    from autospikformer.pipeline import run_study

    result = run_study("digits", trials=200)
    print(result.export.summary["front_size"], result.export.paths["pareto.html"])

The CLI presents what this returns; ``say`` receives the same progress lines the CLI prints, and
``watch`` wraps the search (the CLI's progress bar).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autospikformer.errors import AutospikError
from autospikformer.optuna_api import storage_of
from autospikformer.processes import folder_lock
from autospikformer.report.export import StudyExport, export_study
from autospikformer.study.config import StudyConfig
from autospikformer.study.data_record import record_study_data
from autospikformer.study.holdout import measure_front_on_test
from autospikformer.study.preflight import check_run_inputs
from autospikformer.study.retrying_storage import RetryingStorage
from autospikformer.study.run_folder import claim_run_folder, release_run_folder
from autospikformer.study.storage import (
    DEFAULT_RUNS_DIR,
    DEFAULT_STORAGE,
    describe_url,
    resolve_study,
    sqlite_path,
    withdraw_study,
)
from autospikformer.study.supernet_stage import prepare_supernet
from autospikformer.study.workers import RunOutcome, WorkerOptions, run_workers

#: ``watch(config, target)``: a context manager around the search that yields the function
#: called with the study after each trial (or every second with several workers).
Watch = Callable[[StudyConfig, int], AbstractContextManager[Callable[[optuna.Study], None]]]


@dataclass
class StudyRun:
    """What :func:`run_study` did: the study, its supernet, the search's outcome and the rest."""

    study: optuna.Study
    config: StudyConfig
    registered: bool  # the study was registered by this run
    checkpoint: Path
    outcome: RunOutcome
    search_seconds: float
    total_seconds: float
    measured: list[dict[str, Any]] = field(default_factory=list)  # the front's test pass
    export: StudyExport | None = None

    @property
    def interrupted(self) -> bool:
        return self.outcome.interrupted


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@contextlib.contextmanager
def _no_watch(config: StudyConfig, target: int) -> Iterator[None]:
    yield None


def run_study(
    target: str,
    *,
    trials: int | None = None,
    storage: str = DEFAULT_STORAGE,
    workers: int = 1,
    device: str = "auto",
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    supernet: str | Path | None = None,
    data_root: str | None = None,
    export: bool = True,
    say: Callable[[str], None] | None = None,
    watch: Watch | None = None,
    threads: int | None = None,
) -> StudyRun:
    """Run study ``target`` (a name in ``storage``, a study file or a preset) to ``trials``
    complete trials (default: its ``search.trials``); see the module docstring.

    Every input (device, data, supernet, storage) is checked before the study is registered, and
    a study registered here is withdrawn when stage 1 fails. An interrupted search (Ctrl-C)
    returns with ``interrupted`` set and nothing after the search done. ``threads``: torch's CPU
    threads of each search worker (default: a single worker keeps this process's, spawned
    workers split the cores, ``study/workers.py``).
    """
    say = say or (lambda line: None)
    runs_dir = Path(runs_dir)
    started = time.monotonic()
    check = functools.partial(
        check_run_inputs, device=device, data_root=data_root, checkpoint=supernet,
        runs_dir=runs_dir, storage=storage, writes_runs=supernet is None or export,
    )  # fmt: skip
    db_file = sqlite_path(storage)
    new_file = db_file if db_file is not None and not db_file.is_file() else None
    study, config, created = resolve_study(target, storage, create=True, check=check)
    n = trials or config.search.trials
    if created:
        say(f"registered study {config.name} in the storage")
    say(f"stage 1: supernet of study {config.name} ({config.space.name}, {config.dataset})")
    config, checkpoint = _stage_one(
        study, config, created=created, new_file=new_file, storage=storage, runs_dir=runs_dir,
        supernet=supernet, data_root=data_root, device=device,
    )  # fmt: skip
    say(f"supernet: {checkpoint} ({format_seconds(time.monotonic() - started)} so far)")
    say(
        f"stage 2: {config.search.sampler} search to {n} complete trials, "
        f"{workers} worker{'s' if workers > 1 else ''}"
    )
    options = WorkerOptions(
        storage_url=storage,
        study_name=config.name,
        trials=n,
        checkpoint=str(checkpoint),
        device=device,
        data_root=data_root,
        threads=threads,
    )
    search_started = time.monotonic()
    with (watch or _no_watch)(config, n) as on_poll:
        outcome = run_workers(options, workers, on_poll=on_poll)
    result = StudyRun(
        study, config, created, Path(checkpoint), outcome,
        time.monotonic() - search_started, 0.0,
    )  # fmt: skip
    result.total_seconds = time.monotonic() - started
    if outcome.interrupted:
        return result
    say(
        f"study {config.name}: {outcome.complete} complete trials ({outcome.completed_here} in "
        f"this run, search {format_seconds(result.search_seconds)}, total "
        f"{format_seconds(result.total_seconds)})"
    )
    _after_search(result, storage, runs_dir, data_root, device, export, say)
    return result


def _riding_out(study: optuna.Study, config: StudyConfig, url: str) -> RetryingStorage:
    """The study's storage for the steps after the search, riding out an outage as the workers'
    does (``search.max_outage``); the returned storage's ``doing`` names the step."""
    return RetryingStorage(
        storage_of(study),
        max_outage=config.search.max_outage,
        label="autospik",
        url=describe_url(url),
    )


@contextlib.contextmanager
def _one_at_a_time(folder: Path) -> Iterator[None]:
    """The after-search steps of one study, one command at a time on this machine (a lock on
    its runs folder; a folder made only for the lock goes again)."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(folder):
            yield
    finally:
        if made:
            with contextlib.suppress(OSError):  # not empty: the export is there
                folder.rmdir()


def _stage_one(
    study: optuna.Study,
    config: StudyConfig,
    *,
    created: bool,
    new_file: Path | None,
    storage: str,
    runs_dir: Path,
    supernet: str | Path | None,
    data_root: str | None,
    device: str,
) -> tuple[StudyConfig, Path]:
    """Claim the study's runs folder, record its data and train (or check) its supernet; a
    study registered by this run (``created``) is withdrawn again when this fails."""
    claimed: list[Path] = []
    try:
        claimed = claim_run_folder(runs_dir / config.name, study, storage)
        config = record_study_data(study, config, data_root=data_root, progress=True)
        checkpoint = prepare_supernet(
            study,
            config,
            runs_dir=runs_dir,
            checkpoint=supernet,
            data_root=data_root,
            device=device,
        )
    except AutospikError:  # a study registered just now and never used goes again
        if created and withdraw_study(study, created_file=new_file):
            release_run_folder(claimed)
        raise
    return config, Path(checkpoint)


def _after_search(
    result: StudyRun, url: str, runs_dir: Path, data_root: str | None, device: str,
    export: bool, say: Callable[[str], None],
) -> None:  # fmt: skip
    """The front's test pass (under ``eval_split = "val"``) and the export, through a storage
    that rides out an outage. Several commands on one study each do them, in turn on one
    machine: the second finds the front measured (measuring is once per member) and writes
    the same export, which replaces the first one as a whole."""
    config = result.config
    if config.search.eval_split != "val" and not export:
        return
    storage = _riding_out(result.study, config, url)
    study = optuna.load_study(study_name=config.name, storage=storage)
    with _one_at_a_time(runs_dir / config.name):
        if config.search.eval_split == "val":
            storage.doing = "measuring the front on the test split"
            result.measured = measure_front_on_test(
                study, config, result.checkpoint, data_root=data_root, device=device
            )
            if result.measured:
                plural = "s" if len(result.measured) > 1 else ""
                say(
                    f"test split: {len(result.measured)} new front member{plural} measured once "
                    f"on {result.measured[0]['samples']} test images (candidates were ranked on "
                    f"the validation split, {config.val_fraction:g} of the training split)"
                )
        if export:
            storage.doing = "exporting the study"
            result.export = export_study(
                study, runs_dir / config.name / "export", option="--runs-dir"
            )
