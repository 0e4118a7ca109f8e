"""A database outage during a ``--workers 2`` study on PostgreSQL, with real processes.

A private PostgreSQL server (``tests/private_postgres.py``; the shared one on port 5432 is never
touched) is restarted mid-trial and, in the same run, stopped for a while and started again:
the workers ride both out, every evaluated trial keeps its result until it is saved, and the
study ends with exactly N complete trials, none lost, none RUNNING, no duplicate and no failed
trial. An outage longer than ``search.max_outage`` stops the workers with one line naming the
database's error, and a rerun finishes the study. ``benchmarks/faults.py`` runs the longer
versions (15 s stops, 30 trials in) and measures them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from helpers import paused_when, run_until_searched, storage_at, tiny_study, worker_pid
from optuna.trial import TrialState
from private_postgres import PrivatePostgres, unavailable

from autospikformer.study.retrying_storage import RetryingStorage, StorageOutage, outage_reason

pytestmark = pytest.mark.skipif(
    unavailable() is not None, reason=f"no private PostgreSQL server: {unavailable()}"
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
WARNING = re.compile(
    r"warning: worker \d: storage \S+ unreachable while .+; retrying with back-off for up to "
    r"\d+ s|worker \d: storage reachable again after [\d.]+ s; .+ went through"
)


@pytest.fixture(scope="module")
def server():
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_supernet) -> tuple[Path, Path]:
    return tmp_path_factory.mktemp("outage"), tiny_supernet


def stop_then_finish(server, proc: subprocess.Popen, seconds: float) -> str:
    """Stop the database for ``seconds``, start it again and wait for the command; its stderr."""
    server.stop()
    return start_then_finish(server, proc, seconds)


def start_then_finish(server, proc: subprocess.Popen, seconds: float) -> str:
    """Wait ``seconds`` with the database stopped, start it and wait for the command; stderr."""
    time.sleep(seconds)
    server.start()
    return proc.communicate(timeout=300)[1]


def leave_running(server, proc: subprocess.Popen) -> None:
    """Whatever a test ended with: the command gone, the database up for the next test."""
    proc.kill()
    if not server.running():
        server.start()


def study_file(folder: Path, name: str, **search: int) -> Path:
    text = tiny_study(name)
    for key, value in search.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if f"{key} = " not in text:
            text = text.replace("[search]\n", f"[search]\n{key} = {value}\n")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def start(
    folder: Path, ckpt: Path, url: str, target: str, trials: int, workers: int = 2
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autospikformer.cli", "study", "run", target, "--trials",
         str(trials), "--workers", str(workers), "--storage", url, "--supernet", str(ckpt),
         "--device", "cpu", "--no-export"],
        cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage_at(url)).get_trials()
    except Exception:  # not registered yet, or the server is down
        return []


def complete_numbers(trials) -> set[int]:
    return {t.number for t in trials if t.state == TrialState.COMPLETE}


def paused_mid_trial(url: str, name: str, proc: subprocess.Popen, at_least: int):
    """:func:`helpers.paused_when` the command's workers are stopped with ``at_least`` trials
    complete and one of the stopped workers evaluating a trial; the block gets the complete
    trials' numbers."""

    def moment(pids: set[int]) -> set[int] | None:
        trials = trials_of(url, name)
        running = [t for t in trials if t.state == TrialState.RUNNING and worker_pid(t) in pids]
        done = complete_numbers(trials)
        return done if len(done) >= at_least and running else None

    return paused_when(moment, url, name, proc)


