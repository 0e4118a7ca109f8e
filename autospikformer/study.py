"""Studies in an Optuna RDB storage: create them, train their supernet, run search workers.

Design choices (``docs/studies.md`` explains them to users):

- **The study holds its whole configuration** (user attribute ``autospik:config``, the resolved
  :meth:`StudyConfig.to_dict`), so a worker needs only the study name and the storage URL.
- **One supernet per study** at ``<runs-dir>/<study>/supernet.pt``. Stage 1 trains it under a
  file lock, so several invocations on one machine train it once. The first worker records the
  checkpoint's SHA-256 in the study (``autospik:supernet``); a worker whose checkpoint differs
  (another machine that trained its own) is refused, because its accuracies would not be
  comparable.
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

import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.architecture import Architecture, spikformer_4_384
from autospikformer.search import (
    FIRING_RATE_ATTR,
    NUM_PARAMS_ATTR,
    SPACE_ATTR,
    architecture_from_params,
    architecture_params,
    make_sampler,
    suggest_architecture,
)
from autospikformer.study_config import StudyConfig, StudyConfigError

DEFAULT_STORAGE = "sqlite:///autospik.db"
DEFAULT_RUNS_DIR = "runs"
METRIC_NAMES = ("accuracy", "energy_mj")
DIRECTIONS = ("maximize", "minimize")

CONFIG_ATTR = "autospik:config"  # study: the resolved StudyConfig.to_dict()
SUPERNET_ATTR = "autospik:supernet"  # study: {"sha256": ..., "host": ..., "path": ...}
BASELINE_ATTR = "autospik:baseline"  # trial: name of the hand-designed Spikformer it is
ARCH_JSON_ATTR = "autospik:architecture_json"  # trial: Architecture.to_dict()
SECONDS_ATTR = "autospik:seconds"  # trial: wall time of the evaluation pass
CALIB_ATTR = "autospik:calib_batches"  # trial: BN-recalibration batches used
EVAL_SAMPLES_ATTR = "autospik:eval_samples"  # trial: evaluation subset size (None: all)
WORKER_ATTR = "autospik:worker"  # trial: host:pid that evaluated it
SKIPPED_ATTR = "autospik:skipped"  # trial: why a PRUNED trial was not evaluated


class StudyError(RuntimeError):
    """A study that cannot be created, opened or run as asked; the message is one line."""


# --- storage ------------------------------------------------------------------------------------
def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other back ends and ``:memory:``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_storage(
    url: str,
    *,
    create: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> optuna.storages.RDBStorage:
    """Open (``create``: or start) the RDB storage at ``url``; any failure is one StudyError line.

    A SQLite file that does not exist is not created unless ``create`` is set, so a mistyped
    study name or path never leaves an empty database behind. SQLite waits up to 60 s for a lock
    (several workers share one file); PostgreSQL connections are checked before use, so a
    worker survives a database restart between trials.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    shown = describe_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(
            f"storage URL {url!r} is not an SQLAlchemy URL (e.g. sqlite:///autospik.db or "
            "postgresql+psycopg2://user:password@host:5432/db)"
        ) from None
    path = _sqlite_path(url)
    if path is not None:
        if not create and not path.is_file():
            raise StudyError(
                f"no study storage at {path} (storage {shown}); create a study first with "
                "'autospik study create STUDY_FILE' or pass --storage"
            )
        if create and not path.parent.is_dir():
            raise StudyError(f"cannot create storage {shown}: folder {path.parent} does not exist")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if parsed.drivername.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs: dict[str, Any] = {}
            if heartbeat_interval is not None:
                kwargs = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period,
                    "heartbeat_stale_trial_callback": (
                        optuna.storages.RetryHeartbeatStaleTrialCallback()
                    ),
                }
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError, OSError, RuntimeError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StudyError(f"cannot open storage {shown}: {reason[:300]}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> tuple[optuna.Study, StudyConfig]:
    """The study ``name`` and its stored configuration; a clear error when it is not there."""
    names = study_names(storage)
    if name not in names:
        there = ", ".join(names) if names else "none"
        raise StudyError(f"no study named {name!r} in this storage (studies there: {there})")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    data = study.user_attrs.get(CONFIG_ATTR)
    if data is None:
        raise StudyError(f"study {name!r} was not created by autospik (it has no {CONFIG_ATTR})")
    try:
        config = StudyConfig.from_dict(data)
    except StudyConfigError as exc:
        raise StudyError(f"study {name!r} holds an unusable configuration: {exc}") from None
    return study, config


#: The hand-designed Spikformers of Zhou et al. (threshold 1, tau 2): the CIFAR model and the
#: DVS model (2 blocks, E 256, 16 heads, T 16).
BASELINES: dict[str, Architecture] = {
    "Spikformer-4-384": spikformer_4_384(),
    "Spikformer-2-256": Architecture.uniform(
        depth=2, embed_dim=256, mlp_ratio=4.0, num_heads=16, time_steps=16
    ),
}


def baseline_architecture(config: StudyConfig) -> tuple[str, Architecture] | None:
    """The first hand-designed Spikformer that the study's space contains, with its name."""
    for name, arch in BASELINES.items():
        if config.space.contains(arch):
            return name, arch
    return None


def create_study(
    storage: optuna.storages.BaseStorage, config: StudyConfig
) -> tuple[optuna.Study, bool]:
    """Register ``config`` as a new study; returns ``(study, created)``.

    An existing study with the same configuration is returned unchanged (``created`` False); one
    with a different configuration is refused, naming the fields that differ. The baseline
    Spikformer (4-384, or 2-256 for DVS) is enqueued as the first trial when ``search.baseline``
    is on and the space contains it.
    """
    if config.name in study_names(storage):
        study, existing = load_study(storage, config.name)
        diff = existing.differences(config)
        if diff:
            raise StudyError(
                f"study {config.name!r} already exists with a different configuration "
                f"(differs in: {', '.join(diff)}); give the study another [study] name"
            )
        return study, False
    try:
        study = optuna.create_study(
            study_name=config.name, storage=storage, directions=list(DIRECTIONS)
        )
    except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
        return create_study(storage, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr(SPACE_ATTR, config.space.to_json())
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    baseline = baseline_architecture(config)
    if config.search.baseline and baseline is not None:
        label, arch = baseline
        study.enqueue_trial(architecture_params(arch), user_attrs={BASELINE_ATTR: label})
    return study, True


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (``COMPLETE``, ``RUNNING``...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


# --- stage 1: the supernet ----------------------------------------------------------------------
def supernet_path(config: StudyConfig, runs_dir: str | Path) -> Path:
    return Path(runs_dir) / config.name / "supernet.pt"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held while the block runs (several local invocations train once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_supernet(
    study: optuna.Study,
    config: StudyConfig,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    checkpoint: str | Path | None = None,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Stage 1: the study's trained supernet, training (or resuming) it when it is missing.

    An explicit ``checkpoint`` is used as is (never trained). Training is refused when the study
    already recorded a supernet: a second machine must use the first one's checkpoint. The
    checkpoint is checked against the study's space and its digest against the recorded one.
    """
    from autospikformer.train import load_supernet, train_supernet

    recorded = study.user_attrs.get(SUPERNET_ATTR)
    path = Path(checkpoint) if checkpoint is not None else supernet_path(config, runs_dir)
    if checkpoint is not None and not path.is_file():
        raise StudyError(f"--supernet {path}: no such file")
    if checkpoint is None:
        with _file_lock(path.parent / "supernet.lock"):
            if recorded is not None and not path.is_file():
                raise StudyError(
                    f"study {config.name!r} was searched with a supernet trained on "
                    f"{recorded.get('host', '?')} ({recorded.get('path', '?')}), missing here at "
                    f"{path}: copy that file here, or pass --supernet or --runs-dir"
                )
            path = train_supernet(
                space=config.space,
                dataset=config.dataset,
                data_root=data_root or config.data_root,
                out_dir=path.parent,
                config=config.train,
                device=device,
                resume=True,
                progress=progress,
            )
    try:
        load_supernet(path, space=config.space)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        raise StudyError(f"{path}: {' '.join(str(exc).split())}") from None
    digest = file_sha256(path)
    if recorded is None:
        study.set_user_attr(
            SUPERNET_ATTR,
            {"sha256": digest, "host": socket.gethostname(), "path": str(path.resolve())},
        )
    elif recorded.get("sha256") != digest:
        raise StudyError(
            f"{path} is not the supernet study {config.name!r} was searched with (sha256 "
            f"{digest[:12]} here, {str(recorded.get('sha256'))[:12]} recorded, from "
            f"{recorded.get('host', '?')}:{recorded.get('path', '?')})"
        )
    return path


# --- stage 2: one worker ------------------------------------------------------------------------
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
        from autospikformer.data import dataset_info
        from autospikformer.energy import count_parameters, estimate_energy_mj
        from autospikformer.evaluate import SubnetEvaluator
        from autospikformer.train import load_supernet

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
                params = count_parameters(arch, **shape)
                if params > search.max_params:
                    return f"{params} parameters > max_params {search.max_params}"
            if search.max_energy_mj is not None:
                energy = estimate_energy_mj(arch, rate=search.energy_rate, **shape)
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
        supernet = load_supernet(options.checkpoint, space=config.space)
        self.evaluator = SubnetEvaluator(
            supernet,
            dataset=config.dataset,
            data_root=options.data_root or config.data_root,
            calib_batches=search.calib_batches,
            batch_size=search.batch_size,
            eval_samples=search.eval_samples,
            device=options.device,
            seed=config.seed,
        )
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
        trial.set_user_attr(CALIB_ATTR, self.config.search.calib_batches)
        trial.set_user_attr(EVAL_SAMPLES_ATTR, self.config.search.eval_samples)
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


def _run_processes(
    options: WorkerOptions,
    workers: int,
    study: optuna.Study,
    stop: _StopFlag,
    on_poll: Callable[[optuna.Study], None] | None,
) -> bool:
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = []
    for index in range(workers):
        opts = WorkerOptions(**{**options.__dict__, "worker_index": index, "threads": threads})
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


def architecture_of(trial: FrozenTrial) -> Architecture:
    """The architecture a trial evaluated (from its parameters)."""
    return architecture_from_params(trial.params)


def config_json(config: StudyConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)
