"""The trial engine on event data written in the on-disk format, the per-trial record, and the
spread of search workers over the visible GPUs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest
import torch
from event_files import write_cifar10dvs_extract
from helpers import TINY_SPACE, study_text, tiny_study
from optuna.trial import TrialState
from typer.testing import CliRunner

from autospikformer.data.base import DataError
from autospikformer.data.loading import build_dataset, build_frames, make_loader, subset
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.study import workers as worker_module
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.workers import WorkerOptions, spawned_options, worker_devices
from autospikformer.training.evaluate import SubnetEvaluator, _load_frames


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory) -> Path:
    """A CIFAR10-DVS folder of 100 recordings (90 train, 10 test), as the figshare zips unpack."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    write_cifar10dvs_extract(root, [10] * 10, events_per_sample=64)
    return root


def dvs_supernet(variant: str = "dvs") -> SuperSpikformer:
    torch.manual_seed(0)
    space = SearchSpace.from_dict(TINY_SPACE)
    return SuperSpikformer(space, num_classes=10, in_channels=2, img_size=128, variant=variant)


def test_event_data_is_prepared_at_every_t_before_the_first_trial(dvs_root, events_reads):
    supernet = dvs_supernet()
    build_dataset("cifar10dvs", dvs_root, train=True, time_steps=1)  # the caches exist
    build_dataset("cifar10dvs", dvs_root, train=False, time_steps=1)
    events_reads.clear()
    evaluator = SubnetEvaluator(
        supernet, dataset="cifar10dvs", data_root=dvs_root, calib_batches=2, calib_batch_size=8,
        batch_size=4, device="cpu", seed=1,
    )  # fmt: skip
    assert events_reads == []  # the worker's data comes from the caches, not the events files
    for steps in (1, 2):  # every T of the space, as integer counts
        calib, test = evaluator.splits(steps)
        assert calib is not None and calib.inputs.dtype == test.inputs.dtype == torch.uint8
        assert tuple(calib.inputs.shape) == (16, steps, 2, 128, 128)
        assert tuple(test.inputs.shape) == (10, steps, 2, 128, 128)
    arch = Architecture.uniform(depth=2, embed_dim=32, mlp_ratio=2.0, num_heads=4, time_steps=2)
    result = evaluator.evaluate(arch)
    assert (result.samples, result.calib_images, result.calib_batches) == (10, 16, 2)

    # the device-held counts are the frames an ordinary loader gives, and the trial's accuracy
    # is the extracted model's on them
    model = evaluator.standalone(arch)
    test = build_dataset("cifar10dvs", dvs_root, train=False, time_steps=2)
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in make_loader(test, batch_size=4, train=False)])
        held = torch.cat([model(x) for x, _ in evaluator.splits(2)[1]])
    assert torch.equal(held, logits)
    correct = int((logits.argmax(-1) == torch.tensor(test.targets)).sum())
    assert result.accuracy == correct / 10
    assert events_reads == []
    # a subset of a subset (a holdout, then a fixed draw) is loaded through to the split
    frames = build_frames("cifar10dvs", dvs_root, train=True, augment=False, time_steps=[2])[2]
    inner = subset(frames, 40, seed=0)
    outer = subset(inner, 5, seed=1)
    held = _load_frames(outer, 2, torch.device("cpu"), False)
    want = torch.stack([frames[inner.indices[i]][0] for i in outer.indices])
    assert torch.equal(held.inputs.float(), want) and held.inputs.dtype == torch.uint8
    with pytest.raises(
        ValueError, match=r"T=3 was not prepared by this evaluator \(prepared: 1, 2"
    ):
        evaluator.splits(3)
    with pytest.raises(DataError, match="cifar10dvs is searched with the 'dvs' model"):
        SubnetEvaluator(dvs_supernet("cifar"), dataset="cifar10dvs", data_root=dvs_root)


