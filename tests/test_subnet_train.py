"""Training a trial's subnet as a standalone Spikformer (``autospik subnet train``): it starts
exactly from the inherited weights, resumes after a real kill to the uninterrupted result, stores
one record that the export carries, and refuses bad input in one line without storing anything."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from helpers import TINY_SPACE
from optuna.trial import TrialState
from trained_study import searched, searched_db  # noqa: F401
from typer.testing import CliRunner

from autospikformer.checkpoint import load_model
from autospikformer.checkpoint_file import load_checkpoint
from autospikformer.cli.app import app
from autospikformer.model.spikformer import Spikformer
from autospikformer.report.export import export_study
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.evaluator import export_subnet
from autospikformer.study.storage import TRAINED_PREFIX, resolve_study, study_records
from autospikformer.study.subnets import subnet_start, train_subnet
from autospikformer.study.trained_subnets import (
    FINETUNE_EPOCH_FRACTION,
    FINETUNE_LR_FACTOR,
    ID_FREE,
    SubnetSchedule,
    schedule_for,
    trained_records,
)
from autospikformer.training.config import TrainConfig
from autospikformer.training.trainer import RESUME_FREE, StandaloneTrainer

KILLER = Path(__file__).parent / "subnet_killer.py"


def opened(info: dict[str, str]):
    study, config, _ = resolve_study(info["name"], info["url"], create=False)
    return study, config


def complete(study) -> list:
    return sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def fine_tune(info, trial: int, *, epochs: int = 1, **kw):
    """Fine-tune ``trial`` of the searched study (its record, folder, whether trained now)."""
    study, config = opened(info)
    schedule = schedule_for(config.train, epochs=epochs)
    start = subnet_start(
        study, config, schedule, trial=trial, runs_dir=info["runs"], supernet=info["supernet"],
        model_file=kw.pop("model_file", None),
    )  # fmt: skip
    return train_subnet(
        study, config, start, schedule, runs_dir=info["runs"], device="cpu", progress=False, **kw
    )


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, tensor in a.items():
        assert torch.equal(tensor, b[key]), key


# --------------------------------------------------------------------------- schedules
def test_fine_tuning_is_derived_from_the_study_recipe_and_named_by_its_settings() -> None:
    train = TrainConfig.preset("digits")  # 20 epochs at 5e-3, 1 warm-up epoch
    schedule = SubnetSchedule.fine_tune(train)
    assert schedule.recipe.epochs == math.ceil(20 * FINETUNE_EPOCH_FRACTION) == 2
    assert schedule.recipe.lr == pytest.approx(5e-3 * FINETUNE_LR_FACTOR)
    assert schedule.recipe.warmup_epochs == 0 and schedule.recipe.min_lr == train.min_lr
    assert schedule.recipe.lr_at(0.0) == schedule.recipe.lr  # no warm-up: the peak at once
    assert schedule.recipe.lr_at(2.0) == pytest.approx(train.min_lr)
    same = {k: v for k, v in train.to_dict().items() if k not in ("epochs", "lr", "min_lr")}
    assert {k: getattr(schedule.recipe, k) for k in same if k not in ("warmup_epochs",
            "sandwich")} == {k: v for k, v in same.items() if k not in ("warmup_epochs",
                                                                      "sandwich")}  # fmt: skip
    scratch = SubnetSchedule.scratch(train)
    assert scratch.recipe.epochs == 20 and scratch.recipe.lr == train.lr
    # the id: kind + recipe, without the settings that leave the result unchanged
    assert ID_FREE == RESUME_FREE
    assert schedule.id.startswith("fine-tune-") and scratch.id.startswith("scratch-")
    assert SubnetSchedule.fine_tune(train, workers=3, eval_every=1).id == schedule.id
    assert SubnetSchedule.fine_tune(train, epochs=3).id != schedule.id
    with pytest.raises(Exception, match=r"^epochs: 0 is not allowed"):
        schedule_for(train, epochs=0)


# --------------------------------------------------------------------------- the start
def test_fine_tuning_starts_exactly_from_the_inherited_weights(searched, tmp_path) -> None:  # noqa: F811
    study, config = opened(searched)
    trials = complete(study)[:3]
    for trial in trials:
        done = fine_tune(searched, trial.number)
        record = done.record
        # the first evaluation, before any step, is the trial's own, to the last image
        assert record["start_accuracy"] == trial.values[0]
        assert load_checkpoint(done.folder / "model.pt")["start"] == {"test_acc": trial.values[0]}
        assert record["samples"] == config.search.eval_samples == 128
        assert record["epochs"] == 1 and record["schedule"] == "fine-tune"
    # an exported subnet of the trial holds the same weights: fine-tuning it ends bit-identical
    trial = trials[0]
    exported = tmp_path / "exported.pt"
    export_subnet(config, trial, searched["supernet"], exported, device="cpu")
    from_file = fine_tune(searched, trial.number, model_file=exported, out_dir=tmp_path / "f")
    assert from_file.record["start_accuracy"] == trial.values[0]
    by_supernet = load_checkpoint(fine_tune(searched, trial.number).folder / "model.pt")
    assert_same_state(load_checkpoint(tmp_path / "f" / "model.pt")["state_dict"],
                      by_supernet["state_dict"])  # fmt: skip


def test_the_trained_model_is_a_standalone_model_measured_as_a_trial(searched) -> None:  # noqa: F811
    study, _ = opened(searched)
    trial = complete(study)[0]
    record = fine_tune(searched, trial.number).record
    model, meta = load_model(record["checkpoint"])  # what energy --checkpoint reads
    assert meta["kind"] == "spikformer" and isinstance(model, Spikformer)
    assert model.arch == architecture_from_params(trial.params)
    assert record["num_parameters"] == model.num_parameters()
    assert 0 < record["energy_mj"] < record["ann_energy_mj"]
    assert record["energy_model"] == "sop-45nm" and record["eval_split"] == "test"
    assert record["test_samples"] == 360  # the whole test split; accuracy on the 128 of trials
    result = CliRunner().invoke(app, [
        "energy", str(model.arch), "--checkpoint", record["checkpoint"], "--dataset", "digits",
        "--batches", "2", "--batch-size", "64", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_parameters"] == model.num_parameters()


# --------------------------------------------------------------------------- resume
def test_a_killed_training_resumes_to_the_uninterrupted_result(searched, tmp_path) -> None:  # noqa: F811
    study, _ = opened(searched)
    number = complete(study)[1].number
    whole = fine_tune(searched, number, epochs=3, out_dir=tmp_path / "whole")
    reference = load_checkpoint(whole.folder / "model.pt")

    command = [sys.executable, str(KILLER), searched["url"], searched["name"], str(number),
               searched["supernet"], searched["runs"], "3", "1", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder = (
        Path(searched["runs"]) / "s" / "subnets" / f"trial-{number}-{whole.record['schedule_id']}"
    )
    assert load_checkpoint(folder / "model.pt")["epoch"] == 1  # killed in the second epoch
    records = [
        r for r in trained_records(opened(searched)[0]) if r["checkpoint"].startswith(str(folder))
    ]
    assert records == []  # nothing stored for the killed run

    resumed = fine_tune(searched, number, epochs=3)  # as 'autospik subnet train' run again
    assert resumed.folder == folder and resumed.trained_now
    final = load_checkpoint(folder / "model.pt")
    assert final["epoch"] == 3
    assert_same_state(final["state_dict"], reference["state_dict"])
    assert [r["train_loss"] for r in final["history"]] == [
        r["train_loss"] for r in reference["history"]
    ]
    for key in ("accuracy", "test_accuracy", "energy_mj", "start_accuracy"):
        assert resumed.record[key] == whole.record[key], key
    again = fine_tune(searched, number, epochs=3)  # finished and stored: nothing to do
    assert not again.trained_now and again.record == resumed.record


# --------------------------------------------------------------------------- the record
def test_the_stored_record_round_trips_through_export(searched, tmp_path) -> None:  # noqa: F811
    study, _ = opened(searched)
    front = sorted(t.number for t in study.best_trials)
    other = next(t.number for t in complete(study) if t.number not in front)
    records = {n: fine_tune(searched, n).record for n in (front[0], other)}
    study, _ = opened(searched)
    stored = {r["trial"]: r for r in trained_records(study)}
    assert stored == records
    exported = export_study(study, tmp_path / "export")
    trials = pd.read_csv(exported.paths["trials.csv"]).set_index("number")
    for number, record in records.items():
        assert trials.loc[number, "trained_accuracy"] == record["accuracy"]
        assert trials.loc[number, "trained_test_accuracy"] == record["test_accuracy"]
        assert trials.loc[number, "trained_energy_mj"] == record["energy_mj"]
        assert trials.loc[number, "trained_schedule"] == record["schedule_id"]
    assert trials["trained_accuracy"].notna().sum() == 2
    pareto = pd.read_csv(exported.paths["pareto.csv"]).set_index("number")
    assert pareto.loc[front[0], "trained_accuracy"] == records[front[0]]["accuracy"]
    summary = json.loads(exported.paths["summary.json"].read_text())
    members = {m["trial"]: m for m in summary["trained"]["members"]}
    assert summary["trained"]["trials"] == 2 and summary["trained"]["on_front"] == 1
    assert members[other]["trained_accuracy"] == records[other]["accuracy"]
    points = json.loads(exported.paths["pareto.json"].read_text())["front"]
    assert {p["trial"]: p["trained_accuracy"] for p in points}[front[0]] == records[front[0]][
        "accuracy"
    ]
    shown = CliRunner().invoke(app, ["study", "show", "s", "-s", searched["url"], "-f", "csv"])
    assert shown.exit_code == 0
    listing = pd.read_csv(io.StringIO(shown.stdout)).set_index("number")
    assert listing.loc[front[0], "trained_accuracy"] == records[front[0]]["accuracy"]
    assert (
        "trained %" in CliRunner().invoke(app, ["study", "show", "s", "-s", searched["url"]]).stdout
    )
    assert "trained subnets (2)" in exported.paths["pareto.html"].read_text()


# --------------------------------------------------------------------------- bad input
def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_bad_input_is_one_line_and_stores_nothing(searched, tmp_path) -> None:  # noqa: F811
    study, _ = opened(searched)
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    before = study_records(study)
    trial = complete(study)[0]
    other_space = tmp_path / "other.pt"  # a subnet of another space (embed dim 16)
    arch = Architecture.parse("d1-e16-t1:r1:h2:th1:tau2")
    Spikformer(arch, num_classes=10, in_channels=1, img_size=8).save(
        other_space, study="s", trial=trial.number, space="tiny",
        space_fingerprint=SearchSpace.from_dict(TINY_SPACE).fingerprint(),
    )  # fmt: skip
    common = ("-s", searched["url"], "--runs-dir", searched["runs"], "--supernet",
              searched["supernet"], "--device", "cpu")  # fmt: skip
    cases = {
        ("--trial", "99"): "has no trial 99",
        ("--trial", str(pruned.number)): f"trial {pruned.number} of study 's' is PRUNED",
        ("--model", str(other_space)): "not a subnet of study 's'",
        ("--model", str(tmp_path / "missing.pt")): "no such file",
        ("--trial", str(trial.number), "--epochs", "0"): "--epochs: 0 is not allowed",
        ("--trial", str(trial.number), "--lr", "-1"): "--lr: -1.0 is not allowed",
        ("--trial", str(trial.number), "--model", str(other_space), "--from-scratch"):
            "--from-scratch starts from none",
        (): "name the trial to train with --trial",
    }  # fmt: skip
    for args, message in cases.items():
        result = invoke("subnet", "train", "s", *args, *common)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert message in lines[0], (args, lines[0])
    assert invoke("subnet", "train", "nosuch", "--trial", "0", *common).exit_code == 1
    study, _ = opened(searched)
    assert study_records(study) == before
    assert not any(k.startswith(TRAINED_PREFIX) for k in study_records(study))
    assert not Path(searched["runs"]).exists()  # no folder made either


def test_the_cli_trains_and_says_where_it_started(searched) -> None:  # noqa: F811
    study, _ = opened(searched)
    trial = complete(study)[2]
    result = invoke("subnet", "train", "s", "--trial", str(trial.number), "--epochs", "1",
                    "-s", searched["url"], "--runs-dir", searched["runs"], "--supernet",
                    searched["supernet"], "--device", "cpu", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    accuracy = f"{100 * trial.values[0]:.2f} %"
    assert f"before training: test accuracy {accuracy} (the trial's: {accuracy})" in result.stdout
    (record,) = trained_records(opened(searched)[0])
    assert f"trained: test accuracy {100 * record['accuracy']:.2f} %" in result.stdout
    assert Path(record["checkpoint"]).parent.name == f"trial-{trial.number}-{record['schedule_id']}"


# --------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    arch = SearchSpace.from_dict(TINY_SPACE).largest()
    torch.manual_seed(100 + rank)  # each rank's own weights: DDP hands rank 0's to the other
    weights = Spikformer(arch, num_classes=10, in_channels=1, img_size=8).state_dict()
    trainer = StandaloneTrainer(
        arch=arch, initial=lambda: weights, origin={"start": "test"}, dataset="digits", data_root=None, out_dir=Path(out) / "run", device="cpu",
        progress=False, config=TrainConfig.preset("digits").replace(
            epochs=2, batch_size=16, train_samples=64, warmup_epochs=0),
    )  # fmt: skip
    trainer.run()
    torch.save(trainer.model.state_dict(), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_trains_a_standalone_model_on_two_cpu_processes_alike(tmp_path) -> None:
    import torch._dynamo  # the forked children share it, as in test_train.py

    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert_same_state(ranks[0], ranks[1])
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2 and ckpt["kind"] == "spikformer"
    assert_same_state(ckpt["state_dict"], ranks[0])
