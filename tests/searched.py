"""Two real tiny digits studies on one supernet trained once: DSPS and random search.

Import the fixture into a test module (``from searched import two_studies``); it is session
scoped, so every module that imports it shares one run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_study
from typer.testing import CliRunner

from autospikformer.cli.app import app


def _run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture(scope="session")
def two_studies(tmp_path_factory) -> dict[str, object]:
    """``folder``, ``storage`` (URL), ``supernet`` (path) and the two study names."""
    folder: Path = tmp_path_factory.mktemp("searched")
    for name, sampler in (("tiny-dsps", "dsps"), ("tiny-random", "random")):
        (folder / f"{name}.toml").write_text(tiny_study(name, sampler))
    storage = f"sqlite:///{folder / 'studies.db'}"
    runs = str(folder / "runs")
    common = ("--device", "cpu", "--storage", storage, "--runs-dir", runs, "--no-export")
    _run("study", "run", str(folder / "tiny-dsps.toml"), *common)
    supernet = folder / "runs" / "tiny-dsps" / "supernet.pt"
    _run("study", "run", str(folder / "tiny-random.toml"), "--supernet", str(supernet), *common)
    return {
        "folder": folder,
        "storage": storage,
        "runs": runs,
        "supernet": supernet,
        "dsps": "tiny-dsps",
        "random": "tiny-random",
    }
