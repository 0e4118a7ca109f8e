"""Checkpoints under faults: a trainer SIGKILLed while it writes one, and leftover partial files.

The kills are real: ``tests/checkpoint_killer.py`` trains in a subprocess and kills itself with
SIGKILL at a chosen moment of a checkpoint write (mid-write, before the flush, right after the
rename). After each kill the checkpoint's final name must hold a complete, verified file (or
none yet), and the run resumed after the last kill must end bit-identical to one never killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from checkpoint_killer import recipe

from autospikformer.checkpoint_file import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from autospikformer.training.trainer import train_supernet

KILLER = Path(__file__).parent / "checkpoint_killer.py"
EPOCHS = 3


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".supernet.pt.*.tmp"))


def killed_run(out: Path, moment: str, fraction: float = 0.5) -> int:
    """One training process that kills itself at ``moment`` of its first checkpoint write."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(KILLER), str(out), str(EPOCHS), moment, str(fraction)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    return done.returncode


def test_a_trainer_killed_while_it_writes_a_checkpoint_resumes_bit_identical(tmp_path) -> None:
    reference = train_supernet(out_dir=tmp_path / "reference", resume=False, **recipe(EPOCHS))
    out = tmp_path / "killed"
    final = out / "supernet.pt"
    # (moment, fraction of the bytes written, epoch at the final name after the kill)
    schedule = [
        ("write", 0.5, None),  # the first epoch's write dies half-way: nothing at the name yet
        ("replace", 1.0, 1),  # renamed, then killed before the folder sync: epoch 1 is there
        ("write", 0.97, 1),  # epoch 2's write dies near its end: epoch 1 stays intact
        ("fsync", 1.0, 1),  # all of epoch 2 written, killed before the flush and rename
    ]
    for moment, fraction, epoch in schedule:
        assert killed_run(out, moment, fraction) == -signal.SIGKILL
        if epoch is None:
            assert not final.exists()
        else:
            assert load_checkpoint(final, kind="supernet")["epoch"] == epoch  # checksum verified
        left = temporaries(out)
        assert len(left) == (0 if moment == "replace" else 1), left  # earlier ones were removed
        for partial in left:
            if moment == "write":  # the partial file itself would not have loaded
                with pytest.raises(CheckpointError, match="corrupted or truncated"):
                    read_checkpoint(partial)
    assert killed_run(out, "none") == 0
    assert temporaries(out) == []
    resumed, unkilled = load_checkpoint(final), load_checkpoint(reference)
    assert resumed["epoch"] == unkilled["epoch"] == EPOCHS
    assert resumed["state_dict"].keys() == unkilled["state_dict"].keys()
    for key, tensor in unkilled["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], tensor), key
    for key in ("optimizer", "scheduler", "rng"):
        assert str(resumed[key]) == str(unkilled[key]), key
    assert [row["train_loss"] for row in resumed["history"]] == [
        row["train_loss"] for row in unkilled["history"]
    ]


def test_only_partial_files_of_dead_writers_are_removed(tmp_path) -> None:
    target = tmp_path / "supernet.pt"
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = {
        "dead": tmp_path / f".supernet.pt.{dead.pid}@{host}.abcd1234.tmp",
        "alive": tmp_path / f".supernet.pt.{os.getpid()}@{host}.abcd1234.tmp",
        "other host": tmp_path / f".supernet.pt.{dead.pid}@elsewhere.example.abcd1234.tmp",
        "old unnamed": tmp_path / ".supernet.pt.zx81qwer.tmp",
        "new unnamed": tmp_path / ".supernet.pt.qwer1234.tmp",
        "another file's": tmp_path / f".other.pt.{dead.pid}@{host}.abcd1234.tmp",
    }
    for path in files.values():
        path.write_bytes(b"partial")
    hour_ago = time.time() - 3700
    os.utime(files["old unnamed"], (hour_ago, hour_ago))
    removed = remove_stale_temporaries(target)
    assert sorted(removed) == sorted([files["dead"], files["old unnamed"]])
    assert {name for name, path in files.items() if path.exists()} == {
        "alive", "other host", "new unnamed", "another file's",
    }  # fmt: skip
    # save_checkpoint cleans up the same way before it writes, and leaves no file of its own
    save_checkpoint({"kind": "x", "value": torch.arange(3)}, target)
    assert not files["dead"].exists() and files["alive"].exists()
    assert sorted(p.name for p in tmp_path.glob(".supernet.pt.*.tmp")) == sorted(
        files[name].name for name in ("alive", "other host", "new unnamed")
    )
    assert torch.equal(load_checkpoint(target)["value"], torch.arange(3))
