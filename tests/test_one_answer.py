"""One trial, one answer: `energy --study` and `supernet eval --study` give a trial's stored
numbers, and `study list/show --format csv|json` give the raw values the files hold."""

from __future__ import annotations

import io
import json

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from searched import two_studies  # noqa: F401
from typer.testing import CliRunner

from autospikformer.cli.app import app
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.storage import NUM_PARAMS_ATTR
from autospikformer.units import MJ, NJ, UJ, energy_text, energy_unit, percent

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result


def trials(info, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=info[name], storage=info["storage"])
    return [t for t in study.get_trials() if t.state == TrialState.COMPLETE]


@pytest.mark.parametrize("which", ["dsps", "random"])  # random: searched with dsps's supernet
def test_energy_and_supernet_eval_with_study_give_the_trials_numbers(two_studies, which) -> None:  # noqa: F811
    info = two_studies
    where = ("--storage", info["storage"], "--runs-dir", info["runs"])
    trial = max(trials(info, which), key=lambda t: t.values[0])
    arch = str(architecture_from_params(trial.params))
    out = invoke("energy", arch, "--study", info[which], *where, "--json").stdout
    energy = json.loads(out)
    assert energy["energy_mj"] == pytest.approx(trial.values[1], rel=1e-12)
    assert energy["num_parameters"] == trial.user_attrs[NUM_PARAMS_ATTR]
    assert energy["mode"].startswith(f"measured as study {info[which]}'s trials are")
    out = invoke(
        "supernet", "eval", "--study", info[which], "--arch", arch, "--device", "cpu", *where,
        "--json",
    ).stdout  # fmt: skip
    result = json.loads(out)
    assert result["accuracy"] == trial.values[0]
    assert result["energy_mj"] == pytest.approx(trial.values[1], rel=1e-12)


def test_study_options_that_would_change_the_answer_are_refused(two_studies) -> None:  # noqa: F811
    info = two_studies
    arch = str(architecture_from_params(trials(info, "dsps")[0].params))
    where = ("--storage", info["storage"], "--runs-dir", info["runs"])
    for args, option in (
        (("energy", arch, "--study", info["dsps"], "--dataset", "cifar10"), "--dataset"),
        (("supernet", "eval", "--study", info["dsps"], "--calib-batches", "2"), "--calib-batches"),
        (("energy", arch, "--study", info["dsps"], "--energy-model", "memory-45nm"), "--energy"),
    ):
        result = runner.invoke(app, [*args, *where])
        assert result.exit_code == 1
        line = result.stderr.strip()
        assert "\n" not in line and line.startswith(f"error: {option}"), line
        assert "cannot be combined with --study" in line
    result = runner.invoke(app, ["supernet", "eval", "--study", "nope", *where])
    assert result.exit_code == 1 and "nope" in result.stderr and "\n" not in result.stderr.strip()


def test_show_and_list_formats_hold_the_raw_values(two_studies) -> None:  # noqa: F811
    info = two_studies
    show = invoke("study", "show", info["dsps"], "-s", info["storage"], "--format", "csv").stdout
    front = pd.read_csv(io.StringIO(show))
    complete = trials(info, "dsps")
    by_number = {t.number: t for t in complete}
    assert len(front) >= 1
    for row in front.itertuples():
        assert (row.accuracy, row.energy_mj) == tuple(by_number[row.number].values)
    # the front: no complete trial dominates a member
    for row in front.itertuples():
        assert not any(
            t.values[0] >= row.accuracy and t.values[1] <= row.energy_mj and
            tuple(t.values) != (row.accuracy, row.energy_mj) for t in complete
        )  # fmt: skip
    listed = json.loads(invoke("study", "list", "-s", info["storage"], "-f", "json").stdout)
    row = next(r for r in listed if r["study"] == info["dsps"])
    assert row["complete"] == len(complete)
    assert row["best_accuracy"] == max(t.values[0] for t in complete)
    assert row["min_energy_mj"] == min(t.values[1] for t in complete)
    table = invoke("study", "show", info["dsps"], "-s", info["storage"]).stdout
    unit = energy_unit(front["energy_mj"])
    assert f"energy {unit.name}" in table
    assert unit.format(front["energy_mj"].iloc[0]) in table
    assert max(len(line) for line in table.splitlines()) > 80  # piped: not cut at 80 columns


def test_energy_units() -> None:
    assert energy_unit([1.2, 0.5, 3.0]) is MJ
    assert energy_unit([5e-4, 6e-4, 0.2]) is UJ  # the median decides, not the largest
    assert energy_unit([2e-7]) is NJ and energy_unit([1e-12]) is NJ
    assert energy_unit([]) is MJ and energy_unit([float("nan"), None]) is MJ
    assert UJ.format(5.166e-4) == "0.5166" and MJ.format(None) == "-"
    assert energy_text(1.181) == "1.181 mJ" and energy_text(2.159e-4) == "0.2159 µJ"
    assert energy_text(9.9e-5) == "99 nJ"
    assert percent(0.98333) == "98.33" and percent(float("nan")) == "-"


def test_a_finished_study_rerun_shows_its_progress_not_zero(two_studies) -> None:  # noqa: F811
    info = two_studies
    n = len(trials(info, "dsps"))
    out = invoke(
        "study", "run", info["dsps"], "--trials", str(n), "--storage", info["storage"],
        "--runs-dir", info["runs"], "--device", "cpu", "--no-export",
    ).stdout  # fmt: skip
    assert f"{n}/{n}" in out and f" 0/{n}" not in out
