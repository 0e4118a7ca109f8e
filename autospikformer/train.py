"""Supernet training: one sampled architecture per step, checkpoints that resume exactly.

Each step draws one architecture from the study's space (SPEC section 3): the transformer part
selects weight-entangled slices, the neuron part (threshold, tau, T) is an "alternate choice"
written into the LIF neurons; nothing is rebuilt. With ``sandwich=True`` a step trains the
largest, the smallest and one random architecture and sums their gradients (BigNAS).

The recipe is the reference Spikformer one (SPEC section 1, :class:`TrainConfig` defaults):
AdamW without weight decay on biases and BN, a per-step cosine schedule with linear warm-up, label
smoothing, batch mixup switched off after ``mixup_off_fraction`` of the epochs, AMP on CUDA.

Exact resume: everything random is either saved in the checkpoint (weights, optimizer,
scheduler, AMP scaler, the architecture and mixup RNGs, torch's global RNG) or derived from
``(seed, epoch)`` (the loader shuffles and worker seeds). A checkpoint is written atomically at
every epoch end, so a run killed mid-epoch resumes from the last finished epoch and ends with the
same weights, bit for bit on the CPU, as a run that was never interrupted.

Event data (CIFAR10-DVS, DVS128): frames depend on T, so one data set per T is built lazily and
each T has its own loader iterator; a step takes its batch from the iterator of its
architecture's T (an exhausted iterator restarts with a new seeded shuffle). An epoch is
``len(train split) // batch_size`` steps whatever T is drawn.

Several processes (``torchrun``): ``WORLD_SIZE`` > 1 starts DistributedDataParallel (gloo on
the CPU, NCCL on CUDA). Every rank seeds the architecture RNG alike, so all ranks train the same
architecture at each step; ``batch_size`` is the global batch, split evenly over the ranks.
Layers a subnet skips get no gradient on any rank (same architecture everywhere), so DDP runs
with ``find_unused_parameters=True``; sliced layers receive zero gradients outside the slice.
BN buffers are broadcast from rank 0 at each epoch end and the ranks' weights are compared, so a
divergence stops the run instead of silently training different models. Only rank 0 writes
files.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autospikformer.architecture import Architecture
from autospikformer.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from autospikformer.space import SearchSpace
from autospikformer.supernet import SuperSpikformer

CHECKPOINT_NAME = "supernet.pt"
METRICS_NAME = "metrics.csv"
CHECKPOINT_KIND = "supernet"
# settings that may change between a run and its resumption without changing the result
RESUME_FREE = ("workers", "eval_every")
LOG_INTERVAL = 10  # steps between progress-bar refreshes (each one syncs the device once)


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Supernet training settings; the defaults are the reference recipe (SPEC section 1).

    ``batch_size`` is the global batch (split over DDP ranks). ``mixup`` is the Beta(alpha,
    alpha) parameter of batch mixup (0 = off), switched off after ``mixup_off_fraction`` of
    the epochs. ``amp`` applies on CUDA only. ``train_samples`` trains on a fixed random subset
    of the training split (quick runs, tests). ``eval_every`` > 0 evaluates the largest and the
    smallest subnet on the test split, with BN recalibration, every that many epochs (and after
    the last) and writes their accuracy to the metrics CSV.
    """

    epochs: int = 1000
    batch_size: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_lr: float = 1e-5
    warmup_epochs: int = 20
    weight_decay: float = 0.06
    label_smoothing: float = 0.1
    mixup: float = 0.5
    mixup_off_fraction: float = 2 / 3
    sandwich: bool = False
    amp: bool = True
    seed: int = 0
    workers: int = 4
    augment: bool = True
    train_samples: int | None = None
    eval_every: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _FIELD_KINDS[f.name]
            if kind == "bool":
                ok = isinstance(value, bool)
            elif kind in ("int", "int?"):
                ok = (value is None and kind == "int?") or (
                    isinstance(value, int) and not isinstance(value, bool)
                )
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    object.__setattr__(self, f.name, float(value))
            if not ok:
                raise ValueError(f"{f.name}: {value!r} is not allowed (allowed: {_ALLOWED[kind]})")
        checks = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "a number > 0"),
            ("min_lr", self.min_lr >= 0, "a number >= 0"),
            ("warmup_lr", self.warmup_lr >= 0, "a number >= 0"),
            (
                "warmup_epochs",
                0 <= self.warmup_epochs <= self.epochs,
                "0 <= warmup_epochs <= epochs",
            ),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            ("mixup", self.mixup >= 0, "a number >= 0 (0 = off)"),
            ("mixup_off_fraction", 0 <= self.mixup_off_fraction <= 1, "a number in [0, 1]"),
            ("workers", self.workers >= 0, "an integer >= 0"),
            (
                "train_samples",
                self.train_samples is None or self.train_samples >= 1,
                "an integer >= 1, or leave it out",
            ),
            ("eval_every", self.eval_every >= 0, "an integer >= 0 (0 = never)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"{name}: {value!r} is not allowed (allowed: {allowed})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a study file's ``[train]`` table); names an unknown or bad key."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a table of training settings, got {data!r}")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ValueError(f"{key}: unknown setting (allowed: {', '.join(known)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated); ``None`` values are ignored."""
        given = {k: v for k, v in changes.items() if v is not None}
        return TrainConfig.from_dict({**self.to_dict(), **given})

    @classmethod
    def preset(cls, dataset: str) -> TrainConfig:
        """The reference recipe, or for ``digits`` the CPU-sized settings tuned for it."""
        if dataset == "digits":
            return cls(**DIGITS_SETTINGS)
        return cls()

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a fractional epoch: linear warm-up, then cosine to ``min_lr``."""
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * epoch / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1e-12)
        progress = min(max((epoch - self.warmup_epochs) / span, 0.0), 1.0)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def mixup_on(self, epoch: int) -> bool:
        return self.mixup > 0 and epoch < self.mixup_off_fraction * self.epochs


_FIELD_KINDS = {
    "epochs": "int", "batch_size": "int", "lr": "float", "min_lr": "float",
    "warmup_lr": "float", "warmup_epochs": "int", "weight_decay": "float",
    "label_smoothing": "float", "mixup": "float", "mixup_off_fraction": "float",
    "sandwich": "bool", "amp": "bool", "seed": "int", "workers": "int", "augment": "bool",
    "train_samples": "int?", "eval_every": "int",
}  # fmt: skip
_ALLOWED = {
    "int": "an integer",
    "int?": "an integer, or leave it out",
    "float": "a number",
    "bool": "true or false",
}

#: Tuned for the embedded digits set on a 2-core CPU (``benchmarks/README.md``): a few minutes.
DIGITS_SETTINGS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "lr": 5e-3,
    "min_lr": 1e-5,
    "warmup_lr": 1e-4,
    "warmup_epochs": 1,
    "weight_decay": 0.01,
    "label_smoothing": 0.1,
    "mixup": 0.0,
    "mixup_off_fraction": 2 / 3,
    "sandwich": False,
    "amp": False,
    "seed": 0,
    "workers": 0,
    "augment": False,
}


# --------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for but no CUDA GPU is available (use --device cpu)"
        )
    return dev


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a ``torchrun`` job (world size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as ``torchrun`` sets them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's ``filter_bias_and_bn``: no weight decay on biases and BN affine parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (mixup with label smoothing)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _smooth_one_hot(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / classes
    out = torch.full((labels.shape[0], classes), off, device=labels.device)
    return out.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing + off)


def _epoch_seed(seed: int, epoch: int, extra: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7_919 + extra * 104_729) % (2**63 - 1)


def state_checksums(model: nn.Module) -> torch.Tensor:
    """One float64 sum per parameter and buffer: cheap evidence that two replicas agree."""
    tensors = [*model.parameters(), *model.buffers()]
    return torch.stack([t.detach().double().sum() for t in tensors])


# --------------------------------------------------------------------------- data
class _TrainData:
    """Training batches for one epoch; for event data one data set and iterator per T."""

    def __init__(
        self,
        dataset: str,
        data_root: str | Path | None,
        config: TrainConfig,
        dist: DistInfo,
        device: torch.device,
    ):
        from autospikformer.data import dataset_info

        self.name = dataset
        self.root = data_root
        self.config = config
        self.dist = dist
        self.device = device
        self.info = dataset_info(dataset)
        if config.batch_size % dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is the global batch: it must divide evenly "
                f"over {dist.world_size} processes"
            )
        self.rank_batch = config.batch_size // dist.world_size
        self._sets: dict[int | None, Any] = {}
        probe = self.dataset(None if not self.info.event_based else 1)
        per_rank = len(probe) // dist.world_size
        self.steps_per_epoch = per_rank // self.rank_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training split has {len(probe)} samples: too few for one batch of "
                f"{config.batch_size} (lower batch_size or raise train_samples)"
            )
        self._iters: dict[int | None, Iterator[Any]] = {}
        self._restarts: dict[int | None, int] = {}
        self._epoch = 0

    def dataset(self, time_steps: int | None) -> Any:
        """The training split (for event data: at ``time_steps`` frames), built once."""
        from autospikformer.data import build_dataset, subset

        key = time_steps if self.info.event_based else None
        if key not in self._sets:
            augment = self.config.augment and self.name != "digits"
            ds = build_dataset(self.name, self.root, train=True, augment=augment, time_steps=key)
            if self.config.train_samples is not None:
                ds = subset(ds, self.config.train_samples, self.config.seed)
            self._sets[key] = ds
        return self._sets[key]

    def _loader(self, key: int | None, restart: int) -> Any:
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        from autospikformer.data import make_loader

        ds = self.dataset(key)
        stream = 0 if key is None else key
        seed = _epoch_seed(self.config.seed, self._epoch, 1000 * restart + stream)
        pin = self.device.type == "cuda"
        if not self.dist.enabled:
            loader = make_loader(
                ds, batch_size=self.rank_batch, train=True, workers=self.config.workers, seed=seed
            )
            loader.pin_memory = pin
            return loader
        sampler = DistributedSampler(
            ds,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=seed % (2**31),
            drop_last=True,
        )
        generator = torch.Generator()
        generator.manual_seed(seed + self.dist.rank)
        return DataLoader(
            ds,
            batch_size=self.rank_batch,
            sampler=sampler,
            num_workers=self.config.workers,
            drop_last=True,
            generator=generator,
            pin_memory=pin,
        )

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._iters.clear()
        self._restarts.clear()

    def next_batch(self, time_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = time_steps if self.info.event_based else None
        while True:
            if key not in self._iters:
                restart = self._restarts.get(key, 0)
                self._restarts[key] = restart + 1
                self._iters[key] = iter(self._loader(key, restart))
            try:
                x, y = next(self._iters[key])
                break
            except StopIteration:
                del self._iters[key]
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)


# --------------------------------------------------------------------------- trainer
class SupernetTrainer:
    """Trains one supernet into ``out_dir``; :func:`train_supernet` is the usual entry point.

    ``step_callback(epoch, step)`` runs after every optimizer step (tests use it to interrupt a
    run mid-epoch).
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        dataset: str,
        data_root: str | Path | None,
        out_dir: str | Path,
        config: TrainConfig,
        device: str | torch.device = "auto",
        resume: bool = True,
        progress: bool = True,
        step_callback: Callable[[int, int], None] | None = None,
    ):
        from autospikformer.data import dataset_info

        self.space = space
        self.dataset_name = dataset
        self.data_root = data_root
        self.out_dir = Path(out_dir)
        self.config = config
        self.info = dataset_info(dataset)
        self.dist = dist_from_env()
        self.device = self._device(device)
        self.progress = progress and self.dist.is_main
        self.step_callback = step_callback
        self.path = self.out_dir / CHECKPOINT_NAME
        self.amp = config.amp and self.device.type == "cuda"
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self._resume_state: dict[str, Any] | None = None
        if resume and self.path.exists():
            ckpt = load_checkpoint(self.path, kind=CHECKPOINT_KIND)
            self._resume_state = self._check_resumable(ckpt)
            self.start_epoch = int(self._resume_state["epoch"])
        self.model: SuperSpikformer | None = None

    # --- setup ---------------------------------------------------------------------------
    def _device(self, device: str | torch.device) -> torch.device:
        dev = resolve_device(device)
        if self.dist.enabled and dev.type == "cuda":
            dev = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(dev)
        return dev

    def _check_resumable(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """Refuse a checkpoint of another space, data set or recipe (one clear line each)."""
        check_space(ckpt, self.space, self.path)
        if ckpt.get("dataset") != self.dataset_name:
            raise CheckpointError(
                f"'{self.path}' was trained on data set {ckpt.get('dataset')!r}, not "
                f"{self.dataset_name!r}; use another output folder or --no-resume"
            )
        saved = {k: v for k, v in ckpt.get("config", {}).items() if k not in RESUME_FREE}
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUME_FREE}
        diff = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in mine.items() if saved.get(k) != v]
        if diff:
            raise CheckpointError(
                f"'{self.path}' was trained with other settings: {', '.join(diff)}; resume with "
                "the same settings, or use another output folder or --no-resume"
            )
        world = int(ckpt.get("world_size", 1))
        if world != self.dist.world_size:
            raise CheckpointError(
                f"'{self.path}' was trained by {world} process(es), this run has "
                f"{self.dist.world_size}: resume with the same number so batches stay the same"
            )
        return ckpt

    @property
    def complete(self) -> bool:
        return self.start_epoch >= self.config.epochs

    def _setup(self) -> None:
        cfg = self.config
        if self.dist.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        torch.manual_seed(cfg.seed)
        self.model = SuperSpikformer(
            self.space,
            num_classes=self.info.num_classes,
            in_channels=self.info.in_channels,
            img_size=self.info.img_size,
        ).to(self.device)
        self.data = _TrainData(self.dataset_name, self.data_root, cfg, self.dist, self.device)
        self.steps_per_epoch = self.data.steps_per_epoch
        # fused kernels on CUDA; the multi-tensor path on the CPU (about 2x faster than a loop)
        cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            fused=True if cuda else None,
            foreach=None if cuda else True,
        )
        spe = self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cfg.lr_at(step / spe) / cfg.lr
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.arch_rng = random.Random(cfg.seed)
        self.mixup_rng = random.Random(cfg.seed + 1)
        if self._resume_state is not None:
            self._restore(self._resume_state)
            self._resume_state = None
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        assert self.model is not None
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        self.arch_rng.setstate(_as_state(rng["arch"]))
        self.mixup_rng.setstate(_as_state(rng["mixup"]))
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = list(ckpt.get("history", []))

    # --- training ------------------------------------------------------------------------
    def architectures(self) -> list[Architecture]:
        """This step's architectures: one random draw, or largest + smallest + random."""
        arch = self.space.sample(self.arch_rng)
        if self.config.sandwich:
            return [self.space.largest(), self.space.smallest(), arch]
        return [arch]

    def _train_step(self, epoch: int, archs: list[Architecture]) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        mix = cfg.mixup_on(epoch)
        lam = self.mixup_rng.betavariate(cfg.mixup, cfg.mixup) if mix else 1.0
        batch: tuple[torch.Tensor, torch.Tensor] | None = None
        for i, arch in enumerate(archs):
            # static data: the sandwich's subnets share one batch; event data: one batch per T
            if batch is None or self.data.info.event_based:
                batch = self.data.next_batch(arch.time_steps)
            x, y = batch
            if mix:
                targets = _smooth_one_hot(y, self.info.num_classes, cfg.label_smoothing)
                targets = lam * targets + (1 - lam) * targets.flip(0)
                inputs = lam * x + (1 - lam) * x.flip(0)
                labels = y if lam >= 0.5 else y.flip(0)
            else:
                inputs, labels = x, y
            last = i == len(archs) - 1
            sync = (
                self.net.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            )
            with sync:
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                    logits = self.net(inputs, arch)
                if mix:
                    loss = soft_target_loss(logits, targets)
                else:
                    loss = F.cross_entropy(
                        logits.float(), labels, label_smoothing=cfg.label_smoothing
                    )
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach() * labels.shape[0]
            correct += (logits.detach().argmax(-1) == labels).sum()
            seen += labels.shape[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum, correct, torch.tensor(seen)

    def run(self) -> Path:
        """Train the remaining epochs; returns the checkpoint path."""
        if self.complete:
            return self.path
        self._setup()
        assert self.model is not None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_metrics()
        bar = _ProgressBar(
            self.config.epochs, self.steps_per_epoch, self.start_epoch, self.progress
        )
        with bar:
            for epoch in range(self.start_epoch, self.config.epochs):
                self._run_epoch(epoch, bar)
        return self.path

    def _run_epoch(self, epoch: int, bar: _ProgressBar) -> None:
        assert self.model is not None
        self.model.train()
        self.data.start_epoch(epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            s_loss, s_correct, s_seen = self._train_step(epoch, self.architectures())
            loss_sum += s_loss
            correct += s_correct
            seen += int(s_seen)
            if self.step_callback is not None:
                self.step_callback(epoch, step)
            if bar.enabled and ((step + 1) % LOG_INTERVAL == 0 or step + 1 == self.steps_per_epoch):
                rate = (step + 1) * self.config.batch_size / (time.perf_counter() - start)
                bar.update(epoch, step + 1, float(loss_sum) / seen, float(correct) / seen, rate)
        seconds = time.perf_counter() - start
        totals = torch.stack(
            [loss_sum.double(), correct.double(), loss_sum.new_tensor(seen).double()]
        )
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
            self._sync_replicas()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / totals[2]),
            "train_acc": float(totals[1] / totals[2]),
            "images_per_s": self.steps_per_epoch * self.config.batch_size / seconds,
            "seconds": seconds,
            "steps": self.steps_per_epoch,
        }
        if self.dist.is_main:
            every = self.config.eval_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == self.config.epochs):
                row.update(self._evaluate_extremes())
        self.history.append(row)
        if self.dist.is_main:
            self._save(epoch + 1)
            self._write_metrics()
            bar.epoch_done(row)
        if self.dist.enabled:
            torch.distributed.barrier()

    def _sync_replicas(self) -> None:
        """Broadcast rank 0's BN buffers and stop if the ranks' weights differ."""
        assert self.model is not None
        dist = torch.distributed
        for buf in self.model.buffers():
            dist.broadcast(buf, src=0)
        sums = state_checksums(self.model)
        high, low = sums.clone(), sums.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        if not torch.equal(high, low):
            raise RuntimeError(
                "DDP replicas diverged: the ranks hold different weights (did every rank "
                "sample the same architectures?)"
            )

    def _evaluate_extremes(self) -> dict[str, float]:
        from autospikformer.evaluate import SubnetEvaluator

        assert self.model is not None
        evaluator = SubnetEvaluator(
            self.model,
            dataset=self.dataset_name,
            data_root=self.data_root,
            calib_batches=4,
            batch_size=min(self.config.batch_size, 128),
            device=self.device,
            seed=self.config.seed,
        )
        out = {
            "test_acc_largest": evaluator.evaluate(self.space.largest(), energy=False).accuracy,
            "test_acc_smallest": evaluator.evaluate(self.space.smallest(), energy=False).accuracy,
        }
        self.model.train()
        return out

    # --- files ---------------------------------------------------------------------------
    def _save(self, epoch: int) -> None:
        assert self.model is not None
        rng: dict[str, Any] = {
            "arch": self.arch_rng.getstate(),
            "mixup": self.mixup_rng.getstate(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        payload = {
            "kind": CHECKPOINT_KIND,
            "format_version": FORMAT_VERSION,
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "num_classes": self.info.num_classes,
            "in_channels": self.info.in_channels,
            "img_size": self.info.img_size,
            "dataset": self.dataset_name,
            "epoch": epoch,
            "epochs": self.config.epochs,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "history": self.history,
            "torch_version": str(torch.__version__),
        }
        save_checkpoint(payload, self.path)

    def _write_metrics(self) -> None:
        """Rewrite the CSV from the history the checkpoint holds (consistent after a kill)."""
        path = self.out_dir / METRICS_NAME
        columns = ["epoch", "lr", "train_loss", "train_acc", "images_per_s", "seconds", "steps"]
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, path)


def _as_state(state: Any) -> Any:
    """``random.Random.setstate`` wants tuples; a checkpoint may hand back lists."""
    if isinstance(state, list):
        return tuple(_as_state(s) for s in state)
    if isinstance(state, tuple):
        return tuple(_as_state(s) for s in state)
    return state


class _ProgressBar:
    """A rich bar (epoch, steps, loss, accuracy, images/s) plus one summary line per epoch."""

    def __init__(self, epochs: int, steps: int, start_epoch: int, enabled: bool):
        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self.start_epoch = start_epoch
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.3f}  acc {task.fields[acc]:6.1%}  "
                "{task.fields[ips]:7.0f} img/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._progress.__enter__()
        remaining = (self.epochs - self.start_epoch) * self.steps
        self._task = self._progress.add_task(
            f"epoch {self.start_epoch + 1}/{self.epochs}",
            total=remaining,
            loss=0.0,
            acc=0.0,
            ips=0.0,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, epoch: int, step: int, loss: float, acc: float, ips: float) -> None:
        if self._progress is None:
            return
        done = (epoch - self.start_epoch) * self.steps + step
        self._progress.update(
            self._task,
            completed=done,
            description=f"epoch {epoch + 1}/{self.epochs}",
            loss=loss,
            acc=acc,
            ips=ips,
        )

    def epoch_done(self, row: dict[str, Any]) -> None:
        if self._progress is None:
            return
        extra = "".join(
            f"  {k.removeprefix('test_acc_')} {v:.1%}"
            for k, v in row.items()
            if k.startswith("test_acc_")
        )
        self._progress.console.print(
            f"epoch {row['epoch']}/{self.epochs}  loss {row['train_loss']:.3f}  "
            f"acc {row['train_acc']:.1%}  {row['images_per_s']:.0f} img/s  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f} s{extra}",
            highlight=False,
        )


