"""`autospik study` / `autospik subnet` through typer's CliRunner, on a real (tiny) digits study.

Nothing is mocked: the supernet is trained (1 epoch on 128 digits), every trial is a real BN
recalibration and evaluation pass. Bad inputs must exit non-zero with one line on stderr and
leave the storage byte-for-byte as it was (compared as a full SQL dump).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from helpers import tiny_study
from optuna.trial import TrialState
from typer.testing import CliRunner

from autospikformer import SearchSpace, Spikformer
from autospikformer.cli.app import app
from autospikformer.report.tables import COLUMNS
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import study_records

runner = CliRunner()


def write_study(folder: Path, name: str = "tiny", sampler: str = "dsps") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(tiny_study(name, sampler))
    return path


def dump(db: Path) -> str:
    """Every row of every table: equal dumps mean an untouched storage."""
    con = sqlite3.connect(db)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def snapshot(url: str) -> list[dict]:
    """The whole storage as data: every study (directions, user and system attributes) with
    every trial (state, parameters, values, attributes, times)."""
    storage = optuna.storages.RDBStorage(url)
    out = []
    for summary in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study_id = storage.get_study_id_from_name(summary.study_name)
        trials = [
            {
                "number": t.number, "state": t.state.name, "params": t.params,
                "distributions": {k: str(d) for k, d in t.distributions.items()},
                "values": t.values, "user_attrs": t.user_attrs, "system_attrs": t.system_attrs,
                "intermediate": t.intermediate_values,
                "times": (str(t.datetime_start), str(t.datetime_complete)),
            }
            for t in storage.get_all_trials(study_id)
        ]  # fmt: skip
        out.append(
            {
                "name": summary.study_name,
                "directions": [d.name for d in summary.directions],
                "user_attrs": storage.get_study_user_attrs(study_id),
                "system_attrs": storage.get_study_system_attrs(study_id),
                "trials": trials,
            }
        )
    storage.engine.dispose()
    return out


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny study run end to end once in its own folder: (folder, storage url)."""
    folder = tmp_path_factory.mktemp("cli")
    write_study(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = invoke("study", "run", "tiny.toml", "--trials", "5", "--device", "cpu")
    assert result.exit_code == 0, result.output + result.stderr
    return folder, f"sqlite:///{folder / 'autospik.db'}", result.stdout


def test_run_end_to_end(searched) -> None:
    folder, url, out = searched
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 5
    assert study.metric_names == ["accuracy", "energy_mj"]
    stored = StudyConfig.from_dict(study_records(study)["autospik:config"])
    assert stored == StudyConfig.load(folder / "tiny.toml")
    for t in complete:
        assert 0.0 <= t.values[0] <= 1.0 and t.values[1] > 0
        assert t.user_attrs["autospik:num_parameters"] > 0
        assert 0.0 <= t.user_attrs["autospik:firing_rate"] <= 4.0
        assert t.user_attrs["autospik:calib_batches"] == 1
        assert t.user_attrs["autospik:seconds"] > 0
        arch = architecture_from_params(t.params)
        assert t.user_attrs["autospik:architecture"] == str(arch)
        assert t.user_attrs["autospik:architecture_json"] == arch.to_dict()
        assert SearchSpace.load("digits").contains(arch)
    export = folder / "runs" / "tiny" / "export"
    assert f"exported front: {Path('runs/tiny/export/pareto.csv')}" in out
    trials = pd.read_csv(export / "trials.csv")
    assert list(trials.columns) == list(COLUMNS)
    assert (trials["state"] == "COMPLETE").sum() == 5
    assert (folder / "runs" / "tiny" / "supernet.pt").is_file()


def test_rerun_is_a_no_op_and_more_trials_continue(searched, monkeypatch) -> None:
    folder, url, _ = searched
    monkeypatch.chdir(folder)
    result = invoke("study", "run", "tiny", "--trials", "5", "--no-export")
    assert result.exit_code == 0, result.stderr
    assert "5 complete trials (0 in this run" in result.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5


def test_create_list_show_export(searched, tmp_path, monkeypatch) -> None:
    folder, url, _ = searched
    monkeypatch.chdir(folder)
    same = invoke("study", "create", "tiny.toml")
    assert same.exit_code == 0 and "already exists (same configuration)" in same.stdout
    listed = invoke("study", "list")
    assert listed.exit_code == 0 and "tiny" in listed.stdout and "5/5" in listed.stdout
    shown = invoke("study", "show", "tiny")
    assert shown.exit_code == 0 and "Pareto front" in shown.stdout
    study = optuna.load_study(study_name="tiny", storage=url)
    for t in study.best_trials:
        assert f"{100 * t.values[0]:.2f}" in shown.stdout
    out = tmp_path / "exp"
    exported = invoke("study", "export", "tiny", "--out", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert "Table 2: Pareto front" in exported.stdout
    assert "Table 3: top 20 % accuracy" in exported.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "front_and_top20.csv",
            "hypervolume.csv",
            "pareto.csv",
            "pareto.html",
            "pareto.pdf",
            "pareto.png",
            "pareto.json",
            "summary.json",
            "trials.csv",
        ]
    )
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert sorted(p["trial"] for p in front) == sorted(t.number for t in study.best_trials)
    # what each trial's evaluation ran, as JSON that a script reads back
    trials = pd.read_csv(out / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert [json.loads(cell)["eval_images"] for cell in done["evaluation"]] == [128] * len(done)
    # the titles say what the numbers are
    n_front = len(study.best_trials)
    assert f"Pareto front ({n_front} of 5 complete trials)" in " ".join(shown.stdout.split())
    assert "ranked on" in listed.stdout and "test" in listed.stdout
    assert "best accuracy on the split the study ranks on" in " ".join(listed.stdout.split())


def test_subnet_export_reproduces_the_trial(searched, tmp_path, monkeypatch) -> None:
    folder, url, _ = searched
    monkeypatch.chdir(folder)
    study = optuna.load_study(study_name="tiny", storage=url)
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.values[0])
    out = tmp_path / "best.pt"
    result = invoke("subnet", "export", "tiny", "--trial", str(best.number), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    model = Spikformer.load(out)
    assert str(model.arch) == best.user_attrs["autospik:architecture"]
    assert model.num_parameters() == best.user_attrs["autospik:num_parameters"]
    # the command re-evaluated the saved file: standalone accuracy equals the trial's
    pct = f"{100 * best.values[0]:.2f} %"
    assert f"accuracy {pct} standalone vs {pct} in the study" in result.stdout
    bad = invoke("subnet", "export", "tiny", "--trial", "999", "--out", str(out))
    assert_one_line_error(bad, "has no trial 999")


# --- bad inputs: one line, non-zero, storage untouched ---------------------------------------
def test_unknown_study_leaves_no_storage_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (
        ("run", "nosuch"),
        ("export", "nosuch"),
        ("show", "nosuch"),
        ("dashboard", "x"),
    ):
        assert_one_line_error(invoke("study", *command), "no study named", "no study storage at")
    assert_one_line_error(invoke("study", "list"), "no study storage at autospik.db")
    assert not (tmp_path / "autospik.db").exists()


def test_bad_inputs_leave_the_storage_untouched(searched, tmp_path, monkeypatch) -> None:
    folder, url, _ = searched
    db = folder / "autospik.db"
    monkeypatch.chdir(tmp_path)
    s = ["--storage", url]
    # a study whose space lives in a file, registered before the file is edited
    (tmp_path / "myspace.toml").write_text(
        _space_toml(SearchSpace.load("digits").to_dict(), "myspace")
    )
    spaced = write_study(tmp_path, "spaced")
    spaced.write_text(spaced.read_text().replace('preset = "digits"', 'file = "myspace.toml"'))
    assert invoke("study", "create", str(spaced), *s).exit_code == 0
    (tmp_path / "myspace.toml").write_text(
        (tmp_path / "myspace.toml").read_text().replace("depth = [1, 2]", "depth = [1]")
    )
    before, before_dump = snapshot(url), dump(db)
    assert [study["name"] for study in before] == ["spaced", "tiny"]

    assert_one_line_error(
        invoke("study", "run", "nosuch", *s),
        "no study named 'nosuch'",
        "studies there: spaced, tiny",
    )
    # malformed file: the field and the allowed values
    bad = write_study(tmp_path, "bad")
    bad.write_text(bad.read_text().replace('sampler = "dsps"', 'sampler = "cmaes"'))
    assert_one_line_error(
        invoke("study", "create", str(bad), *s),
        "bad.toml: search.sampler: 'cmaes' is not a sampler (allowed: dsps, dsps-plus, nsga2, tpe, gp, random)",
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\n")
    assert_one_line_error(invoke("study", "run", str(broken), *s), "not valid TOML")
    for old, new, message in [
        ("trials = 5", "trails = 5", "search.trails: unknown field (allowed: "),
        ("trials = 5", 'trials = "5"', "search.trials: '5' is not allowed (allowed: an integer"),
        ("calib_batches = 1", "calib_batches = -1", "search.calib_batches: -1 is not allowed"),
        ('name = "bad"', 'name = "my study"', "study.name: 'my study' is not allowed"),
        ('name = "bad"', 'name = "étude"', "study.name: 'étude' is not allowed"),
        ('name = "bad"', 'name = ".."', "study.name: '..' is not allowed"),
    ]:
        bad.write_text(write_study(tmp_path, "bad").read_text().replace(old, new))
        line = assert_one_line_error(invoke("study", "run", str(bad), *s), message)
        if "trails" in new:
            assert line.endswith("; did you mean 'trials'?")
    # same name, other configuration
    other = write_study(tmp_path, "tiny", sampler="random")
    assert_one_line_error(
        invoke("study", "create", str(other), *s),
        "study 'tiny' already exists with a different configuration",
        "search.options, search.sampler",
    )
    # the space file was edited after the study was created: the stored fingerprint differs
    edited = SearchSpace.load(tmp_path / "myspace.toml")
    stored = SearchSpace.from_dict(before[0]["system_attrs"]["autospik:config"]["space"])
    assert_one_line_error(
        invoke("study", "run", str(spaced), *s),
        "study 'spaced' already exists with a different configuration (differs in: space "
        f"(fingerprint {stored.fingerprint()} stored, {edited.fingerprint()} now: was the space "
        "file edited?))",
    )
    # a supernet of another space
    from autospikformer.training.config import TrainConfig
    from autospikformer.training.trainer import train_supernet

    space = SearchSpace.from_dict(
        {**SearchSpace.load("digits").to_dict(), "name": "other"}
        | {"transformer": {"embed_dim": [32], "mlp_ratio": [2.0], "num_heads": [2], "depth": [1]}}
    )
    foreign = train_supernet(
        space=space, dataset="digits", data_root=None, out_dir=tmp_path / "other",
        config=TrainConfig.preset("digits").replace(epochs=1, train_samples=64),
        device="cpu", progress=False,
    )  # fmt: skip
    assert_one_line_error(
        invoke("study", "run", "tiny", "--supernet", str(foreign), *s),
        "trained on search space 'other'",
    )
    # a subnet export with that checkpoint is refused the same way
    assert_one_line_error(
        invoke("subnet", "export", "tiny", "--trial", "0", "--out", "x.pt", "--supernet",
               str(foreign), *s),
        "trained on search space 'other'",
    )  # fmt: skip
    # register-then-fail: a new study whose run cannot start is not registered at all
    assert_one_line_error(
        invoke("study", "run", "digits", "--supernet", str(foreign), *s),
        "trained on search space 'other'",
    )
    c10 = write_study(tmp_path, "c10")
    c10.write_text(
        c10.read_text()
        .replace('dataset = "digits"', 'dataset = "cifar10"\nroot = "no-cifar-here"')
        .replace('preset = "digits"', 'preset = "S_S"')
    )
    assert_one_line_error(
        invoke("study", "run", str(c10), *s),
        "cifar10: data folder 'no-cifar-here' does not exist (data.root, --data-root)",
    )
    fresh = write_study(tmp_path, "fresh")
    devices = ["bogus", "cuda:7"] if torch.cuda.is_available() else ["bogus", "cuda"]
    for device in devices:
        assert_one_line_error(invoke("study", "run", str(fresh), "--device", device, *s), "device")
        assert_one_line_error(invoke("study", "run", "tiny", "--device", device, *s), "device")
    assert_one_line_error(
        invoke("study", "run", str(fresh), "--supernet", "missing.pt", *s),
        "--supernet missing.pt: no such file",
    )
    assert not (tmp_path / "runs").exists()  # no runs/<study>/supernet.lock either
    assert snapshot(url) == before
    assert dump(db) == before_dump


def _space_toml(space: dict, name: str) -> str:
    lines = [f'name = "{name}"']
    for table in ("transformer", "neuron"):
        lines.append(f"[{table}]")
        lines += [f"{key} = {list(values)}" for key, values in space[table].items()]
    return "\n".join(lines) + "\n"


def test_storage_that_does_not_connect(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_study(tmp_path)
    pg = "postgresql+psycopg2://autospik:secret@127.0.0.1:1/autospik"
    result = invoke("study", "create", "tiny.toml", "--storage", pg)
    assert_one_line_error(
        result, "cannot open storage postgresql+psycopg2://autospik:***@127.0.0.1:1"
    )
    assert "secret" not in result.stderr
    assert_one_line_error(invoke("study", "list", "--storage", pg), "cannot open storage")
    assert_one_line_error(
        invoke("study", "create", "tiny.toml", "--storage", "sqlite:////nonexistent/dir/x.db"),
        "folder /nonexistent/dir does not exist",
    )
    assert_one_line_error(
        invoke("study", "list", "--storage", "nonsense://"),
        "storage URL 'nonsense://' is not usable; SQLAlchemy knows no database kind 'nonsense'",
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.toml"]
