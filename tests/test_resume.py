"""A seeded DSPS or DSPS+ study killed mid-search (a real SIGKILL) and run again draws, trial for
trial, the candidates of the same study run without interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers import tiny_study
from optuna.trial import TrialState

from autospikformer.search.suggest import ARCH_ATTR
from autospikformer.study.storage import resolve_study
from autospikformer.study.workers import WorkerOptions, run_workers

KILLER = Path(__file__).parent / "study_killer.py"
OPTIONS = {
    "dsps": {"population_size": 4, "num_parents": 2},
    "dsps-plus": {"population_size": 6, "num_parents": 3, "candidates": 4},
}


def register(folder: Path, url: str, name: str, sampler: str, n: int) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(tiny_study(name, sampler, options=OPTIONS[sampler], trials=n, eval_samples=64))
    resolve_study(str(path), url, create=True)
    return path


def candidates(url: str, name: str) -> list[str]:
    """The architectures of the complete trials, in trial order."""
    study = optuna.load_study(study_name=name, storage=url)
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    return [t.user_attrs[ARCH_ATTR] for t in trials]


def complete(url: str, name: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except Exception:  # the schema is still being written
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@pytest.mark.parametrize(("sampler", "n", "kill_at"), [("dsps", 10, 5), ("dsps-plus", 26, 22)])
def test_a_killed_seeded_study_resumes_to_the_same_candidates(
    tiny_supernet, tmp_path, sampler: str, n: int, kill_at: int
) -> None:
    # DSPS+ screens with its predictor from 20 complete trials on: killed after that
    options = WorkerOptions(
        f"sqlite:///{tmp_path / 'once.db'}", "s", n, str(tiny_supernet), device="cpu"
    )
    register(tmp_path, options.storage_url, "s", sampler, n)
    assert run_workers(options, 1).complete == n
    uninterrupted = candidates(options.storage_url, "s")

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    register(tmp_path, url, "s", sampler, n)
    command = [
        sys.executable, str(KILLER), str(kill_at), url, "s", "--supernet", str(tiny_supernet),
        "--device", "cpu", "--no-export",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert complete(url, "s") == kill_at  # killed in the middle of the next trial
    killed = optuna.load_study(study_name="s", storage=url)
    assert len(killed.get_trials(states=(TrialState.RUNNING,))) == 1

    resumed = run_workers(WorkerOptions(url, "s", n, str(tiny_supernet), device="cpu"), 1)
    assert resumed.complete == n
    assert candidates(url, "s") == uninterrupted
    study = optuna.load_study(study_name="s", storage=url)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
