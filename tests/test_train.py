"""Supernet training: recipe settings, exact resume, atomic and verified checkpoints, DDP."""

from __future__ import annotations

import csv
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from event_files import write_cifar10dvs_extract
from helpers import TINY_SPACE
from typer.testing import CliRunner

from autospikformer.checkpoint import load_supernet, load_supernet_checkpoint
from autospikformer.checkpoint_file import CheckpointError, load_checkpoint, save_checkpoint
from autospikformer.search.space import SearchSpace
from autospikformer.training.config import DIGITS_SETTINGS, TrainConfig
from autospikformer.training.trainer import SupernetTrainer, train_supernet


@pytest.fixture
def tiny_space() -> SearchSpace:
    return SearchSpace.from_dict(TINY_SPACE)


def tiny_config(**changes) -> TrainConfig:
    base = dict(
        epochs=3,
        batch_size=16,
        lr=2e-3,
        warmup_epochs=1,
        warmup_lr=1e-4,
        mixup=0.5,
        mixup_off_fraction=0.5,
        workers=0,
        train_samples=64,
        seed=3,
    )
    base.update(changes)
    return TrainConfig(**base)


def train(space, out, config, **kw) -> Path:
    return train_supernet(
        space=space,
        dataset="digits",
        data_root=None,
        out_dir=out,
        config=config,
        device="cpu",
        progress=False,
        **kw,
    )


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- configuration
def test_defaults_are_the_reference_recipe():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.min_lr, cfg.warmup_lr) == (128, 5e-4, 1e-5, 1e-5)
    assert (cfg.warmup_epochs, cfg.weight_decay, cfg.label_smoothing) == (20, 0.06, 0.1)
    assert (cfg.mixup, cfg.mixup_off_fraction, cfg.amp, cfg.sandwich) == (0.5, 2 / 3, True, False)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.preset("cifar10") == cfg
    assert TrainConfig.preset("digits") == TrainConfig(**DIGITS_SETTINGS)


def test_from_dict_names_the_bad_key():
    with pytest.raises(ValueError, match=r"^learning_rate: unknown setting \(allowed: epochs"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"^epochs: 'ten' is not allowed"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match=r"^sandwich: 1 is not allowed \(allowed: true or false"):
        TrainConfig.from_dict({"sandwich": 1})
    with pytest.raises(ValueError, match=r"^label_smoothing: 1.5 is not allowed"):
        TrainConfig.from_dict({"label_smoothing": 1.5})
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0  # an integer is a valid number


def test_schedule_warms_up_then_follows_the_cosine():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=1e-3, warmup_lr=1e-5, min_lr=1e-6)
    assert cfg.lr_at(0) == pytest.approx(1e-5)
    assert cfg.lr_at(1) == pytest.approx((1e-5 + 1e-3) / 2)
    assert cfg.lr_at(2) == pytest.approx(1e-3)
    assert cfg.lr_at(6) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6))
    assert cfg.lr_at(10) == pytest.approx(1e-6)
    assert cfg.mixup_on(6) and not cfg.mixup_on(7)  # off after 2/3 of 10 epochs


# --------------------------------------------------------------------------- resume
def test_resume_after_an_interrupted_epoch_is_exact(tiny_space, tmp_path):
    cfg = tiny_config(sandwich=True)
    whole = load_checkpoint(train(tiny_space, tmp_path / "whole", cfg))

    class Killed(Exception):
        pass

    def kill(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 2):  # in the middle of the second epoch
            raise Killed

    broken = SupernetTrainer(
        space=tiny_space, dataset="digits", data_root=None, out_dir=tmp_path / "cut",
        config=cfg, device="cpu", progress=False, step_callback=kill,
    )  # fmt: skip
    with pytest.raises(Killed):
        broken.run()
    assert load_checkpoint(tmp_path / "cut" / "supernet.pt")["epoch"] == 1
    resumed = load_checkpoint(train(tiny_space, tmp_path / "cut", cfg))

    assert resumed["epoch"] == whole["epoch"] == 3
    assert_same_state(resumed["state_dict"], whole["state_dict"])
    for a, b in zip(
        resumed["optimizer"]["state"].values(), whole["optimizer"]["state"].values(), strict=True
    ):
        assert_same_state(a, b)
    assert resumed["scheduler"]["last_epoch"] == whole["scheduler"]["last_epoch"] == 3 * 4
    assert resumed["rng"]["arch"] == whole["rng"]["arch"]
    losses = [(r["epoch"], r["train_loss"], r["train_acc"]) for r in resumed["history"]]
    assert losses == [(r["epoch"], r["train_loss"], r["train_acc"]) for r in whole["history"]]
    with (tmp_path / "cut" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[2]["train_loss"]) == whole["history"][2]["train_loss"]


