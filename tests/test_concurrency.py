"""Several commands on one study at once, as real processes started at the same moment.

- N ``study create`` on a fresh storage (SQLite file, PostgreSQL schema): Optuna creates the
  schema without a lock, and registration is several writes, so before the fix most of them
  died (``table studies already exists``, ``UNIQUE constraint failed: alembic_version``,
  ``pg_type_typname_nsp_index``, ``has no autospik:config``). Now every one succeeds: one
  registers, the others find the same configuration.
- Two ``study run`` on one new study: each counts the trials its own workers completed, the
  front is measured on the test split once, and the export they both write is one complete set.
- A ``--workers 2`` command killed: its workers finish their trial and stop, instead of
  searching on as orphans; the rerun counts only its own trials.

Processes start through ``tests/start_together.py`` (imports done, then a shared moment).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from helpers import paused_when, process_gone, storage_at, study_text, tiny_study, worker_pid
from optuna.trial import TrialState

from autospikformer.report.export import EXPORT_FILES
from autospikformer.study.storage import CONFIG_ATTR, study_records

POSTGRES = os.environ.get("AUTOSPIK_TEST_POSTGRES_URL")
START = Path(__file__).with_name("start_together.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def together(folder: Path, commands: list[list[str]], lead: float = 6.0) -> list[subprocess.Popen]:
    """Start each ``autospik`` command in its own process; all run their command ``lead``
    seconds from now (time enough to import everything first)."""
    at = str(time.time() + lead)
    return [
        subprocess.Popen(
            [sys.executable, str(START), at, *command],
            cwd=folder,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append((proc.returncode, " ".join(out.split()), err))
    return done


def _registered_once(results: list[tuple[int, str, str]], url: str, name: str) -> None:
    for code, _, err in results:
        assert code == 0 and err == "", err
    created = [out for _, out, _ in results if f"study {name} created in" in out]
    joined = [out for _, out, _ in results if "already exists (same configuration)" in out]
    assert (len(created), len(joined)) == (1, len(results) - 1)
    studies = optuna.get_all_study_names(url)
    assert studies == [name]
    assert CONFIG_ATTR in study_records(optuna.load_study(study_name=name, storage=url))


def test_processes_started_together_register_one_study_on_sqlite(tmp_path) -> None:
    (tmp_path / "tiny.toml").write_text(tiny_study("tiny"))
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = together(tmp_path, [["study", "create", "tiny.toml", "--storage", url]] * 6)
    _registered_once(finish(procs), url, "tiny")


@pytest.mark.skipif(
    POSTGRES is None,
    reason="set AUTOSPIK_TEST_POSTGRES_URL (.ci/run starts a server) to run the PostgreSQL test",
)
def test_processes_started_together_register_one_study_on_postgresql(tmp_path) -> None:
    """A fresh storage on the shared server: a new schema, first on the search path."""
    import sqlalchemy

    assert POSTGRES is not None
    schema = f"race_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    try:
        (tmp_path / "tiny.toml").write_text(tiny_study("tiny"))
        procs = together(tmp_path, [["study", "create", "tiny.toml", "--storage", url]] * 6)
        _registered_once(finish(procs), url, "tiny")
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def test_a_different_configuration_racing_is_refused_and_the_file_kept(tmp_path) -> None:
    (tmp_path / "a.toml").write_text(tiny_study("tiny"))
    (tmp_path / "b.toml").write_text(tiny_study("tiny").replace("trials = 5", "trials = 7"))
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    commands = [["study", "create", f"{x}.toml", "--storage", url] for x in "abab"]
    results = finish(together(tmp_path, commands))
    won = [i for i, (_, out, _) in enumerate(results) if "created in" in out]
    assert len(won) == 1
    refused = [i for i, (code, _, _) in enumerate(results) if code != 0]
    assert refused == [i for i in range(4) if i % 2 != won[0] % 2]  # the other configuration
    for i in refused:
        assert results[i][2] == (
            "error: study 'tiny' already exists with a different configuration (differs in: "
            "search.trials); give the study another [study] name\n"
        )
    assert (tmp_path / "fresh.db").is_file()
    assert optuna.get_all_study_names(url) == ["tiny"]


# --- two runs of one study ---------------------------------------------------------------------
COUNT = re.compile(r"study (\S+): (\d+) complete trials \((\d+) in this run")
MEASURED = re.compile(r"test split: (\d+) new front members? measured once")


def test_two_runs_count_their_own_trials_measure_once_and_export_one_set(tmp_path) -> None:
    """Two `study run FILE` of a new validation-protocol study, started together: stage 1
    trains once (its lock), each reports what its own worker completed (the two add up to N),
    the front's test accuracies are measured once, and the export is one consistent set."""
    n = 8
    options = {"population_size": 4, "num_parents": 2}
    search = {"eval_split": "val", "trials": n}
    (tmp_path / "val.toml").write_text(study_text("val", search=search, options=options))
    command = ["study", "run", "val.toml", "--device", "cpu"]
    results = finish(together(tmp_path, [command, command]), timeout=600)
    counts, measured = [], []
    for code, out, err in results:
        assert code == 0, err
        found = COUNT.search(out)
        assert found is not None and found.group(2) == str(n), out
        counts.append(int(found.group(3)))
        measured += [int(m.group(1)) for m in MEASURED.finditer(out)]
    assert sum(counts) == n  # 13 + 17 reported as 30 + 30 before
    url = f"sqlite:///{tmp_path / 'autospik.db'}"
    study = optuna.load_study(study_name="val", storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    workers = sorted({t.user_attrs["autospik:worker"] for t in complete})
    per_worker = sorted(
        sum(t.user_attrs["autospik:worker"] == w for t in complete) for w in workers
    )
    assert per_worker == sorted(counts)
    front = {t.number for t in study.best_trials}
    assert measured == [len(front)]  # once, by one of the two
    export = tmp_path / "runs" / "val" / "export"
    assert sorted(p.name for p in export.iterdir()) == sorted(EXPORT_FILES)  # no staging left
    summary = json.loads((export / "summary.json").read_text())
    assert summary["complete"] == n and summary["front_test_accuracy"]["measured"] == len(front)
    trials = pd.read_csv(export / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == n
    assert sorted(pd.read_csv(export / "pareto.csv")["number"]) == sorted(front)


# --- a killed command's workers ---------------------------------------------------------------
def _complete(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
    except Exception:  # not registered yet
        return []
    return [t for t in trials if t.state == TrialState.COMPLETE]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_stop_with_their_command_and_the_rerun_counts_its_own(
    tmp_path, tiny_supernet
) -> None:
    n = 40  # trials are fast (SPS reused): enough that the kill falls mid-search
    (tmp_path / "tiny.toml").write_text(tiny_study("tiny"))
    url = f"sqlite:///{tmp_path / 'autospik.db'}"
    run = [sys.executable, "-m", "autospikformer.cli", "study", "run", "tiny.toml", "--trials",
           str(n), "--supernet", str(tiny_supernet), "--device", "cpu", "--no-export"]  # fmt: skip
    parent = subprocess.Popen(
        [*run, "--workers", "2"], cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def both_working(pids: set[int]) -> tuple[set[int], int] | None:
        """With the command stopped: 3 trials complete and both workers seen; their pids and
        the complete trials."""
        trials = optuna.load_study(study_name="tiny", storage=storage_at(url)).get_trials()
        workers = {worker_pid(t) for t in trials} - {None}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        return (workers, len(complete)) if len(complete) >= 3 and len(workers & pids) == 2 else None

    try:  # the command is killed while it and its workers are stopped mid-search
        with paused_when(both_working, url, "tiny", parent) as (workers, at_kill):
            parent.send_signal(signal.SIGKILL)
            parent.wait()
        end = time.monotonic() + 120
        while not all(process_gone(pid) for pid in workers):  # each finishes its trial, then stops
            assert time.monotonic() < end, "the workers went on without their command"
            time.sleep(0.2)
    finally:
        parent.kill()
    stopped = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert not [t for t in stopped if t.state == TrialState.RUNNING]  # finished, not abandoned
    before = len(_complete(url, "tiny"))
    assert before <= at_kill + 2 < n  # each worker finished the trial it was in, and no other
    rerun = subprocess.run(run, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    found = COUNT.search(" ".join(rerun.stdout.split()))
    assert found is not None and (found.group(2), found.group(3)) == (str(n), str(n - before))


def test_a_trial_failed_as_stale_while_evaluated_is_one_warning(tiny_supernet, tmp_path, capsys):
    """Another command's worker may fail a trial as stale while this worker evaluates it (its
    heartbeats late on a loaded machine): the worker's next write to the trial meets Optuna's
    UpdateFinishedTrialError. Before, that ended the command in a traceback; now it is one
    warning, the trial stays FAIL (its re-queued copy is evaluated again) and the worker goes on."""
    from autospikformer.optuna_api import storage_of, trial_id
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.worker import Worker, WorkerOptions

    (tmp_path / "s.toml").write_text(tiny_study("s"))
    url = f"sqlite:///{tmp_path / 's.db'}"
    resolve_study(str(tmp_path / "s.toml"), url, create=True)
    worker = Worker(WorkerOptions(storage_url=url, study_name="s", trials=2,
                                  checkpoint=str(tiny_supernet), device="cpu"))  # fmt: skip
    evaluate = worker.evaluator.evaluate
    failed: list[int] = []

    def evaluated_while_another_worker_fails_it(arch):
        if not failed:  # the first trial: another worker fails it as stale meanwhile
            (running,) = worker.study.get_trials(states=(TrialState.RUNNING,))
            storage_of(worker.study).set_trial_state_values(trial_id(running), TrialState.FAIL)
            failed.append(running.number)
        return evaluate(arch)

    worker.evaluator.evaluate = evaluated_while_another_worker_fails_it
    assert worker.run_trial() == TrialState.FAIL
    assert f"trial {failed[0]} was failed as stale by another worker while it was being " \
        "evaluated" in capsys.readouterr().err  # fmt: skip
    assert worker.run_trial() == TrialState.COMPLETE  # the search goes on
    states = {t.number: t.state for t in worker.study.get_trials()}
    assert states[failed[0]] == TrialState.FAIL
