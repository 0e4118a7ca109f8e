"""The validation protocol: a held-out part of the training split that training and BN
recalibration never see, the same on every worker and every resume, and the front's test
accuracy measured once after the search. Real data (the digits), real training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import TINY_SPACE, tiny_study
from optuna.trial import TrialState
from torch.utils.data import Subset
from typer.testing import CliRunner

from autospikformer import SearchSpace
from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.checkpoint_file import CheckpointError
from autospikformer.cli.app import app
from autospikformer.data.split import HoldoutSplit
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.storage import set_study_record, study_records
from autospikformer.training.batches import TrainBatches
from autospikformer.training.config import TrainConfig
from autospikformer.training.distributed import dist_from_env
from autospikformer.training.evaluate import SubnetEvaluator
from autospikformer.training.trainer import SupernetTrainer, train_supernet

runner = CliRunner()
DIGITS_TRAIN = 1437  # the digits' training split (scikit-learn's 1797 digits, 360 for test)


def base_indices(dataset) -> list[int]:
    """The indices into the underlying data set of a (nested) Subset."""
    if isinstance(dataset, Subset):
        inner = base_indices(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    return list(range(len(dataset)))


def test_split_is_disjoint_complete_and_fixed() -> None:
    split = HoldoutSplit(fraction=0.2, seed=3)
    train, val = split.indices(DIGITS_TRAIN)
    assert len(val) == round(0.2 * DIGITS_TRAIN) == 287
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(DIGITS_TRAIN))
    again_train, again_val = HoldoutSplit(fraction=0.2, seed=3).indices(DIGITS_TRAIN)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, HoldoutSplit(fraction=0.2, seed=4).indices(DIGITS_TRAIN)[1])
    assert split.describe(DIGITS_TRAIN)["val_size"] == 287
    assert len(HoldoutSplit(fraction=0.001, seed=0).indices(10)[1]) == 1  # never empty
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        HoldoutSplit(fraction=1.0, seed=0)


def test_the_same_split_in_another_process() -> None:
    """A worker on another machine draws the same split: its fingerprint is stable."""
    code = (
        "from autospikformer.data.split import HoldoutSplit;"
        f"print(HoldoutSplit(fraction=0.2, seed=3).fingerprint({DIGITS_TRAIN}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == HoldoutSplit(fraction=0.2, seed=3).fingerprint(DIGITS_TRAIN)


def test_training_and_recalibration_never_see_the_validation_part() -> None:
    holdout = HoldoutSplit(fraction=0.25, seed=1)
    _, val = holdout.indices(DIGITS_TRAIN)
    val = set(val.tolist())
    config = TrainConfig.preset("digits").replace(train_samples=400)
    batches = TrainBatches("digits", None, config, dist_from_env(), "cpu", holdout=holdout)
    trained_on = base_indices(batches.dataset(None))
    assert len(trained_on) == 400 and not val & set(trained_on)
    assert batches.full_size == DIGITS_TRAIN
    whole = base_indices(TrainBatches("digits", None, config, dist_from_env(), "cpu").dataset(None))
    assert val & set(whole)  # without the holdout the same draw does reach into it

    from autospikformer import SuperSpikformer

    supernet = SuperSpikformer(
        SearchSpace.from_dict(TINY_SPACE), num_classes=10, in_channels=1, img_size=8
    )
    for split in ("val", "test"):
        evaluator = SubnetEvaluator(
            supernet, dataset="digits", data_root=None, calib_batches=3, batch_size=100,
            eval_samples=150, device="cpu", seed=0, holdout=holdout, eval_split=split,
        )  # fmt: skip
        calib, evaluation = evaluator.splits(2)
        calibrated_on = base_indices(calib.source)
        assert len(calibrated_on) == 300 and not val & set(calibrated_on)
        evaluated_on = base_indices(evaluation.source)
        assert len(evaluated_on) == 150
        if split == "val":  # indices into the training split, all in the held-out part
            assert set(evaluated_on) <= val
        else:  # the test split: whole, never the training split
            assert evaluation.source.dataset is not calib.source.dataset
        assert evaluator.holdout_description(2)["fingerprint"] == holdout.fingerprint(DIGITS_TRAIN)
    with pytest.raises(ValueError, match="'val' with a holdout"):
        SubnetEvaluator(supernet, dataset="digits", data_root=None, eval_split="val")


def test_the_checkpoint_records_the_split_and_a_resume_must_keep_it(tmp_path) -> None:
    space = SearchSpace.from_dict(TINY_SPACE)
    holdout = HoldoutSplit(fraction=0.2, seed=0)
    config = TrainConfig.preset("digits").replace(epochs=1, train_samples=64)
    path = train_supernet(
        space=space, dataset="digits", data_root=None, out_dir=tmp_path, config=config,
        device="cpu", progress=False, holdout=holdout,
    )  # fmt: skip
    _, meta = load_supernet_checkpoint(path)
    assert meta["holdout"] == holdout.describe(DIGITS_TRAIN)
    # the same split resumes (finished: nothing to do); another split, or none, is refused
    SupernetTrainer(space=space, dataset="digits", data_root=None, out_dir=tmp_path,
                    config=config, device="cpu", holdout=holdout)  # fmt: skip
    for other in (None, HoldoutSplit(fraction=0.3, seed=0), HoldoutSplit(fraction=0.2, seed=1)):
        with pytest.raises(CheckpointError, match="resume with the same validation split"):
            SupernetTrainer(space=space, dataset="digits", data_root=None, out_dir=tmp_path,
                            config=config, device="cpu", holdout=other)  # fmt: skip


def test_config_fields() -> None:
    base = StudyConfig.from_dict(
        {"study": {"name": "x"}, "data": {"dataset": "digits"}, "space": {"preset": "digits"}}
    )
    assert base.search.eval_split == "test" and base.holdout is None and base.val_fraction == 0.1
    val = StudyConfig.from_dict(
        {"study": {"name": "x", "seed": 5}, "data": {"dataset": "digits", "val_fraction": 0.2},
         "space": {"preset": "digits"}, "search": {"eval_split": "val"}}
    )  # fmt: skip
    assert val.holdout == HoldoutSplit(fraction=0.2, seed=5)
    assert StudyConfig.from_dict(val.to_dict()) == val
    assert val.differences(base) == ["study.seed", "data.val_fraction", "search.eval_split"]
    with pytest.raises(
        StudyConfigError, match=r"search.eval_split: 'train' is not allowed \(allowed: test, val\)"
    ):
        StudyConfig.from_dict({**base.to_dict(), "search": {"eval_split": "train"}})
    for bad in (0, 0.6, "0.1"):
        with pytest.raises(StudyConfigError, match=r"data\.val_fraction"):
            StudyConfig.from_dict(
                {**base.to_dict(), "data": {"dataset": "digits", "val_fraction": bad}}
            )


# --- a real study under the validation protocol ----------------------------------------------
def val_study(name: str) -> str:
    text = tiny_study(name, "dsps")
    text = text.replace('dataset = "digits"', 'dataset = "digits"\nval_fraction = 0.2')
    return text.replace('sampler = "dsps"', 'sampler = "dsps"\neval_split = "val"')


@pytest.fixture(scope="module")
def searched_val(tmp_path_factory):
    folder = tmp_path_factory.mktemp("val")
    (folder / "v.toml").write_text(val_study("vtiny"))
    storage = f"sqlite:///{folder / 'studies.db'}"
    result = runner.invoke(
        app, ["study", "run", str(folder / "v.toml"), "--device", "cpu", "--storage", storage,
              "--runs-dir", str(folder / "runs")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    return folder, storage, result.stdout


def test_a_search_ranked_on_validation_reports_test_accuracy_once(searched_val) -> None:
    folder, storage, out = searched_val
    study = optuna.load_study(study_name="vtiny", storage=storage)
    record = study_records(study)["autospik:holdout"]
    assert record == HoldoutSplit(fraction=0.2, seed=0).describe(DIGITS_TRAIN)
    _, meta = load_supernet_checkpoint(folder / "runs" / "vtiny" / "supernet.pt")
    assert meta["holdout"] == record  # the supernet trained without the validation part
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5 and all(
        t.user_attrs["autospik:eval_samples"] == 128 for t in complete
    )
    assert "test split: " in out and "measured once on 360 test images" in out
    export = folder / "runs" / "vtiny" / "export"
    pareto = pd.read_csv(export / "pareto.csv")
    assert pareto["test_accuracy"].notna().all() and (pareto["test_samples"] == 360).all()
    trials = pd.read_csv(export / "trials.csv")
    assert trials.loc[~trials["pareto"], "test_accuracy"].isna().all()  # the front only
    for _, row in pareto.iterrows():  # accuracies are multiples of 1/128 and 1/360
        assert round(row["accuracy"] * 128, 6).is_integer()
        assert round(row["test_accuracy"] * 360, 6).is_integer()
    summary = json.loads((export / "summary.json").read_text())
    assert summary["protocol"]["eval_split"] == "val" and summary["protocol"]["val_fraction"] == 0.2
    assert "validation accuracy" in summary["protocol"]["accuracy"]
    assert summary["front_test_accuracy"]["measured"] == len(pareto)
    assert "validation accuracy" in (export / "pareto.html").read_text()
    table = pd.read_csv(export / "front_and_top20.csv")
    assert "test_accuracy" in table.columns
    # a rerun measures nothing again; the stored values stay
    before = {
        k: v for k, v in study_records(study).items() if k.startswith("autospik:test_accuracy:")
    }
    again = runner.invoke(app, ["study", "run", "vtiny", "--storage", storage, "--runs-dir",
                                str(folder / "runs"), "--device", "cpu", "--no-export"])  # fmt: skip
    assert again.exit_code == 0 and "test split:" not in again.stdout
    study = optuna.load_study(study_name="vtiny", storage=storage)
    after = {
        k: v for k, v in study_records(study).items() if k.startswith("autospik:test_accuracy:")
    }
    assert after == before and len(after) == len(pareto)


def test_workers_and_supernets_must_agree_with_the_split(searched_val, tmp_path) -> None:
    folder, storage, _ = searched_val
    from autospikformer.study.worker import Worker, WorkerOptions

    ckpt = str(folder / "runs" / "vtiny" / "supernet.pt")
    options = WorkerOptions(
        storage_url=storage, study_name="vtiny", trials=5, checkpoint=ckpt, device="cpu"
    )
    Worker(options)  # agrees with the recorded split
    study = optuna.load_study(study_name="vtiny", storage=storage)
    record = study_records(study)["autospik:holdout"]
    set_study_record(study, "autospik:holdout", {**record, "fingerprint": "0" * 16, "size": 1500})
    try:
        with pytest.raises(Exception, match="this machine's training files differ"):
            Worker(options)
    finally:
        set_study_record(study, "autospik:holdout", record)
    # a supernet trained on the whole training split is refused for this study
    whole = train_supernet(
        space=SearchSpace.load("digits"), dataset="digits", data_root=None, out_dir=tmp_path,
        config=TrainConfig.preset("digits").replace(epochs=1, train_samples=64),
        device="cpu", progress=False,
    )  # fmt: skip
    result = runner.invoke(app, ["study", "run", "vtiny", "--storage", storage, "--supernet",
                                 str(whole), "--device", "cpu", "--no-export"])  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert "was trained on the whole training split" in lines[0]
    assert Path(whole).is_file()


def test_supernet_train_holds_out_by_hand(tmp_path) -> None:
    """Stage 1 by hand (e.g. under torchrun) for a study under the validation protocol."""
    result = runner.invoke(
        app, ["supernet", "train", "--space", "digits", "--dataset", "digits", "--out",
              str(tmp_path), "--epochs", "1", "--train-samples", "64", "--val-fraction", "0.2",
              "--val-seed", "7", "--device", "cpu", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    _, meta = load_supernet_checkpoint(tmp_path / "supernet.pt")
    assert meta["holdout"] == HoldoutSplit(fraction=0.2, seed=7).describe(DIGITS_TRAIN)
    bad = runner.invoke(
        app, ["supernet", "train", "--space", "digits", "--dataset", "digits", "--out",
              str(tmp_path / "b"), "--val-fraction", "1.5", "--device", "cpu"],
    )  # fmt: skip
    assert bad.exit_code == 1 and "fraction must be in (0, 1)" in bad.stderr


def test_a_supernet_must_hold_out_this_machines_split() -> None:
    from autospikformer.study.holdout import check_supernet_holdout
    from autospikformer.study.storage import StudyError

    config = StudyConfig.from_dict(
        {"study": {"name": "x"}, "data": {"dataset": "digits", "val_fraction": 0.2},
         "space": {"preset": "digits"}, "search": {"eval_split": "val"}}
    )  # fmt: skip
    here = HoldoutSplit(fraction=0.2, seed=0).describe(DIGITS_TRAIN)
    check_supernet_holdout({"holdout": here}, config, "s.pt", here)  # the same split: fine
    elsewhere = HoldoutSplit(fraction=0.2, seed=0).describe(DIGITS_TRAIN + 10)
    with pytest.raises(StudyError, match="held out a validation split of other training files"):
        check_supernet_holdout({"holdout": elsewhere}, config, "s.pt", here)
    for meta in ({}, {"holdout": HoldoutSplit(fraction=0.1, seed=0).describe(DIGITS_TRAIN)}):
        with pytest.raises(StudyError, match="its supernet must never have seen those images"):
            check_supernet_holdout(meta, config, "s.pt", here)
