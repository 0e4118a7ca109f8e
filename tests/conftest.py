"""Test-session settings shared by every test module."""

from __future__ import annotations

from pathlib import Path

from autospikformer.threads import passive_waits

# Before torch loads: OpenMP's idle threads wait without spinning, here and in every process a
# test starts (the CLI, spawned workers), which inherit the environment.
passive_waits()

import pytest  # noqa: E402
import torch  # noqa: E402

# The models under test are tiny: one intra-op thread avoids thread start-up costs, which on a
# 2-core machine cost more than a second thread gains.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory) -> Path:
    """One trained digits supernet for every test that runs a study (1 epoch on 128 digits,
    the space of :func:`helpers.tiny_study`), passed to studies with ``--supernet``."""
    import tomllib

    from helpers import tiny_study

    from autospikformer.study.config import StudyConfig
    from autospikformer.training.trainer import train_supernet

    folder = tmp_path_factory.mktemp("tiny-supernet")
    config = StudyConfig.from_dict(tomllib.loads(tiny_study("shared")), base=folder)
    return train_supernet(
        space=config.space,
        dataset="digits",
        data_root=None,
        out_dir=folder,
        config=config.train,
        device="cpu",
        progress=False,
    )


@pytest.fixture
def events_reads(monkeypatch) -> list[str]:
    """Every ``events_np`` file read (through numpy, which every events reader uses)."""
    import numpy as np

    reads: list[str] = []
    real_load = np.load

    def counting_load(file, *args, **kwargs):
        if "events_np" in str(file):
            reads.append(str(file))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    return reads
