"""Small shared test fixtures-as-data: a tiny search space and tiny study files; the process and
disk probes the fault tests and ``benchmarks/faults.py`` share; and a way to stop a study's
workers at a chosen moment (:func:`paused_when`), so that a fault lands where a test wants it
however fast trials run."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc

# A space small enough for real training and evaluation in a test (8x8 inputs, 1-2 blocks).
TINY_SPACE = {
    "name": "tiny",
    "transformer": {
        "embed_dim": [16, 32],
        "mlp_ratio": [1.0, 2.0],
        "num_heads": [2, 4],
        "depth": [1, 2],
    },
    "neuron": {"threshold": [0.8, 1.0], "tau": [1.5, 2.0], "time_steps": [1, 2]},
}

# What trains and searches in seconds: 1 epoch on 128 digits, 128 evaluation images.
TINY_TRAIN = {
    "epochs": 1,
    "batch_size": 64,
    "lr": 2e-3,
    "warmup_epochs": 0,
    "mixup": 0.0,
    "amp": False,
    "workers": 0,
    "augment": False,
    "train_samples": 128,
}
TINY_SEARCH = {
    "trials": 5,
    "calib_batches": 1,
    "batch_size": 128,
    "eval_samples": 128,
    "heartbeat_interval": 1,
    "grace_period": 3,
}
# DSPS with a population of 4, so that generations turn over quickly.
DSPS_OPTIONS = {"population_size": 4, "num_parents": 2}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)


def toml_text(tables: dict[str, dict[str, Any]]) -> str:
    """A TOML file of ``{"section": {key: value}}`` (nested dicts become sub-tables)."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in body.items() if not isinstance(v, dict))
        for key, sub in body.items():
            if isinstance(sub, dict):
                table(f"{name}.{key}", sub)

    for name, body in tables.items():
        table(name, body)
    return "\n".join(lines) + "\n"