def test_an_event_study_reads_each_events_file_once(dvs_root, tmp_path, monkeypatch, events_reads):
    """Stage 1 (training) and stage 2 (a search of 3 trials) of a CIFAR10-DVS study: every
    events file is read once in all, and the trials record what ran."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(dvs_root / "extract", root / "extract")  # fresh: no cache yet
    (tmp_path / "dvs.toml").write_text(
        study_text(
            "dvs-tiny", sampler="random", dataset="cifar10dvs", root=root, space=TINY_SPACE,
            train={"batch_size": 8, "augment": None, "train_samples": None},
            search={"trials": 3, "calib_batch_size": 8, "batch_size": 4, "eval_samples": None},
        )
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    from autospikformer.cli.app import app

    result = CliRunner().invoke(app, ["study", "run", "dvs.toml", "--device", "cpu", "--no-export"])
    assert result.exit_code == 0, result.output
    files = sorted(str(p) for p in (root / "events_np").rglob("*.npz"))
    assert len(files) == 100 and sorted(events_reads) == files
    assert not list(root.glob("frames_number_*"))
    study = optuna.load_study(study_name="dvs-tiny", storage="sqlite:///autospik.db")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        assert t.user_attrs["autospik:evaluation"] == {
            "calib_images": 8, "calib_batch_size": 8, "eval_images": 10, "eval_batch_size": 4,
            "precision": "fp32", "device": "cpu",
        }  # fmt: skip
        assert t.user_attrs["autospik:calib_batches"] == 1
    ckpt = torch.load(tmp_path / "runs" / "dvs-tiny" / "supernet.pt", weights_only=True)
    assert ckpt["variant"] == "dvs" and "blocks.0.attn.q.linear.bias" not in ckpt["state_dict"]


# --------------------------------------------------------------------------- GPUs
def test_workers_spread_over_the_visible_gpus() -> None:
    assert worker_devices("auto", 5, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda", 3, 4) == ["cuda:0", "cuda:1", "cuda:2"]
    assert worker_devices("cuda:1", 3, 4) == ["cuda:1"] * 3  # an explicit GPU is shared
    assert worker_devices("cpu", 2, 4) == ["cpu", "cpu"]
    assert worker_devices("auto", 2, 0) == ["cpu", "cpu"]


@pytest.mark.parametrize(("gpus", "expected"), [(3, ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]),
                                                (1, ["cuda:0"] * 4), (0, ["cpu"] * 4)])  # fmt: skip
def test_spawned_workers_get_their_gpu(monkeypatch, gpus: int, expected: list[str]) -> None:
    """What each spawned worker process is given, with a faked number of visible GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(worker_module.os, "cpu_count", lambda: 16)
    options = WorkerOptions(storage_url="sqlite:///x.db", study_name="s", trials=8, checkpoint="c")
    spawned = spawned_options(options, 4)
    assert [o.device for o in spawned] == expected
    assert [o.worker_index for o in spawned] == [0, 1, 2, 3]
    assert {o.threads for o in spawned} == {4}
    if gpus:
        cuda = spawned_options(WorkerOptions(**{**options.__dict__, "device": "cuda:0"}), 2)
        assert [o.device for o in cuda] == ["cuda:0", "cuda:0"]


def test_the_gpu_suite_runs_at_a_tiny_size_on_the_cpu() -> None:
    """``benchmarks/gpu_suite.py`` is one command; at a tiny size on the CPU it prints every
    figure with its reference and exits 0 (its full size needs a GPU)."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "gpu_suite.py"
    result = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--tiny", "--threads", "1",
         "--seconds", "0.5"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("device: CPU (cpu), torch ")
    summary = out.split("summary, CPU:")[1]
    for figure in (
        "training, model only, AMP, batch 8", "a new random architecture every step",
        "standalone d2-e32", "training, the real trainer", "evaluation, d2-e32",
        "with the energy meter", "search trial (16 calibration images in batches of 8, 64 test "
        "images in batches of 32, fp32 on cpu, energy measured)", "a 1000-trial study",
        "reference 2,124 images/s", "reference 5,583 images/s", "target x2 = 4,248",
        "target x3 = 16,749", "(tiny size: not comparable)",
    ):  # fmt: skip
        assert figure in summary, figure
    assert summary.count("peak memory") == 4 and "FAILED" not in out


# --------------------------------------------------------------------------- settings
def test_evaluation_and_calibration_batch_sizes_are_two_settings() -> None:
    base = tomllib.loads(tiny_study("s"))
    config = StudyConfig.from_dict(base)
    assert (config.search.batch_size, config.search.calib_batch_size, config.search.amp) == (
        128, 128, True,
    )  # fmt: skip
    base["search"].update(calib_batch_size=32, amp=False)
    config = StudyConfig.from_dict(base)
    assert (config.search.batch_size, config.search.calib_batch_size) == (128, 32)
    assert StudyConfig.from_dict(config.to_dict()) == config
    # a study stored before these settings existed keeps its meaning (calibration batch =
    # evaluation batch) and equals the same study registered now
    stored = config.to_dict()
    del stored["search"]["calib_batch_size"], stored["search"]["amp"]
    old = StudyConfig.from_dict(stored)
    assert (old.search.calib_batch_size, old.search.amp) == (128, True)
    assert StudyConfig.from_dict(tomllib.loads(tiny_study("s"))).differences(old) == []
    for key, value, allowed in (("calib_batch_size", 0, "an integer >= 1 or leave it out"),
                                ("amp", "yes", "true, false")):  # fmt: skip
        bad = tomllib.loads(tiny_study("s"))
        bad["search"][key] = value
        with pytest.raises(StudyConfigError, match=rf"^search\.{key}: .* \(allowed: {allowed}\)"):
            StudyConfig.from_dict(bad)
