"""Every Python block of the README runs as written (in order, in one namespace), in a folder
holding ``runs/digits/supernet.pt`` as ``autospik study run digits`` leaves it (here: a tiny
digits-space supernet trained for the test)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from searched import two_studies  # noqa: F401

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_every_readme_python_block_runs(two_studies, tmp_path, capsys) -> None:  # noqa: F811
    blocks = python_blocks()
    assert len(blocks) >= 2
    (tmp_path / "runs" / "digits").mkdir(parents=True)
    shutil.copy(two_studies["supernet"], tmp_path / "runs" / "digits" / "supernet.pt")
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        os.chdir(here)
    study = namespace["study"]
    assert len(study.trials) == 20
    assert namespace["front"] == study.best_trials and namespace["front"]
    assert "architectures on the front" in capsys.readouterr().out
