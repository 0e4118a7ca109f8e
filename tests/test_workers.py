"""Many workers on one study, as real processes: exact trial counts, no duplicates, no lost trials.

Each test runs ``python -m autospikformer.cli study run ...`` in subprocesses on a tiny digits
study (the session's tiny trained supernet, conftest.py; 128 evaluation images).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from helpers import paused_when, storage_at, tiny_study, worker_pid
from optuna.trial import TrialState

POSTGRES = os.environ.get("AUTOSPIK_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_supernet) -> tuple[Path, Path]:
    """A folder, and the session's trained supernet shared by every study here (``--supernet``)."""
    return tmp_path_factory.mktemp("workers"), tiny_supernet


def study_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(tiny_study(name))
    return path


def autospik(folder: Path, ckpt: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "autospikformer.cli", "study", "run", *args,
        "--supernet", str(ckpt), "--device", "cpu", "--no-export",
    ]  # fmt: skip


def run(folder: Path, cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout, env=env)


def check_exact(storage: str, name: str, n: int) -> list:
    """Exactly ``n`` complete trials with distinct architectures; nothing running or waiting."""
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return trials


def test_two_workers_on_sqlite(workdir) -> None:
    folder, ckpt = workdir
    study_file(folder, "two")
    result = run(folder, autospik(folder, ckpt, "two.toml", "--trials", "6", "--workers", "2"))
    assert result.returncode == 0, result.stderr
    trials = check_exact(f"sqlite:///{folder / 'autospik.db'}", "two", 6)
    workers = {t.user_attrs["autospik:worker"] for t in trials if t.state == TrialState.COMPLETE}
    assert len(workers) == 2  # both processes evaluated trials


@pytest.mark.skipif(
    POSTGRES is None,
    reason="set AUTOSPIK_TEST_POSTGRES_URL (e.g. postgresql+psycopg2://autospik:autospik@"
    "127.0.0.1:5432/autospik; .ci/run starts one) to run the PostgreSQL test",
)
def test_two_invocations_on_postgresql(workdir) -> None:
    """Two separate `study run` invocations (as on two machines) share one PostgreSQL study."""
    folder, ckpt = workdir
    name = f"pg-{uuid.uuid4().hex[:8]}"
    study_file(folder, name)
    assert POSTGRES is not None
    created = subprocess.run(
        [sys.executable, "-m", "autospikformer.cli", "study", "create", f"{name}.toml",
         "--storage", POSTGRES],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            autospik(folder, ckpt, name, "--trials", "6", "--storage", POSTGRES),
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
        trials = check_exact(POSTGRES, name, 6)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len({t.user_attrs["autospik:worker"] for t in done}) == 2
    finally:
        for proc in procs:
            proc.kill()
        optuna.delete_study(study_name=name, storage=POSTGRES)


def evaluating(storage: str, name: str):
    """A RUNNING trial that has its parameters (being evaluated), or None."""
    try:
        study = optuna.load_study(study_name=name, storage=storage_at(storage))
    except KeyError:
        return None
    running = [  # the architecture attribute is set once every parameter is
        t
        for t in study.get_trials(states=(TrialState.RUNNING,))
        if "autospik:architecture_json" in t.user_attrs
    ]
    return running[0] if running else None


def inside_a_trial(storage: str, name: str, pids: set[int]):
    """A trial that one of the stopped workers ``pids`` is evaluating, or None."""
    busy = evaluating(storage, name)
    return busy if busy is not None and worker_pid(busy) in pids else None


def test_killed_worker_trial_is_requeued_not_lost(workdir) -> None:
    folder, ckpt = workdir
    study_file(folder, "kill")
    storage = f"sqlite:///{folder / 'autospik.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        autospik(folder, ckpt, "kill.toml", "--trials", "4"), cwd=folder, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:  # one worker, in the command's own process: stopped inside a trial, then killed
        with paused_when(lambda pids: inside_a_trial(storage, "kill", pids), storage, "kill",
                         proc) as victim:  # fmt: skip
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        proc.kill()
    stuck = evaluating(storage, "kill")  # RUNNING until the grace period
    assert stuck is not None and stuck.number == victim.number
    time.sleep(3.5)  # the study's grace period is 3 s
    result = run(folder, autospik(folder, ckpt, "kill", "--trials", "4"))
    assert result.returncode == 0, result.stderr
    trials = check_exact(storage, "kill", 4)
    assert trials[victim.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1
    assert retried[0].state == TrialState.COMPLETE and retried[0].params == victim.params


def test_a_worker_killed_by_sigkill_is_named_and_the_others_finish(workdir) -> None:
    """``--workers 2``, one worker process SIGKILLed mid-trial: the parent says which worker a
    signal killed (there is no error to print), the other worker re-queues the stuck trial after
    the grace period and completes the study, and the command succeeds with a warning."""
    folder, ckpt = workdir
    study_file(folder, "sigkill")
    storage = f"sqlite:///{folder / 'autospik.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        autospik(folder, ckpt, "sigkill.toml", "--trials", "40", "--workers", "2"), cwd=folder,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:  # the other worker is resumed when the block ends
        with paused_when(lambda pids: inside_a_trial(storage, "sigkill", pids), storage,
                         "sigkill", proc) as victim:  # fmt: skip
            os.kill(worker_pid(victim), signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "printed above" not in err
    killed = [line for line in err.splitlines() if "was killed by SIGKILL" in line]
    assert len(killed) == 1 and killed[0].startswith("warning: worker "), err
    assert "its trial is re-queued after the study's grace period" in killed[0]
    trials = check_exact(storage, "sigkill", 40)
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED}
    assert trials[victim.number].state == TrialState.FAIL  # the killed one, re-queued
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(workdir) -> None:
    folder, ckpt = workdir
    study_file(folder, "intr")
    storage = f"sqlite:///{folder / 'autospik.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        autospik(folder, ckpt, "intr.toml", "--trials", "12"), cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def complete_so_far(pids: set[int]) -> int:
        study = optuna.load_study(study_name="intr", storage=storage_at(storage))
        return len(study.get_trials(states=(TrialState.COMPLETE,)))

    try:  # one worker, in the command's own process; SIGINT is delivered when it resumes
        with paused_when(complete_so_far, storage, "intr", proc) as done_at_signal:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped:" in out and "again to resume" in out
    study = optuna.load_study(study_name="intr", storage=storage)
    states = [t.state for t in study.get_trials()]
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    assert states.count(TrialState.COMPLETE) <= done_at_signal + 1 < 12  # its current trial
    result = run(folder, autospik(folder, ckpt, "intr", "--trials", "12"))
    assert result.returncode == 0, result.stderr
    check_exact(storage, "intr", 12)