def test_a_finished_checkpoint_returns_at_once(tiny_space, tmp_path):
    path = train(tiny_space, tmp_path, tiny_config(epochs=1))
    stamp = path.stat().st_mtime_ns
    start = time.perf_counter()
    assert train(tiny_space, tmp_path, tiny_config(epochs=1)) == path
    assert time.perf_counter() - start < 1.0
    assert path.stat().st_mtime_ns == stamp
    # other settings or another space: refused, naming what differs
    with pytest.raises(CheckpointError, match=r"other settings: lr=0.002 \(now 0.001\)"):
        train(tiny_space, tmp_path, tiny_config(epochs=1, lr=1e-3))
    with pytest.raises(CheckpointError, match="trained on search space 'tiny'"):
        train(SearchSpace.load("digits"), tmp_path, tiny_config(epochs=1))
    # --no-resume starts over
    train(tiny_space, tmp_path, tiny_config(epochs=1, seed=4), resume=False)
    assert load_checkpoint(path)["config"]["seed"] == 4


def test_sandwich_trains_largest_smallest_and_a_random_subnet(tiny_space, tmp_path):
    trainer = SupernetTrainer(
        space=tiny_space, dataset="digits", data_root=None, out_dir=tmp_path,
        config=tiny_config(sandwich=True), device="cpu", progress=False,
    )  # fmt: skip
    trainer._setup()
    archs = trainer.architectures()
    assert archs[:2] == [tiny_space.largest(), tiny_space.smallest()]
    assert len(archs) == 3 and tiny_space.contains(archs[2])


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint({"kind": "x", "w": torch.arange(5.0)}, path)

    def dies_half_way(obj, fh, *a, **k):
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is killed during the write

    monkeypatch.setattr("autospikformer.checkpoint_file.torch.save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"kind": "x", "w": torch.zeros(5)}, path)
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_a_corrupted_checkpoint_is_refused_clearly(tiny_space, tmp_path):
    path = train(tiny_space, tmp_path / "run", tiny_config(epochs=1))
    data = path.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated.pt' is corrupted or truncated"):
        load_supernet(truncated)

    # a flipped byte inside tensor data: torch.load reads it without complaint
    weights = load_checkpoint(path)["state_dict"]["head.weight"]
    at = data.find(weights.numpy().tobytes()[:64]) + 16
    assert at > 16
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    assert torch.load(flipped, weights_only=True)["kind"] == "supernet"
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_supernet(flipped)

    # resuming from a damaged checkpoint stops instead of silently starting over
    path.write_bytes(data[:1000])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        train(tiny_space, tmp_path / "run", tiny_config(epochs=1))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_supernet(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_supernet(tmp_path / "missing.pt")


def test_load_supernet_refuses_another_space(tiny_space, tmp_path):
    path = train(tiny_space, tmp_path, tiny_config(epochs=1))
    net, meta = load_supernet_checkpoint(path, space=tiny_space)
    assert not net.training and meta["dataset"] == "digits" and meta["epoch"] == 1
    assert_same_state(net.state_dict(), load_checkpoint(path)["state_dict"])
    digits = SearchSpace.load("digits")
    with pytest.raises(CheckpointError) as err:
        load_supernet(path, space=digits)
    message = str(err.value)
    assert f"was trained on search space 'tiny' (fingerprint {tiny_space.fingerprint()})" in message
    assert f"not on 'digits' (fingerprint {digits.fingerprint()})" in message
    # the same choices under another name are the same space
    renamed = SearchSpace.from_dict({**TINY_SPACE, "name": "renamed"})
    assert load_supernet(path, space=renamed).space.name == "renamed"


# --------------------------------------------------------------------------- event data
@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory) -> Path:
    """A CIFAR10-DVS folder of 100 recordings (90 train, 10 test), in the on-disk format."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    write_cifar10dvs_extract(root, [10] * 10, events_per_sample=64)
    return root


def test_event_data_trains_the_dvs_model_from_loaders_built_before_the_first_step(
    tiny_space, dvs_root, tmp_path, events_reads
):
    reads = events_reads
    cfg = tiny_config(epochs=2, batch_size=8, train_samples=None, mixup=0.0, augment=True)
    before_first_step: list[int] = []

    def at_step(epoch: int, step: int) -> None:
        if (epoch, step) == (0, 0):
            before_first_step.append(len(reads))

    trainer = SupernetTrainer(
        space=tiny_space, dataset="cifar10dvs", data_root=dvs_root, out_dir=tmp_path / "a",
        config=cfg, device="cpu", progress=False, step_callback=at_step,
    )  # fmt: skip
    seen: list[tuple[int, tuple[int, ...]]] = []
    trainer._setup()
    loaders = dict(trainer.data.loaders)
    assert sorted(loaders) == [1, 2] and len(reads) == 90  # every T and file before step one
    original = trainer.data.next_batch

    def spy(time_steps):
        x, y = original(time_steps)
        seen.append((time_steps, tuple(x.shape)))
        return x, y

    trainer.data.next_batch = spy
    trainer._setup = lambda: None  # keep the data and loaders built above
    trainer.run()
    assert trainer.model.variant == "dvs" and trainer.model.blocks[0].attn.q.linear.bias is None
    assert len(seen) == 2 * (90 // 8)  # an epoch is len(train) // batch whatever T is drawn
    assert all(shape == (8, t, 2, 128, 128) for t, shape in seen)
    assert {t for t, _ in seen} == {1, 2}
    assert trainer.data.loaders == loaders  # the same loaders for the whole run
    assert before_first_step == [90] and sorted(reads) == sorted(set(reads))  # read once each
    assert not list(dvs_root.glob("frames_number_*"))

    # loader workers (persistent, one per T) and a resume after a kill give the same weights:
    # the augmentation is seeded per sample, not per worker process
    class Killed(Exception):
        pass

    def kill(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 3):
            raise Killed

    with_workers = cfg.replace(workers=2)
    cut = SupernetTrainer(
        space=tiny_space, dataset="cifar10dvs", data_root=dvs_root, out_dir=tmp_path / "b",
        config=with_workers, device="cpu", progress=False, step_callback=kill,
    )  # fmt: skip
    with pytest.raises(Killed):
        cut.run()
    assert all(loader.num_workers == 1 for loader in cut.data.loaders.values())
    resumed = SupernetTrainer(
        space=tiny_space, dataset="cifar10dvs", data_root=dvs_root, out_dir=tmp_path / "b",
        config=with_workers, device="cpu", progress=False,
    )  # fmt: skip
    assert resumed.start_epoch == 1
    resumed.run()
    assert_same_state(
        load_checkpoint(tmp_path / "b" / "supernet.pt")["state_dict"],
        load_checkpoint(tmp_path / "a" / "supernet.pt")["state_dict"],
    )
    assert sorted(reads) == sorted(set(reads))  # the other runs read the cache, no events file


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
    space = SearchSpace.from_dict(TINY_SPACE)
    trainer = SupernetTrainer(
        space=space, dataset="digits", data_root=None, out_dir=Path(out) / "run",
        config=tiny_config(epochs=2, sandwich=True), device="cpu", progress=False,
    )  # fmt: skip
    archs = []
    original = trainer.architectures

    def record():
        chosen = original()
        archs.append([str(a) for a in chosen])
        return chosen

    trainer.architectures = record
    trainer.run()
    torch.save({"state": trainer.model.state_dict(), "archs": archs}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_end_with_the_same_weights(tmp_path):
    # fork: the children inherit the imported modules, including torch._dynamo, which DDP's
    # constructor imports (3-10 s per process otherwise; spawn would re-import torch as well)
    import torch._dynamo

    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["archs"] == ranks[1]["archs"]  # same architecture at every step
    assert len(ranks[0]["archs"]) == 2 * 4  # 64 samples / 2 ranks / 8 per rank, 2 epochs
    assert_same_state(ranks[0]["state"], ranks[1]["state"])
    ckpt = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    assert_same_state(ckpt["state_dict"], ranks[1]["state"])
    # the ranks trained on different halves of the data: a single process does not match
    single = load_checkpoint(train(SearchSpace.from_dict(TINY_SPACE), tmp_path / "one",
                                   tiny_config(epochs=2, sandwich=True)))  # fmt: skip
    assert not torch.equal(single["state_dict"]["head.weight"], ckpt["state_dict"]["head.weight"])


# --------------------------------------------------------------------------- CLI
def test_cli_train_and_eval(tmp_path):
    from autospikformer.cli.app import app

    space_file = tmp_path / "tiny.toml"
    space_file.write_text(
        'name = "tiny"\n[transformer]\nembed_dim = [16]\nmlp_ratio = [1.0]\nnum_heads = [2]\n'
        "depth = [1]\n[neuron]\nthreshold = [1.0]\ntau = [2.0]\ntime_steps = [1]\n"
    )
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["supernet", "train", "--space", str(space_file), "--dataset", "digits", "--out",
            str(out), "--epochs", "1", "--batch-size", "32", "--train-samples", "64",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "supernet.pt").is_file() and (out / "metrics.csv").is_file()
    result = runner.invoke(
        app,
        ["supernet", "eval", str(out / "supernet.pt"), "--arch", "smallest", "--calib-batches",
         "1", "--batch-size", "64", "--eval-samples", "64", "--device", "cpu", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"recalibrated": true' in result.output and '"samples": 64' in result.output
    bad = runner.invoke(app, ["supernet", "eval", str(space_file), "--device", "cpu"])
    assert bad.exit_code == 1
    assert "is a TOML file, not a checkpoint" in bad.output
    bad = runner.invoke(app, [*args, "--lr=-1"])
    assert bad.exit_code == 1 and "lr: -1.0 is not allowed" in bad.output
