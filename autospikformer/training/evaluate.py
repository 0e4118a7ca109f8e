"""Subnet evaluation: accuracy and energy of any architecture, weights inherited from a supernet.

Running statistics in a supernet's BN layers are a blend of every subnet trained, so they fit no
single one; before a subnet is evaluated its statistics are re-estimated (BN recalibration,
BigNAS/OFA practice, SPEC section 3): the active slice of every BN is reset, a fixed set of
training batches runs in train mode without gradients, and ``momentum=None`` makes the result
their exact cumulative average. Only the active slice of the BN layers the subnet uses changes.

:class:`SubnetEvaluator` is built once per worker and reused for many trials: it holds a fixed
calibration subset and a fixed evaluation subset (preloaded to the device as tensors when they
are small), so a trial costs one recalibration and one evaluation pass, during which the energy
meter measures the firing rates. Every call restores the supernet's BN buffers afterwards, so a
trial's result does not depend on the trials before it. Event data sets are built per T lazily.

With a ``holdout`` (the validation part of the training split, SPEC section 5) calibration
batches come from the rest of the training split only, and ``eval_split="val"`` evaluates on
the held-out part instead of the test split.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from autospikformer.data.base import dataset_info
from autospikformer.data.loading import build_dataset, make_loader, subset
from autospikformer.data.split import HoldoutSplit
from autospikformer.device import resolve_device
from autospikformer.energy import EnergyMeter
from autospikformer.search.architecture import Architecture

#: Above this size (MB, inputs of one split) a split is streamed from a loader, not preloaded.
PRELOAD_LIMIT_MB = 512


@dataclass
class SubnetResult:
    """One evaluated subnet; ``accuracy`` is a fraction in [0, 1], energy in mJ per image."""

    arch: Architecture
    accuracy: float
    energy_mj: float
    mean_firing_rate: float
    num_parameters: int
    report: Any  # autospikformer.energy.EnergyReport, or None with energy=False
    seconds: float
    samples: int = 0
    recalibrated: bool = True
    calib_batches: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, layers: bool = False) -> dict[str, Any]:
        """JSON-safe summary; ``layers=True`` adds the per-layer energy table."""
        out: dict[str, Any] = {
            "arch": self.arch.to_dict(),
            "arch_str": str(self.arch),
            "accuracy": self.accuracy,
            "energy_mj": None if math.isnan(self.energy_mj) else self.energy_mj,
            "mean_firing_rate": None
            if math.isnan(self.mean_firing_rate)
            else self.mean_firing_rate,
            "num_parameters": self.num_parameters,
            "seconds": self.seconds,
            "samples": self.samples,
            "recalibrated": self.recalibrated,
            "calib_batches": self.calib_batches,
            **self.extras,
        }
        if layers and self.report is not None:
            out["energy_report"] = self.report.to_dict()
        return out


def _bn_layers(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for top in modules
        for m in top.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


@contextlib.contextmanager
def _bn_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Restore every BN running statistic of ``model`` when the block ends (a trial leaves the
    supernet exactly as it found it)."""
    tracked = [bn for bn in _bn_layers([model]) if bn.running_mean is not None]
    saved = [
        (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
        for bn in tracked
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, (mean, var, count) in zip(tracked, saved, strict=True):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(count)


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def recalibrate_bn(
    supernet: nn.Module,
    arch: Architecture | None,
    batches: Iterable[Any],
    device: str | torch.device,
    *,
    reset_all: bool = False,
    amp: bool = False,
) -> int:
    """Re-estimate the BN statistics of subnet ``arch`` from ``batches``; returns the batch count.

    Resets the running mean/var of the active slice of every BN the subnet uses (of every
    channel with ``reset_all``), then runs ``batches`` (tensors or ``(x, y)`` pairs) in train
    mode without gradients with ``momentum=None`` (cumulative average), and leaves the model in
    eval mode. Works on a standalone :class:`~autospikformer.Spikformer` too (``arch=None``).
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    is_super = hasattr(supernet, "configure")
    if is_super:
        if arch is None:
            raise ValueError("recalibrate_bn needs the architecture for a supernet")
        supernet.configure(arch)
        layers = _bn_layers(supernet.active_modules(arch))
    else:
        layers = _bn_layers([supernet])
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        channels = bn.num_features if reset_all else int(getattr(bn, "active", bn.num_features))
        if bn.running_mean is not None:
            bn.running_mean[:channels].zero_()
            bn.running_var[:channels].fill_(1.0)
            bn.num_batches_tracked.zero_()
        bn.momentum = None
    count = 0
    supernet.train()
    try:
        for batch in batches:
            x = _inputs(batch).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                if is_super:
                    supernet(x, arch)
                else:
                    supernet(x)
            count += 1
    finally:
        for bn, momentum in zip(layers, momenta, strict=True):
            bn.momentum = momentum
        supernet.eval()
    if count == 0:
        raise ValueError("BN recalibration got no batches")
    return count


class _Split:
    """Batches of one split: device tensors when small (preloaded), else a loader per pass."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, workers: int):
        self.size = len(dataset)
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._loader = make_loader(
            dataset, batch_size=batch_size, train=False, workers=workers, drop_last=False
        )
        first, _ = dataset[0]
        megabytes = first.numel() * first.element_size() * self.size / 2**20
        if megabytes <= PRELOAD_LIMIT_MB:
            xs, ys = [], []
            for x, y in make_loader(dataset, batch_size=256, train=False, drop_last=False):
                xs.append(x)
                ys.append(torch.as_tensor(y))
            x_all = torch.cat(xs).to(device)
            y_all = torch.cat(ys).to(device)
            self.batches = [
                (x_all[i : i + batch_size], y_all[i : i + batch_size])
                for i in range(0, self.size, batch_size)
            ]
        self.device = device

    def __iter__(self) -> Any:
        if self.batches is not None:
            return iter(self.batches)
        nb = self.device.type == "cuda"
        return (
            (x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb))
            for x, y in self._loader
        )


class SubnetEvaluator:
    """Evaluates subnets of one supernet on a fixed calibration and evaluation subset.

    ``calib_batches`` batches of ``calib_batch_size`` (default ``batch_size``) training images,
    drawn once with ``seed`` and without augmentation, recalibrate BN; ``eval_samples`` (default:
    all) images of the evaluation split, drawn once with ``seed``, measure accuracy and energy.
    The evaluation split is the test split, or with ``eval_split="val"`` the ``holdout`` part of
    the training split; with a ``holdout`` calibration never draws from that part.
    """

    def __init__(
        self,
        supernet: nn.Module,
        *,
        dataset: str,
        data_root: str | Path | None,
        calib_batches: int = 8,
        batch_size: int = 128,
        eval_samples: int | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        calib_batch_size: int | None = None,
        amp: bool = False,
        workers: int = 0,
        holdout: HoldoutSplit | None = None,
        eval_split: str = "test",
    ):
        if calib_batches < 0 or batch_size < 1:
            raise ValueError("calib_batches must be >= 0 and batch_size >= 1")
        if eval_split not in ("test", "val") or (eval_split == "val" and holdout is None):
            raise ValueError(f"eval_split {eval_split!r}: 'test', or 'val' with a holdout")
        self.holdout = holdout
        self.eval_split = eval_split
        self.device = resolve_device(device)
        self.supernet = supernet.to(self.device).eval()
        self.dataset = dataset
        self.data_root = data_root
        self.info = dataset_info(dataset)
        self.calib_batches = calib_batches
        self.batch_size = batch_size
        self.calib_batch_size = calib_batch_size or batch_size
        self.eval_samples = eval_samples
        self.seed = seed
        self.amp = amp and self.device.type == "cuda"
        self.workers = workers
        self.train_size: int | None = None  # the training split's size, once it is read
        self._cache: dict[int | None, tuple[_Split | None, _Split]] = {}

    def splits(self, time_steps: int) -> tuple[_Split | None, _Split]:
        """Calibration and evaluation batches (for event data: at ``time_steps`` frames)."""
        key = time_steps if self.info.event_based else None
        if key not in self._cache:
            calib = None
            fit = held_out = None
            if self.calib_batches or self.eval_split == "val" or self.holdout is not None:
                fit = build_dataset(
                    self.dataset, self.data_root, train=True, augment=False, time_steps=key
                )
                self.train_size = len(fit)
                if self.holdout is not None:
                    train_idx, val_idx = self.holdout.indices(len(fit))
                    fit, held_out = Subset(fit, train_idx.tolist()), Subset(fit, val_idx.tolist())
            if self.calib_batches:
                fit = subset(fit, self.calib_batches * self.calib_batch_size, self.seed)
                calib = _Split(fit, self.calib_batch_size, self.device, self.workers)
            if self.eval_split == "val":
                evaluation = held_out
            else:
                evaluation = build_dataset(
                    self.dataset, self.data_root, train=False, augment=False, time_steps=key
                )
            if self.eval_samples is not None:
                evaluation = subset(evaluation, self.eval_samples, self.seed)
            self._cache[key] = (
                calib,
                _Split(evaluation, self.batch_size, self.device, self.workers),
            )
        return self._cache[key]

    def holdout_record(self, time_steps: int) -> dict[str, Any] | None:
        """The validation split as recorded in a study (:meth:`HoldoutSplit.record`), or None."""
        if self.holdout is None:
            return None
        self.splits(time_steps)
        return self.holdout.record(self.train_size)

    def evaluate(
        self, arch: Architecture, *, recalibrate: bool = True, energy: bool = True
    ) -> SubnetResult:
        """Accuracy on the evaluation subset (and the energy report of the same pass)."""
        model = self.supernet
        model.configure(arch)  # checks that arch belongs to the space
        calib, test = self.splits(arch.time_steps)
        start = time.perf_counter()
        calibrated = 0
        with _bn_statistics_kept(model):
            if recalibrate and calib is not None:
                calibrated = recalibrate_bn(model, arch, calib, self.device, amp=self.amp)
            model.eval()
            meter = EnergyMeter(model, arch) if energy else contextlib.nullcontext()
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            seen = 0
            with torch.no_grad(), meter:
                for x, y in test:
                    with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                        logits = model(x, arch)
                    correct += (logits.argmax(-1) == y).sum()
                    seen += int(y.shape[0])
            report = meter.report() if energy else None
            accuracy = int(correct) / max(seen, 1)
        seconds = time.perf_counter() - start
        return SubnetResult(
            arch=arch,
            accuracy=accuracy,
            energy_mj=float(report.energy_mj) if report is not None else math.nan,
            mean_firing_rate=float(report.mean_firing_rate) if report is not None else math.nan,
            num_parameters=int(model.num_parameters(arch)),
            report=report,
            seconds=seconds,
            samples=seen,
            recalibrated=calibrated > 0,
            calib_batches=calibrated,
        )

    def standalone(self, arch: Architecture) -> nn.Module:
        """The subnet as a standalone Spikformer with the BN statistics a trial evaluates it
        with (this evaluator's recalibration batches); the supernet is left as it was."""
        model = self.supernet
        model.configure(arch)
        calib, _ = self.splits(arch.time_steps)
        with _bn_statistics_kept(model):
            if calib is not None:
                recalibrate_bn(model, arch, calib, self.device, amp=self.amp)
            return model.extract(arch)

    @torch.no_grad()
    def accuracy(self, model: nn.Module) -> tuple[float, int]:
        """A standalone model's accuracy on the evaluation subset, and the images it saw."""
        _, test = self.splits(model.arch.time_steps)
        model.to(self.device).eval()
        correct = seen = 0
        for x, y in test:
            correct += int((model(x).argmax(-1) == y).sum())
            seen += int(y.shape[0])
        return correct / max(seen, 1), seen


@torch.no_grad()
def measure_energy(
    model: nn.Module,
    arch: Architecture,
    batches: Iterable[Any],
    *,
    limit: int | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """The energy report of ``model`` (a supernet or a standalone Spikformer) on ``batches``.

    One pass measures the rates and the accuracy together: the report's ``extras["accuracy"]``
    is the fraction of correct answers on the same images. At most ``limit`` batches are used;
    None when there was no batch.
    """
    is_super = hasattr(model, "configure")
    correct = seen = 0
    meter = EnergyMeter(model, arch)
    with meter:
        for i, (x, y) in enumerate(batches):
            if i == limit:
                break
            x, y = x.to(device), y.to(device)
            logits = model(x, arch) if is_super else model(x)
            correct += int((logits.argmax(-1) == y).sum())
            seen += int(y.numel())
    if seen == 0:
        return None
    report = meter.report()
    report.extras["accuracy"] = correct / seen
    return report