def study_text(
    name: str,
    *,
    sampler: str = "dsps",
    dataset: str = "digits",
    root: str | Path | None = None,
    space: str | dict[str, Any] = "digits",
    train: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    energy: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    """A study file: a preset ``space`` name or a space dict, the tiny recipe and search with
    ``train`` / ``search`` updates (None leaves a key out: the study's default), sampler
    ``options`` (``[search.options]``), ``energy``, and more ``[data]`` settings (``data``: a
    folder's img_size, sensor_size...)."""

    def updated(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
        merged = {**base, **(changes or {})}
        return {k: v for k, v in merged.items() if v is not None}

    data = {"dataset": dataset, **({"root": root} if root is not None else {}), **(data or {})}
    tables: dict[str, dict[str, Any]] = {
        "study": {"name": name, "seed": 0},
        "data": data,
        "space": {"preset": space} if isinstance(space, str) else dict(space),
        "train": updated(TINY_TRAIN, train),
        "search": updated({"sampler": sampler, **TINY_SEARCH}, search),
    }
    if options:
        tables["search"]["options"] = dict(options)
    if energy:
        tables["energy"] = dict(energy)
    return toml_text(tables)


def tiny_study(
    name: str, sampler: str = "dsps", *, options: dict | None = None, **search: object
) -> str:
    """The tiny digits study ``name`` searched by ``sampler``; ``options`` replace the sampler's
    ``[search.options]`` (default: DSPS with a population of 4), and ``search`` updates
    ``[search]`` (e.g. ``max_energy_mj=0.001``)."""
    if options is None:
        options = DSPS_OPTIONS if sampler == "dsps" else {}
    return study_text(name, sampler=sampler, search=search, options=options)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, ...); None
    once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_gone(pid: int) -> bool:
    """Process ``pid`` has exited (a zombie that nobody reaps counts as gone)."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def process_stopped(pid: int) -> bool:
    """Process ``pid`` is stopped by a signal (SIGSTOP), or gone."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("T", "t", "Z", "X")


def worker_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    """The process id in a trial's ``autospik:worker`` label (``host:pid``); None before a
    worker has taken it."""
    label = trial.user_attrs.get("autospik:worker")
    return None if label is None else int(label.rsplit(":", 1)[1])


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process descended from it (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:  # None: gone meanwhile
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@functools.cache
def storage_at(url: str) -> optuna.storages.RDBStorage:
    """One storage per URL for a test's repeated looks at a study: a storage per look opens a
    connection pool each time, which a busy test process collects too late (PostgreSQL then
    refuses every client, the workers' reconnections included). Its connections are checked
    before use, so it outlives a database restart."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def study_started(storage: str, name: str) -> bool:
    """The study holds a trial that a worker has started (its ``autospik:worker`` label)."""
    try:
        trials = optuna.load_study(study_name=name, storage=storage_at(storage)).get_trials()
    except Exception:  # not registered yet, or a storage that is not up yet
        return False
    return any(worker_pid(t) is not None for t in trials)


@contextlib.contextmanager
def paused_when(
    moment: Callable[[set[int]], Any],
    storage: str,
    name: str,
    command: subprocess.Popen,
    timeout: float = 240.0,
    step: float = 0.005,
) -> Iterator[Any]:
    """Stop ``command`` and all its processes (SIGSTOP) at a moment when ``moment(pids)`` is
    true of the study in ``storage``, and keep them stopped while the block runs; it gets
    ``moment``'s value. They are resumed (SIGCONT) when the block ends.

    Once the study's first trial has started, the processes run only ``step`` seconds between
    two looks, and each look is made with them stopped. A stopped process writes nothing, so
    what the storage said stays true until the block acts on it: a kill or an outage lands
    inside a trial however fast trials run, and fast trials cannot all end between two looks.
    ``pids`` are the stopped processes (a worker names its process in ``autospik:worker``). A
    look that finds SQLite locked by a stopped process counts as not the moment."""
    end = time.monotonic() + timeout
    while not study_started(storage, name):
        assert command.poll() is None, "the command ended before its study started"
        assert time.monotonic() < end, "timed out waiting for the study to start"
        time.sleep(0.05)
    while True:
        assert command.poll() is None, "the command ended before the moment the test waits for"
        assert time.monotonic() < end, "timed out waiting for the moment"
        pids = process_tree(command.pid)
        signal_all(pids, signal.SIGSTOP)
        while not all(process_stopped(pid) for pid in pids):
            time.sleep(0.001)
        try:
            value = moment(pids)
        except KeyError:  # the study is not registered yet
            value = None
        except sqlalchemy.exc.OperationalError:  # SQLite, locked by a process stopped mid-write
            value = None
        if value:
            try:
                yield value
            finally:
                signal_all(pids, signal.SIGCONT)
            return
        signal_all(pids, signal.SIGCONT)
        time.sleep(step)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the disk under ``folder`` up to ``leave`` free bytes; returns the filler file."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb") as handle:
        while (free := shutil.disk_usage(folder).free - leave) > 0:
            try:
                handle.write(b"\0" * min(free, 1 << 20))
                handle.flush()
            except OSError:
                break
    return filler


def run_until_searched(
    folder: Path, name: str, trials: int, storage: str, env: dict[str, str]
) -> subprocess.Popen:
    """``autospik study run`` of study file ``name`` in ``folder`` to ``trials`` complete trials
    on ``storage``, its runs in ``after-runs``, read until its search is over (the front's test
    pass and the export are next); returned running, its stderr unread. Killed if the read fails."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autospikformer.cli", "study", "run", f"{name}.toml", "--trials",
         str(trials), "--storage", storage, "--device", "cpu", "--runs-dir", "after-runs"],
        cwd=folder, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if f"study {name}: {trials} complete trials" in line:
                break
    except BaseException:
        proc.kill()
        raise
    return proc
