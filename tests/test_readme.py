"""Every Python block of the README runs as written (in order, in one namespace), in a folder
holding ``runs/digits/supernet.pt`` as ``autospik study run digits`` leaves it (here: a supernet
of the digits preset's space, trained without its validation part, 1 epoch on 128 images)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from searched import two_studies  # noqa: F401

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def readme_supernet(folder: Path) -> Path:
    """``folder/supernet.pt`` as the digits preset trains it, at a tiny size."""
    from autospikformer.study.config import StudyConfig
    from autospikformer.training.trainer import train_supernet

    config = StudyConfig.load("digits")
    return train_supernet(
        space=config.space, dataset="digits", data_root=None, out_dir=folder,
        config=config.train.replace(epochs=1, train_samples=128), device="cpu", progress=False,
        holdout=config.holdout,
    )  # fmt: skip


def test_every_readme_python_block_runs(tmp_path, capsys) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    readme_supernet(tmp_path / "runs" / "digits")
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
    run = namespace["run"]  # run_study: 20 trials searched, the front measured and exported
    assert run.outcome.complete == 20 and not run.interrupted
    assert run.export.summary["front_size"] == len(run.export.front) >= 1
    assert (tmp_path / run.export.paths["pareto.html"]).is_file()


def session() -> tuple[list[str], list[str]]:
    """The README's recorded ``study run digits`` output and ``study show digits`` table."""
    text = README.read_text()
    block = text[text.index("$ autospik study run digits --trials 200") :]
    block = block[: block.index("\n```")]
    run, show = block.split("$ autospik study show digits\n")
    return run.splitlines()[1:], show.splitlines()


def front_rows(show: list[str]) -> dict[int, list[str]]:
    return {
        int(cells[0]): cells
        for line in show
        if line.startswith("│")
        for cells in [[c.strip() for c in line.strip("│").split("│")]]
    }


def test_the_readme_session_agrees_with_itself() -> None:
    run, show = session()
    rows = front_rows(show)
    text = " ".join(run)
    front = re.search(r"Pareto front: (\d+) of 200 candidates; best validation accuracy "
                      r"([\d.]+) % \(trial (\d+)\), lowest energy ([\d.]+) µJ \(trial (\d+)\)", text)  # fmt: skip
    assert front, text
    size, best, best_trial, low, low_trial = front.groups()
    assert int(size) == len(rows)
    assert rows[int(best_trial)][1] == best == max(r[1] for r in rows.values())
    assert rows[int(low_trial)][3] == low
    assert f"200/200 trials, front {size}, best val acc {best} %, min energy {low} µJ" in text
    mean = re.search(rf"{size} of {size} members, mean ([\d.]+) %", text).group(1)
    tests = [float(r[2]) for r in rows.values()]
    assert f"{sum(tests) / len(tests):.2f}" == mean
    results = README.read_text().split("## Results", 1)[1]
    assert f"{len(rows)} points" in results and f"{best} %" in results and f"{low} µJ" in results


@pytest.mark.slow
def test_the_readme_session_repeats(tmp_path) -> None:
    """The seeded digits run repeats the README's numbers (same machine and torch build)."""
    import subprocess
    import sys

    def autospik(*args: str) -> str:
        cmd = [sys.executable, "-m", "autospikformer.cli", *args]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run_out = autospik("study", "run", "digits", "--trials", "200")
    show_out = autospik("study", "show", "digits")
    run, show = session()
    assert front_rows(show_out.splitlines()) == front_rows(show)
    summary = [line for line in run if line.startswith(("Pareto front", "lowest energy"))]
    for line in summary:
        assert line in run_out.splitlines(), line


def test_a_cpu_user_reads_the_cpu_only_install_first() -> None:
    """The CPU-only torch line comes before the first install command, with torchvision (which
    the project imports) from the same index."""
    text = README.read_text()
    cpu = text.index(
        "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    )
    assert cpu < text.index("pip install -e . && autospik study run digits")
