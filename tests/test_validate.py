"""The ranking check (``autospik study validate``): candidates along and below the front, trained
with one schedule; Kendall tau and Spearman rho equal scipy's on the exported CSV; a killed run
goes on with the candidates left; several workers share them; bad input stores nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from optuna.trial import TrialState
from trained_study import searched, searched_db  # noqa: F401
from typer.testing import CliRunner

from autospikformer.checkpoint_file import load_checkpoint
from autospikformer.cli.app import app
from autospikformer.report.validation import VALIDATION_COLUMNS, rank_correlations
from autospikformer.study.candidates import (
    MIN_CANDIDATES,
    CandidateJob,
    train_candidates,
    validation_candidates,
)
from autospikformer.study.storage import StudyError, resolve_study, study_records
from autospikformer.study.subnets import claimed, subnet_folder
from autospikformer.study.trained_subnets import records_of, schedule_for


def opened(info: dict[str, str]):
    study, config, _ = resolve_study(info["name"], info["url"], create=False)
    return study, config


def validate(info: dict[str, str], *args: str):
    return CliRunner().invoke(app, [
        "study", "validate", info["name"], "-s", info["url"], "--runs-dir", info["runs"],
        "--supernet", info["supernet"], "--device", "cpu", "--no-progress", *args,
    ])  # fmt: skip


def test_candidates_spread_along_the_front_and_below_it(searched) -> None:  # noqa: F811
    study, _ = opened(searched)
    front = sorted(study.best_trials, key=lambda t: (t.values[1], t.number))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    chosen = validation_candidates(study, 6)
    assert chosen == validation_candidates(study, 6) == sorted(chosen)  # the same on a rerun
    on_front = [n for n in chosen if n in {t.number for t in front}]
    assert len(chosen) == 6 and len(on_front) == min(len(front), 3)
    assert front[0].number in on_front and front[-1].number in on_front  # both ends
    below = sorted((t for t in complete if t.number not in {f.number for f in front}),
                   key=lambda t: (-t.values[0], t.values[1], t.number))  # fmt: skip
    picked = [t.number for t in below if t.number in chosen]
    assert picked[0] == below[0].number and picked[-1] == below[-1].number  # best and worst
    everything = validation_candidates(study, len(complete))
    assert everything == sorted(t.number for t in complete)
    for k in (MIN_CANDIDATES - 1, len(complete) + 1):
        with pytest.raises(StudyError, match=rf"--top: {k} is not allowed \(allowed: 3 \.\. 12"):
            validation_candidates(study, k)


def test_rank_correlations_follow_their_closed_forms() -> None:
    def frame(inherited, trained) -> pd.DataFrame:
        return pd.DataFrame({"inherited_accuracy": inherited, "trained_accuracy": trained,
                             "inherited_energy_mj": inherited, "trained_energy_mj": trained})  # fmt: skip

    same = rank_correlations(frame([0.1, 0.5, 0.3, 0.9], [0.2, 0.6, 0.4, 0.95]))["accuracy"]
    assert same["kendall_tau"] == 1.0 and same["spearman_rho"] == 1.0 and same["n"] == 4
    reversed_ = rank_correlations(frame([0.1, 0.5, 0.3, 0.9], [0.9, 0.4, 0.6, 0.1]))["energy"]
    assert reversed_["kendall_tau"] == -1.0 and reversed_["spearman_rho"] == -1.0
    # one discordant pair of six: tau = (5 - 1) / 6; rho = 1 - 6 * 2 / (4 * 15) = 0.8
    one = rank_correlations(frame([1, 2, 3, 4], [1, 2, 4, 3]))["accuracy"]
    assert one["kendall_tau"] == pytest.approx(4 / 6) and one["spearman_rho"] == pytest.approx(0.8)
    untrained = rank_correlations(frame([0.1, 0.5, 0.3], [0.2, np.nan, np.nan]))["accuracy"]
    assert untrained == {"n": 1, "kendall_tau": None, "kendall_p": None, "spearman_rho": None,
                         "spearman_p": None}  # fmt: skip
    assert rank_correlations(frame([0.1, 0.5, 0.3], [0.2, 0.2, 0.2]))["accuracy"]["n"] == 3


def test_validate_reports_scipys_correlations_on_its_csv(searched, tmp_path) -> None:  # noqa: F811
    result = validate(searched, "--top", "4", "--epochs", "1", "--out", str(tmp_path / "v"))
    assert result.exit_code == 0, result.output
    study, config = opened(searched)
    chosen = validation_candidates(study, 4)
    schedule = schedule_for(config.train, epochs=1)
    records = records_of(study, schedule.id)
    assert sorted(records) == chosen
    table = pd.read_csv(tmp_path / "v" / "validation.csv")
    assert list(table.columns) == list(VALIDATION_COLUMNS)
    assert table["trial"].tolist() == chosen
    assert table["trained_accuracy"].tolist() == [records[n]["accuracy"] for n in chosen]
    assert table["start_accuracy"].tolist() == table["inherited_accuracy"].tolist()
    summary = json.loads((tmp_path / "v" / "validation.json").read_text())
    for name, x, y in (("accuracy", "inherited_accuracy", "trained_accuracy"),
                       ("energy", "inherited_energy_mj", "trained_energy_mj")):  # fmt: skip
        corr = summary["correlations"][name]
        tau = scipy.stats.kendalltau(table[x], table[y])
        rho = scipy.stats.spearmanr(table[x], table[y])
        assert corr["n"] == 4
        if corr["kendall_tau"] is None:  # a constant column: no ranking to compare
            assert table[x].nunique() == 1 or table[y].nunique() == 1
            continue
        assert corr["kendall_tau"] == tau.statistic and corr["kendall_p"] == tau.pvalue
        assert corr["spearman_rho"] == rho.statistic and corr["spearman_p"] == rho.pvalue
        assert f"{name}, inherited vs trained, 4 candidates: Kendall tau {tau.statistic:.3f}" in (
            " ".join(result.stdout.split())
        )
    assert summary["candidates"] == chosen and summary["schedule"]["id"] == schedule.id
    for name in ("validation.html", "validation.png"):
        assert (tmp_path / "v" / name).stat().st_size > 1000
    again = validate(searched, "--top", "4", "--epochs", "1", "--out", str(tmp_path / "v"))
    assert again.exit_code == 0 and "candidate " not in again.stdout  # all stored: none trained
    assert records_of(opened(searched)[0], schedule.id) == records


def test_a_killed_validation_goes_on_with_the_candidates_left(searched) -> None:  # noqa: F811
    study, config = opened(searched)
    schedule = schedule_for(config.train, epochs=1)
    command = [
        sys.executable, "-m", "autospikformer.cli", "study", "validate", "s", "--top", "4",
        "--epochs", "1", "-s", searched["url"], "--runs-dir", searched["runs"], "--supernet",
        searched["supernet"], "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not records_of(opened(searched)[0], schedule.id):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = records_of(opened(searched)[0], schedule.id)
    assert 1 <= len(before) < 4

    result = validate(searched, "--top", "4", "--epochs", "1")
    assert result.exit_code == 0, result.output
    after = records_of(opened(searched)[0], schedule.id)
    assert sorted(after) == validation_candidates(study, 4)
    for number, record in before.items():  # done before the kill: kept, not trained again
        assert after[number] == record
        assert f"trial {number}," not in result.stdout
    for number in set(after) - set(before):
        ckpt = load_checkpoint(after[number]["checkpoint"])
        assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1


def test_a_candidate_another_process_trains_is_left_to_it(searched) -> None:  # noqa: F811
    study, config = opened(searched)
    schedule = schedule_for(config.train, epochs=1)
    chosen = validation_candidates(study, 3)
    held = subnet_folder(config, searched["runs"], chosen[1], schedule)
    job = CandidateJob(
        storage_url=searched["url"], study_name="s", trials=tuple(chosen), schedule=schedule,
        runs_dir=searched["runs"], supernet=searched["supernet"], device="cpu", progress=False,
    )  # fmt: skip
    lines: list[str] = []
    with claimed(held) as mine:  # as a worker training that candidate holds it
        assert mine
        trained = train_candidates(job, say=lines.append)
    assert [r["trial"] for r in trained] == [chosen[0], chosen[2]]
    assert f"candidate 2/3: trial {chosen[1]} is trained by another process" in lines
    assert sorted(records_of(opened(searched)[0], schedule.id)) == [chosen[0], chosen[2]]
    assert [r["trial"] for r in train_candidates(job)] == [chosen[1]]  # released: its turn


@pytest.mark.slow
def test_workers_share_the_candidates(searched, tmp_path) -> None:  # noqa: F811
    result = validate(searched, "--top", "3", "--epochs", "1", "--workers", "2")
    assert result.exit_code == 0, result.output
    study, config = opened(searched)
    records = records_of(study, schedule_for(config.train, epochs=1).id)
    assert sorted(records) == validation_candidates(study, 3)
    for record in records.values():  # each trained once, by one worker, to the end
        assert load_checkpoint(record["checkpoint"])["epoch"] == 1
        assert Path(record["checkpoint"]).parent.parent.name == "subnets"


def test_bad_input_is_one_line_and_stores_nothing(searched) -> None:  # noqa: F811
    before = study_records(opened(searched)[0])
    for args, message in (
        (("--top", "2"), "--top: 2 is not allowed (allowed: 3 .. 12"),
        (("--top", "13"), "--top: 13 is not allowed"),
        (("--epochs", "0"), "--epochs: 0 is not allowed"),
        (("--device", "tpu"), "tpu"),
    ):
        result = validate(searched, *args)
        assert result.exit_code != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert study_records(opened(searched)[0]) == before
    assert not Path(searched["runs"]).exists()
