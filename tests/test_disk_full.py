"""A full disk, for real: a small tmpfs filled up while a study is searched and while it exports.

- Under the study's SQLite file: the trial being saved waits, as through a database outage, and
  is saved once space is freed (before: its finished evaluation was marked FAIL and its
  candidate never re-queued). The file passes ``integrity_check`` after.
- Under the export folder: the export fails with one line naming the file it could not write
  and the option that chose the folder, and the previous export is left as it was, byte for
  byte (before: a 0.9 MB ``pareto.html`` beside no ``summary.json``).

Mounting a tmpfs needs root (or CAP_SYS_ADMIN); elsewhere these tests skip.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from helpers import fill_disk, tiny_study
from optuna.trial import TrialState
from test_export import filled_study

from autospikformer.report.export import EXPORT_FILES, ExportError, export_study

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` MB mounted at ``folder`` (skips where mounting is refused)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}M", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def complete(url: str) -> int:
    try:
        trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    except KeyError:  # not registered yet
        return 0
    return sum(t.state == TrialState.COMPLETE for t in trials)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_full_disk_under_the_storage_is_ridden_out(tmp_path, tiny_supernet) -> None:
    n = 24  # trials are fast (SPS reused): enough that the disk fills mid-search
    (tmp_path / "tiny.toml").write_text(tiny_study("tiny"))
    with small_disk(tmp_path / "disk", 4) as disk:
        url = f"sqlite:///{disk / 'study.db'}"
        errors = tmp_path / "stderr.txt"
        with open(errors, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "autospikformer.cli", "study", "run", "tiny.toml",
                 "--trials", str(n), "--storage", url, "--supernet", str(tiny_supernet),
                 "--device", "cpu", "--no-export"],
                cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        try:
            end = time.monotonic() + 240
            while complete(url) < 2:
                assert time.monotonic() < end and proc.poll() is None, errors.read_text()
                time.sleep(0.1)
            filler = fill_disk(disk)
            while "is full while" not in errors.read_text():  # a trial's save waits for room
                assert time.monotonic() < end and proc.poll() is None, errors.read_text()
                time.sleep(0.2)
            filler.unlink()
            assert proc.wait(timeout=240) == 0, errors.read_text()
        finally:
            proc.kill()
        trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
        states = [t.state for t in trials]
        assert states.count(TrialState.COMPLETE) == n
        assert TrialState.FAIL not in states and TrialState.RUNNING not in states
        with contextlib.closing(sqlite3.connect(disk / "study.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    lines = errors.read_text().strip().splitlines()
    assert lines[0].startswith(f"warning: worker 0: storage {url} is full while ")
    assert "(database or disk is full (sqlite3.OperationalError)); retrying" in lines[0]
    assert lines[-1].startswith("worker 0: storage writable again after ")


def test_an_export_onto_a_full_disk_leaves_the_previous_one(tmp_path) -> None:
    study = filled_study()
    with small_disk(tmp_path / "disk", 12) as disk:
        out = disk / "export"
        export_study(study, out, option="--out")
        before = digests(out)
        assert sorted(before) == sorted(EXPORT_FILES)
        filler = fill_disk(disk, leave=1 << 20)  # 1 MB left: pareto.html (about 4.8 MB) cannot fit
        with pytest.raises(ExportError) as refused:
            export_study(study, out, option="--out")
        assert str(refused.value) == (
            f"--out {out}: cannot write pareto.html (No space left on device); free some space; "
            "the export there was left as it was"
        )
        assert digests(out) == before  # the previous set, byte for byte, and no staging folder
        filler.unlink()
        export_study(study, out, option="--out")
        assert sorted(digests(out)) == sorted(EXPORT_FILES)