# --------------------------------------------------------------------------- public API
def train_supernet(
    *,
    space: SearchSpace,
    dataset: str,
    data_root: str | Path | None,
    out_dir: str | Path,
    config: TrainConfig,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train a supernet of ``space`` on ``dataset``; returns ``out_dir / "supernet.pt"``.

    With ``resume`` an existing checkpoint in ``out_dir`` is continued exactly (a finished one
    returns at once); it must match the space, the data set and the settings.
    """
    trainer = SupernetTrainer(
        space=space,
        dataset=dataset,
        data_root=data_root,
        out_dir=out_dir,
        config=config,
        device=device,
        resume=resume,
        progress=progress,
    )
    return trainer.run()


def check_space(ckpt: dict[str, Any], space: SearchSpace, path: str | Path) -> None:
    """Refuse a checkpoint trained on another search space, naming both spaces."""
    fingerprint = ckpt.get("space_fingerprint")
    if fingerprint != space.fingerprint():
        trained = ckpt.get("space", {}).get("name", "?")
        raise CheckpointError(
            f"checkpoint '{path}' was trained on search space {trained!r} "
            f"(fingerprint {fingerprint}), not on {space.name!r} (fingerprint "
            f"{space.fingerprint()}): load it with its own space or train a supernet for "
            f"{space.name!r}"
        )


def load_supernet_checkpoint(
    path: str | Path, *, space: SearchSpace | None = None, map_location: Any = "cpu"
) -> tuple[SuperSpikformer, dict[str, Any]]:
    """The supernet of a checkpoint (eval mode) and the checkpoint's metadata (no tensors)."""
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    saved_space = SearchSpace.from_dict(ckpt["space"])
    if saved_space.fingerprint() != ckpt.get("space_fingerprint"):
        raise CheckpointError(
            f"checkpoint '{path}' is inconsistent: its space does not match its fingerprint"
        )
    if space is not None:
        check_space(ckpt, space, path)
    model = SuperSpikformer(
        space or saved_space,
        num_classes=int(ckpt["num_classes"]),
        in_channels=int(ckpt["in_channels"]),
        img_size=int(ckpt["img_size"]),
    )
    model.load_state_dict(ckpt["state_dict"])
    model.to(next(iter(ckpt["state_dict"].values())).device)
    model.eval()
    meta = {
        k: ckpt[k]
        for k in (
            "kind", "space", "space_fingerprint", "num_classes", "in_channels", "img_size",
            "dataset", "epoch", "epochs", "config", "world_size", "history",
        )
        if k in ckpt
    }  # fmt: skip
    return model, meta


def load_supernet(
    path: str | Path, *, space: SearchSpace | None = None, map_location: Any = "cpu"
) -> SuperSpikformer:
    """Rebuild the supernet of a checkpoint written by :func:`train_supernet` (eval mode).

    A ``space`` other than the one the checkpoint was trained on, or a damaged file, raises one
    :class:`~autospikformer.checkpoint.CheckpointError`.
    """
    return load_supernet_checkpoint(path, space=space, map_location=map_location)[0]
