"""Two studies never share a runs folder: a study of another storage (same name) is refused with
one line naming both, before anything is registered or trained, and a supernet left by another
study is never taken for this one's."""

from __future__ import annotations

import json
import shutil

import optuna
from helpers import tiny_study
from typer.testing import CliRunner

from autospikformer.cli.app import app
from autospikformer.study.run_folder import OWNER_FILE, storage_identity

runner = CliRunner()


def run(tmp_path, db: str, *extra: str):
    return runner.invoke(
        app,
        ["study", "run", "s.toml", "--storage", f"sqlite:///{db}", "--trials", "2",
         "--device", "cpu", *extra],
    )  # fmt: skip


def test_a_namesake_in_another_storage_gets_its_own_folder(tmp_path, monkeypatch, tiny_supernet):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(tiny_study("s", "random", options={}, trials=2))
    first = run(tmp_path, "a.db", "--supernet", str(tiny_supernet))
    assert first.exit_code == 0, first.output
    owner = json.loads((tmp_path / "runs" / "s" / OWNER_FILE).read_text())
    assert owner["study"] == "s" and owner["storage"] == storage_identity("sqlite:///a.db")
    summary = (tmp_path / "runs" / "s" / "export" / "summary.json").read_text()

    second = run(tmp_path, "b.db", "--supernet", str(tiny_supernet))
    assert second.exit_code == 1
    line = " ".join(second.output.split())
    assert line.startswith("error: ") and "--runs-dir" in line
    assert f"of {storage_identity('sqlite:///a.db')}" in line
    assert f"of {storage_identity('sqlite:///b.db')}" in line
    assert not (tmp_path / "b.db").exists()  # nothing registered
    assert (tmp_path / "runs" / "s" / "export" / "summary.json").read_text() == summary
    # the same storage spelled another way is the same storage
    again = run(tmp_path, "./a.db", "--supernet", str(tiny_supernet))
    assert again.exit_code == 0, again.output
    # with its own folder the namesake runs
    other = run(tmp_path, "b.db", "--supernet", str(tiny_supernet), "--runs-dir", "runs-b")
    assert other.exit_code == 0, other.output
    exported = runner.invoke(app, ["study", "export", "s", "--storage", "sqlite:///b.db"])
    assert exported.exit_code == 1 and "holds the outputs of study 's'" in exported.output


def test_a_supernet_another_study_left_is_not_reused(tmp_path, monkeypatch, tiny_supernet):
    """A folder from before owners were recorded, holding some study's supernet: a new study of
    that name does not take it (it records no such digest) and leaves nothing registered."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(tiny_study("s", "random", options={}, trials=2))
    (tmp_path / "runs" / "s").mkdir(parents=True)
    shutil.copy(tiny_supernet, tmp_path / "runs" / "s" / "supernet.pt")
    result = run(tmp_path, "c.db")
    assert result.exit_code == 1
    assert "holds a supernet that study 's'" in " ".join(result.output.split())
    assert not (tmp_path / "c.db").exists()  # the study registered for this run was withdrawn
    assert not (tmp_path / "runs" / "s" / OWNER_FILE).exists()


def test_a_study_takes_over_its_own_folder_from_before_owners(tmp_path, monkeypatch, tiny_supernet):
    """A study that ran before folders had owners: its recorded supernet is there, so the folder
    is its own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(tiny_study("s", "random", options={}, trials=2))
    first = run(tmp_path, "d.db")
    assert first.exit_code == 0, first.output
    (tmp_path / "runs" / "s" / OWNER_FILE).unlink()  # as a folder of version 0.2 was
    again = run(tmp_path, "d.db", "--trials", "3")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "runs" / "s" / OWNER_FILE).is_file()
    study = optuna.load_study(study_name="s", storage="sqlite:///d.db")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