def check_exact(url: str, name: str, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == n  # no duplicate
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all("autospik:num_parameters" in t.user_attrs for t in complete)
    return trials


def test_workers_ride_out_a_restart_and_a_stop(server, workdir) -> None:
    folder, ckpt = workdir
    name = f"ride-{uuid.uuid4().hex[:6]}"
    study_file(folder, name, grace_period=10)
    n = 40  # enough that the restart and the stop fall mid-search
    proc = start(folder, ckpt, server.url, f"{name}.toml", n)
    try:  # each fault lands while the workers are stopped inside a trial
        with paused_mid_trial(server.url, name, proc, 4) as before_restart:
            server.restart()
        with paused_mid_trial(server.url, name, proc, 9) as before_stop:
            server.stop()
        err = start_then_finish(server, proc, seconds=5)
    finally:
        leave_running(server, proc)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert lines, "the 5 s stop was noticed"
    for line in lines:  # one warning line when a call first fails, one when it goes through
        assert WARNING.fullmatch(line), line
    assert any("unreachable while" in line for line in lines)
    assert any("went through" in line for line in lines)
    trials = check_exact(server.url, name, n)
    after = complete_numbers(trials)
    assert before_restart <= before_stop <= after  # none lost
    assert not [t for t in trials if t.state == TrialState.FAIL]  # no evaluation thrown away


def test_an_outage_longer_than_max_outage_stops_the_workers_with_one_line(server, workdir) -> None:
    folder, ckpt = workdir
    name = f"stop-{uuid.uuid4().hex[:6]}"
    study_file(folder, name, grace_period=4, max_outage=3)
    n = 40
    proc = start(folder, ckpt, server.url, f"{name}.toml", n)
    try:
        with paused_mid_trial(server.url, name, proc, 3):
            server.stop()
        _, err = proc.communicate(timeout=120)
    finally:
        leave_running(server, proc)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert errors[0].startswith("error: 2 of 2 workers stopped (worker ")
    for index in (0, 1):
        assert re.search(
            rf"worker {index}: storage \S+ unreachable for over 3 s \(search\.max_outage\) while "
            r"[^;]+: [^;]*(Connection refused|shutting down|server closed the connection)",
            errors[0],
        ), errors[0]
    for line in lines[:-1]:  # retries, and a worker that stopped while the other went on
        assert WARNING.fullmatch(line) or line.startswith("warning: worker "), line
        assert "Traceback" not in line
    stopped = trials_of(server.url, name)
    kept = complete_numbers(stopped)
    stuck = [t for t in stopped if t.state == TrialState.RUNNING]
    time.sleep(4.5)  # the grace period: the stuck trials are stale now
    rerun = start(folder, ckpt, server.url, name, n, workers=1)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    trials = check_exact(server.url, name, n)
    assert kept <= complete_numbers(trials)  # none lost
    for trial in stuck:  # failed as stale, re-queued, evaluated by the rerun
        assert trials[trial.number].state == TrialState.FAIL
        if trial.params:
            copies = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
            assert [t.state for t in copies] == [TrialState.COMPLETE]


def test_what_counts_as_an_outage(server, tmp_path) -> None:
    """Real driver errors: a refused connection is an outage; a read-only database is not."""
    import sqlalchemy

    closed = f"postgresql+psycopg2://autospik@127.0.0.1:{_free_port()}/autospik"
    with pytest.raises(sqlalchemy.exc.OperationalError) as refused:
        sqlalchemy.create_engine(closed).connect()
    assert "Connection refused" in outage_reason(refused.value)
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="s")
    ro = optuna.storages.RDBStorage(f"sqlite:///file:{tmp_path / 'a.db'}?mode=ro&uri=true")
    with pytest.raises(optuna.exceptions.StorageInternalError) as readonly:
        ro.set_study_user_attr(ro.get_study_id_from_name("s"), "k", 1)
    assert outage_reason(readonly.value) is None
    # the retrying storage raises a non-outage error at once, and an outage after max_outage
    retrying = RetryingStorage(optuna.storages.get_storage(ro), max_outage=1.0, label="t")
    started = time.monotonic()
    with pytest.raises(optuna.exceptions.StorageInternalError):
        retrying.set_study_user_attr(retrying.get_study_id_from_name("s"), "k", 1)
    assert time.monotonic() - started < 1.0
    gone = RetryingStorage(optuna.storages.RDBStorage(server.url), max_outage=1.5, label="t")
    study_id = gone.create_new_study([optuna.study.StudyDirection.MINIMIZE], f"o-{uuid.uuid4()}")
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageOutage, match=r"t: storage .* unreachable for over 1.5 s"):
            gone.get_study_user_attrs(study_id)
        assert 1.5 <= time.monotonic() - started < 1.5 + 2 * 5.0
        with pytest.raises(StorageOutage):  # the worker stopped: no more waiting
            gone.get_study_user_attrs(study_id)
    finally:
        server.start()


def _free_port() -> int:
    from private_postgres import free_port

    return free_port()


def test_an_outage_after_the_search_is_ridden_out(server, workdir) -> None:
    """The database stops while the command measures the front on the test split and exports
    (after its workers are done): the command's own storage calls wait as the workers' do, and
    the run ends with every front member measured and the export written (before: one error
    line, and neither)."""
    folder, _ = workdir
    name = f"after-{uuid.uuid4().hex[:6]}"
    study_file(folder, name, eval_split='"val"', grace_period=4)
    n = 6
    proc = run_until_searched(folder, name, n, server.url, ENV)  # after-search steps are next
    try:
        err = stop_then_finish(server, proc, seconds=4)
    finally:
        leave_running(server, proc)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"warning: autospik: storage {server.url} unreachable while ")
    assert re.fullmatch(
        r"autospik: storage reachable again after [\d.]+ s; .+ went through", lines[-1]
    )
    assert "error" not in err and "Traceback" not in err
    summary = json.loads((folder / "after-runs" / name / "export" / "summary.json").read_text())
    assert summary["complete"] == n
    assert summary["front_test_accuracy"]["measured"] == summary["front_size"] > 0
