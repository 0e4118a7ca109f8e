"""A real tiny digits study searched once (12 DSPS trials on the shared tiny supernet), and a
fresh copy of its storage for each test that trains its subnets.

Import the fixtures into a test module (``from trained_study import searched, searched_db``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import tiny_study

from autospikformer.study.storage import resolve_study
from autospikformer.study.workers import WorkerOptions, run_workers

NAME = "s"
TRIALS = 12


@pytest.fixture(scope="session")
def searched_db(tiny_supernet, tmp_path_factory) -> Path:
    """The SQLite file of study ``s``: 12 complete trials evaluated with ``tiny_supernet``."""
    folder = tmp_path_factory.mktemp("trained-study")
    (folder / "s.toml").write_text(tiny_study(NAME, trials=TRIALS))
    url = f"sqlite:///{folder / 's.db'}"
    resolve_study(str(folder / "s.toml"), url, create=True)
    outcome = run_workers(WorkerOptions(url, NAME, TRIALS, str(tiny_supernet), device="cpu"), 1)
    assert outcome.complete == TRIALS
    return folder / "s.db"


@pytest.fixture
def searched(searched_db, tiny_supernet, tmp_path) -> dict[str, str]:
    """A fresh copy of the study for one test: ``url``, ``name``, ``supernet``, ``runs``."""
    for suffix in ("", "-wal", "-shm"):  # SQLite's write-ahead log, where it is
        source = searched_db.with_name(searched_db.name + suffix)
        if source.exists():
            shutil.copy(source, tmp_path / source.name)
    return {
        "url": f"sqlite:///{tmp_path / 's.db'}",
        "name": NAME,
        "supernet": str(tiny_supernet),
        "runs": str(tmp_path / "runs"),
    }
