"""Test-session settings shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The models under test are tiny: one intra-op thread avoids thread start-up and spin-waiting,
# which on a 2-core machine costs more than it gains (up to 30x on a loaded machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory) -> Path:
    """One trained digits supernet for every test that runs a study (1 epoch on 128 digits,
    the space of :data:`helpers.TINY_STUDY`), passed to studies with ``--supernet``."""
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
