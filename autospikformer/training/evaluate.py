"""Subnet evaluation: accuracy and energy of any architecture, weights inherited from a supernet.

Running statistics in a supernet's BN layers are a blend of every subnet trained, so they fit no
single one; before a subnet is evaluated its statistics are re-estimated (BN recalibration,
BigNAS/OFA practice, SPEC section 3): the active slice of every BN is reset, a fixed set of
training batches runs in train mode without gradients, and ``momentum=None`` makes the result
their exact cumulative average. Only the active slice of the BN layers the subnet uses changes.

SPS depends only on the embed dim E and the time steps T (SPEC section 10), so by default the
evaluator runs it once per (E, T) on its fixed batches and keeps its outputs (compactly, on its
device: ``training/features.py``) and its energy rows; a trial then recalibrates and evaluates
only the blocks and the head on them, with results identical bit for bit to a whole pass.

:class:`SubnetEvaluator` is the trial engine, built once per worker and reused for every trial.
At construction it loads a fixed calibration subset and a fixed evaluation subset and keeps both
on its device, for event data at every T of the space (integer event counts, converted to float
a batch at a time), for an image folder as uint8 images normalised a batch at a time (a byte a
pixel: an ImageNet validation subset fits); a trial then costs one recalibration and one
evaluation pass, during which the energy meter measures the firing rates (event data sets count their first conv as SOPs,
SPEC section 4) and the evaluator's energy model prices them, and reads no file. Calibration and evaluation have
their own batch sizes. ``precision="auto"`` runs both under autocast on CUDA, in bfloat16 where
the device supports it (else float16), and in float32 elsewhere. Every call restores the
supernet's BN buffers afterwards, so a trial's result does not depend on the trials before it.

With a ``holdout`` (the validation part of the training split, SPEC section 5) calibration
batches come from the rest of the training split only, and ``eval_split="val"`` evaluates on
the held-out part instead of the test split.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from autospikformer.checks import check_bool, check_int
from autospikformer.data.base import DataError, DatasetInfo, dataset_info
from autospikformer.data.imagefolder import ImageFolderSplit, normalize
from autospikformer.data.loading import build_dataset, build_frames, make_loader, subset
from autospikformer.data.split import HoldoutSplit
from autospikformer.device import resolve_device
from autospikformer.energy.meter import EnergyMeter
from autospikformer.energy.models import EnergyModel
from autospikformer.search.architecture import Architecture
from autospikformer.training.config import CALIB_BATCHES, EVAL_BATCH_SIZE
from autospikformer.training.features import (
    EmbedFeatures,
    FeatureCache,
    PackedCounts,
    default_budget,
)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: bf16 on a CUDA device that supports it, fp16 on other CUDA devices, fp32
    elsewhere; an explicit ``"fp32"``, ``"bf16"`` or ``"fp16"`` is kept (CPU autocast too)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``precision`` (a resolved one) on ``device``; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST[precision])


@dataclass
class SubnetResult:
    """One evaluated subnet; ``accuracy`` is a fraction in [0, 1], energy in mJ per image.

    The last fields say what ran: the calibration batches and images actually used, both batch
    sizes, the precision, the device, and whether SPS ran (``features="off"`` or
    ``"computed"``) or its outputs of an earlier trial were reused (``"reused"``).
    """

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
    calib_images: int = 0
    calib_batch_size: int = 0
    eval_batch_size: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    features: str = "off"  # SPS: "off" (whole pass), "computed" now or "reused" (SPEC section 10)
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
            "calib_images": self.calib_images,
            "calib_batch_size": self.calib_batch_size,
            "eval_batch_size": self.eval_batch_size,
            "precision": self.precision,
            "device": self.device,
            "features": self.features,
            **self.extras,
        }
        if self.report is not None:
            out["energy_model"] = self.report.model.name
            out["ann_energy_mj"] = self.report.ann_energy_mj
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
    precision: str = "fp32",
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
    count = 0
    with _cumulative_statistics(supernet, layers, reset_all=reset_all):
        for batch in batches:
            x = _inputs(batch).to(device, non_blocking=True)
            with autocast(device, precision):
                if is_super:
                    supernet(x, arch)
                else:
                    supernet(x)
            count += 1
    if count == 0:
        raise ValueError("BN recalibration got no batches")
    return count


@contextlib.contextmanager
def _cumulative_statistics(
    model: nn.Module, layers: list[nn.modules.batchnorm._BatchNorm], *, reset_all: bool = False
) -> Iterator[None]:
    """BN recalibration of ``layers``: their active slice (every channel with ``reset_all``)
    reset, ``momentum=None`` (the exact cumulative average) and ``model`` in train mode inside
    the block; momenta restored and ``model`` in eval mode after it."""
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        channels = bn.num_features if reset_all else int(getattr(bn, "active", bn.num_features))
        if bn.running_mean is not None:
            bn.running_mean[:channels].zero_()
            bn.running_var[:channels].fill_(1.0)
            bn.num_batches_tracked.zero_()
        bn.momentum = None
    model.train()
    try:
        yield
    finally:
        for bn, momentum in zip(layers, momenta, strict=True):
            bn.momentum = momentum
        model.eval()


class DeviceSplit:
    """One split held on the device, iterated in batches: ``(float inputs, labels)``.

    Event frames stay integer counts (uint8 when they fit) and become float32 a batch at a time;
    uint8 images with a ``normalization`` (per-channel mean and std on the device) are
    normalised a batch at a time.
    """

    def __init__(
        self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, source: Any = None,
        normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:  # fmt: skip
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size
        self.source = source  # the data set (or subset) the samples were loaded from
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.batch_size
        for start in range(0, len(self), size):
            x = self.inputs[start : start + size]
            if not x.is_floating_point():
                x = x.float() if self.normalization is None else normalize(x, *self.normalization)
            yield x, self.labels[start : start + size]


def _through_subsets(picked: Any) -> tuple[Any, list[int] | None]:
    """The split under a (subset of a subset ... of a) split, and the indices into it."""
    indices: list[int] | None = None
    while isinstance(picked, Subset):  # compose the subsets' indices down to the split
        outer = [int(i) for i in picked.indices]
        indices = outer if indices is None else [outer[i] for i in indices]
        picked = picked.dataset
    return picked, indices


def _load_static(
    dataset: Any, batch_size: int, device: torch.device, progress: bool = False
) -> DeviceSplit:
    """Every sample of a static split through its transform, stacked on the device; an image
    folder's as uint8 images (decoded by threads), normalised a batch at a time."""
    split, indices = _through_subsets(dataset)
    if isinstance(split, ImageFolderSplit):
        images, labels = split.uint8_images(indices, progress=progress)
        norm = (split.mean.to(device), split.std.to(device))
        return DeviceSplit(images.to(device), labels.to(device), batch_size, dataset, norm)
    xs, ys = [], []
    for x, y in make_loader(dataset, batch_size=256, train=False, drop_last=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return DeviceSplit(torch.cat(xs).to(device), torch.cat(ys).to(device), batch_size, dataset)


def _load_frames(picked: Any, batch_size: int, device: torch.device, progress: bool) -> DeviceSplit:
    """A (subset of a subset ... of an) event split at one T as integer counts on the device."""
    source = picked
    picked, indices = _through_subsets(picked)
    counts, labels = picked.counts(indices, progress=progress)
    return DeviceSplit(counts.to(device), labels.to(device), batch_size, source)


def _check_fits(supernet: nn.Module, info: DatasetInfo) -> None:
    """Refuse a supernet of another model variant or input and output shape than the data's."""
    name = info.name
    variant = getattr(supernet, "variant", "cifar")
    if variant != info.variant:
        raise DataError(
            f"{name} is searched with the {info.variant!r} model, but this supernet is the "
            f"{variant!r} one: train a supernet for {name}"
        )
    shape = (info.num_classes, info.in_channels, info.img_size)
    held = tuple(getattr(supernet, k, v) for k, v in zip(
        ("num_classes", "in_channels", "img_size"), shape, strict=True
    ))  # fmt: skip
    if held != shape:
        built = DatasetInfo("supernet", held[0], held[1], held[2])
        raise DataError(
            f"{name} has {shape[0]} classes of {info.shape_text()} inputs, but this supernet was "
            f"built for {held[0]} classes of {built.shape_text()} inputs: train one for {name}"
        )


class SubnetEvaluator:
    """The trial engine: evaluates subnets of one supernet on data loaded once, kept on its device.

    ``calib_batches`` batches of ``calib_batch_size`` (default ``batch_size``) training images,
    drawn once with ``seed`` and without augmentation, recalibrate BN; ``eval_samples`` (default:
    all) images of the evaluation split, drawn once with ``seed``, measure accuracy and energy in
    batches of ``batch_size``. The evaluation split is the test split, or with
    ``eval_split="val"`` the ``holdout`` part of the training split; with a ``holdout``
    calibration never draws from that part. For event data both are prepared at every T of
    ``time_steps`` (default: every T of the supernet's space) before the first trial;
    ``progress`` shows a bar meanwhile. ``precision`` is ``"auto"`` (bf16/fp16 autocast on
    CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"`` or ``"fp16"``. ``energy_model`` (default
    ``sop-45nm``) prices the energy.

    ``reuse_features`` (default on): SPS runs once per (E, T) on these batches, its outputs,
    packed in 2 bits on the device, and its energy rows are kept (:mod:`.features`), and a trial
    runs only the blocks and the head on them; every result is bit for bit the one of a whole
    pass. ``feature_budget``: the bytes the kept pairs may take (default: a quarter of the
    device's memory); the least recently used pair goes first.
    """

    def __init__(
        self,
        supernet: nn.Module,
        *,
        dataset: str | DatasetInfo,
        data_root: str | Path | None,
        calib_batches: int = CALIB_BATCHES,
        batch_size: int = EVAL_BATCH_SIZE,
        eval_samples: int | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        calib_batch_size: int | None = None,
        precision: str = "fp32",
        time_steps: Sequence[int] | None = None,
        progress: bool = False,
        holdout: HoldoutSplit | None = None,
        eval_split: str = "test",
        energy_model: EnergyModel | None = None,
        reuse_features: bool = True,
        feature_budget: int | None = None,
    ):
        if eval_split not in ("test", "val") or (eval_split == "val" and holdout is None):
            raise ValueError(f"eval_split {eval_split!r}: 'test', or 'val' with a holdout")
        self.holdout = holdout
        self.eval_split = eval_split
        if calib_batches < 0:
            raise ValueError(f"calib_batches must be >= 0, got {calib_batches}")
        if batch_size < 1 or (calib_batch_size is not None and calib_batch_size < 1):
            raise ValueError("batch_size and calib_batch_size must be >= 1")
        if eval_samples is not None and eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1 or None, got {eval_samples}")
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.device.index is None:  # record which GPU ran
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.precision = resolve_precision(precision, self.device)
        self.info = dataset_info(dataset)
        _check_fits(supernet, self.info)
        self.supernet = supernet.to(self.device).eval()
        self.dataset = dataset
        self.data_root = data_root
        self.calib_batches = calib_batches
        self.batch_size = batch_size
        self.calib_batch_size = calib_batch_size or batch_size
        self.eval_samples = eval_samples
        self.seed = seed
        if time_steps is None:
            time_steps = supernet.space.choices["time_steps"]
        self.time_steps = tuple(sorted({int(t) for t in time_steps}))
        self.train_size: int | None = None  # the training split's size, once it is read
        self.energy_model = energy_model or EnergyModel()
        self.reuse_features = check_bool("reuse_features", reuse_features)
        check_int("feature_budget", feature_budget, minimum=0, allow_none=True)
        if feature_budget is None:
            feature_budget = default_budget(self.device)
        self.features = FeatureCache(budget=feature_budget)
        self._data: dict[int | None, tuple[DeviceSplit | None, DeviceSplit]] = {}
        self._prepare(progress)

    def _prepare(self, progress: bool) -> None:
        """Load the calibration and evaluation data of every T once, onto the device."""
        calib_n = self.calib_batches * self.calib_batch_size
        needs_train = bool(calib_n) or self.eval_split == "val" or self.holdout is not None
        needs_test = self.eval_split == "test"
        if not self.info.event_based:
            fit = test = None
            if needs_train:
                fit = build_dataset(self.dataset, self.data_root, train=True, augment=False)
            if needs_test:
                test = build_dataset(self.dataset, self.data_root, train=False, augment=False)
            calib, evaluation = self._pick(fit, test)
            self._data[None] = (
                None
                if calib is None
                else _load_static(calib, self.calib_batch_size, self.device, progress),
                _load_static(evaluation, self.batch_size, self.device, progress),
            )
            return
        root, steps = self.data_root, self.time_steps
        kw: dict[str, Any] = {"augment": False, "time_steps": steps, "progress": progress}
        fits = build_frames(self.dataset, root, train=True, **kw) if needs_train else {}
        tests = build_frames(self.dataset, root, train=False, **kw) if needs_test else {}
        for t in steps:
            calib, evaluation = self._pick(fits.get(t), tests.get(t))
            self._data[t] = (
                None
                if calib is None
                else _load_frames(calib, self.calib_batch_size, self.device, progress),
                _load_frames(evaluation, self.batch_size, self.device, progress),
            )

    def _pick(self, fit: Any, test: Any) -> tuple[Any, Any]:
        """The calibration subset and the evaluation split (or subset) of one T's splits."""
        held_out = None
        if fit is not None:
            self.train_size = len(fit)
            if self.holdout is not None:
                train_idx, val_idx = self.holdout.indices(len(fit))
                fit, held_out = Subset(fit, train_idx.tolist()), Subset(fit, val_idx.tolist())
        calib_n = self.calib_batches * self.calib_batch_size
        calib = subset(fit, calib_n, self.seed) if calib_n else None
        evaluation = held_out if self.eval_split == "val" else test
        if self.eval_samples is not None:
            evaluation = subset(evaluation, self.eval_samples, self.seed)
        return calib, evaluation

    def splits(self, time_steps: int) -> tuple[DeviceSplit | None, DeviceSplit]:
        """Calibration and evaluation batches (for event data: at ``time_steps`` frames)."""
        key = time_steps if self.info.event_based else None
        if key not in self._data:
            raise ValueError(
                f"T={time_steps} was not prepared by this evaluator (prepared: "
                f"{', '.join(map(str, self.time_steps))})"
            )
        return self._data[key]

    def holdout_description(self, time_steps: int) -> dict[str, Any] | None:
        """The validation split as recorded in a study (:meth:`HoldoutSplit.record`), or None."""
        if self.holdout is None:
            return None
        self.splits(time_steps)
        return self.holdout.describe(self.train_size)

    def evaluate(
        self, arch: Architecture, *, recalibrate: bool = True, energy: bool = True
    ) -> SubnetResult:
        """Accuracy on the evaluation subset (and the energy report of the same pass); with
        ``reuse_features``, SPS's outputs of an earlier trial with this (E, T) if kept."""
        model = self.supernet
        model.configure(arch)  # checks that arch belongs to the space
        calib, test = self.splits(arch.time_steps)
        calib = calib if recalibrate else None
        start = time.perf_counter()
        with _bn_statistics_kept(model):
            if self.reuse_features:
                calibrated, correct, seen, meter, features = self._pass_on_features(
                    arch, calib, test, energy
                )
            else:
                calibrated, correct, seen, meter = self._whole_pass(arch, calib, test, energy)
                features = "off"
            report = meter.report(model=self.energy_model) if meter is not None else None
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
            calib_images=len(calib) if calibrated and calib is not None else 0,
            calib_batch_size=self.calib_batch_size,
            eval_batch_size=self.batch_size,
            precision=self.precision,
            device=str(self.device),
            features=features,
        )

    def _meter(self, arch: Architecture, **kwargs: Any) -> EnergyMeter:
        return EnergyMeter(self.supernet, arch, event_data=self.info.event_based, **kwargs)

    def _whole_pass(
        self, arch: Architecture, calib: DeviceSplit | None, test: DeviceSplit, energy: bool
    ) -> tuple[int, torch.Tensor, int, EnergyMeter | None]:
        """Recalibration and evaluation of the whole subnet: calibration batches, correct
        answers, images seen, the meter of the evaluation pass."""
        model = self.supernet
        calibrated = 0
        if calib is not None:
            calibrated = recalibrate_bn(model, arch, calib, self.device, precision=self.precision)
        model.eval()
        meter = self._meter(arch) if energy else None
        correct, seen = self._score(test, lambda x: model(x, arch), meter)
        return calibrated, correct, seen, meter

    def _pass_on_features(
        self, arch: Architecture, calib: DeviceSplit | None, test: DeviceSplit, energy: bool
    ) -> tuple[int, torch.Tensor, int, EnergyMeter | None, str]:
        """As :meth:`_whole_pass`, the blocks and the head only, on SPS's kept outputs (and
        whether they were ``"computed"`` now or ``"reused"``)."""
        model = self.supernet
        features, how = self._features(arch, calib, test)
        calibrated = 0
        if features.calib is not None:  # the blocks' BN from SPS's train-mode outputs
            layers = _bn_layers([*model.blocks[: arch.depth], model.head])
            with torch.no_grad(), _cumulative_statistics(model, layers):
                for tokens in features.calib:
                    with autocast(self.device, self.precision):
                        model.forward_tokens(tokens.unpack(), arch)
                    calibrated += 1
            if calibrated == 0:
                raise ValueError("BN recalibration got no batches")
        model.eval()
        meter = self._meter(arch, embed=features.energy) if energy else None
        labels = test.labels.split(test.batch_size)  # the batches SPS's outputs were kept in
        correct, seen = self._score(
            zip(features.evaluation, labels, strict=True),
            lambda tokens: model.forward_head(model.forward_tokens(tokens.unpack(), arch)),
            meter,
        )
        return calibrated, correct, seen, meter, how

    def _score(
        self,
        batches: Iterable[tuple[Any, torch.Tensor]],
        forward: Callable[[Any], torch.Tensor],
        meter: EnergyMeter | None,
    ) -> tuple[torch.Tensor, int]:
        """Correct answers (counted on the device) and images seen of ``forward`` over
        ``batches``, without gradients, under the evaluator's precision and ``meter``."""
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        with torch.no_grad(), meter or contextlib.nullcontext():
            for x, y in batches:
                with autocast(self.device, self.precision):
                    logits = forward(x)
                correct += (logits.argmax(-1) == y).sum()
                seen += int(y.shape[0])
        return correct, seen

    def _features(
        self, arch: Architecture, calib: DeviceSplit | None, test: DeviceSplit
    ) -> tuple[EmbedFeatures, str]:
        """SPS's work for ``arch``'s (E, T): kept from an earlier trial, or computed now (and
        kept if the budget allows); a pair whose SPS weights or statistics changed since is
        computed again."""
        key = (arch.embed_dim, arch.time_steps, calib is not None)
        kept = self.features.get(key)
        if kept is not None and self._still_valid(kept):
            return kept, "reused"
        computed = self._compute_features(arch, calib, test)
        self.features.put(key, computed)
        return computed, "computed"

    def _sps_versions(self) -> tuple[int, ...]:
        """The version counters of SPS's weights (torch bumps one at every in-place change)."""
        return tuple(p._version for p in self.supernet.sps.parameters())

    def _sps_statistics(self) -> list[torch.Tensor]:
        """SPS's BN running statistics as the configured subnet uses them (its active slices)."""
        return [
            buffer[: bn.active].clone()
            for bn in _bn_layers([self.supernet.sps])
            for buffer in (bn.running_mean, bn.running_var)
        ]

    def _still_valid(self, features: EmbedFeatures) -> bool:
        if features.versions != self._sps_versions():
            return False
        if features.statistics is None:  # recalibrated: the statistics are its own
            return True
        now = self._sps_statistics()
        return all(torch.equal(a, b) for a, b in zip(features.statistics, now, strict=True))

    @torch.no_grad()
    def _compute_features(
        self, arch: Architecture, calib: DeviceSplit | None, test: DeviceSplit
    ) -> EmbedFeatures:
        """SPS alone on the calibration batches (train mode, recalibrating its BN, as a whole
        recalibration does) and on the evaluation batches (eval mode, its energy rows
        measured); the caller restores the BN statistics."""
        model = self.supernet
        kept_calib: list[PackedCounts] | None = None
        statistics = None
        if calib is not None:
            kept_calib = []
            with _cumulative_statistics(model, _bn_layers([model.sps])):
                for x, _ in calib:
                    with autocast(self.device, self.precision):
                        kept_calib.append(PackedCounts(model.embed(x, arch)))
        else:
            statistics = self._sps_statistics()
        model.eval()
        meter = self._meter(arch, part="embed")
        with meter:
            kept_eval = []
            for x, _ in test:
                with autocast(self.device, self.precision):
                    kept_eval.append(PackedCounts(model.embed(x, arch)))
        return EmbedFeatures(
            kept_calib, kept_eval, meter.embed_rows(), self._sps_versions(), statistics
        )

    def standalone(self, arch: Architecture) -> nn.Module:
        """The subnet as a standalone Spikformer with the BN statistics a trial evaluates it
        with (this evaluator's recalibration batches); the supernet is left as it was."""
        model = self.supernet
        model.configure(arch)
        calib, _ = self.splits(arch.time_steps)
        with _bn_statistics_kept(model):
            if calib is not None:
                recalibrate_bn(model, arch, calib, self.device, precision=self.precision)
            return model.extract(arch)

    @torch.no_grad()
    def accuracy(self, model: nn.Module) -> tuple[float, int]:
        """A standalone model's accuracy on the evaluation subset, and the images it saw."""
        _, test = self.splits(model.arch.time_steps)
        model.to(self.device).eval()
        correct = seen = 0
        for x, y in test:
            with autocast(self.device, self.precision):
                logits = model(x)
            correct += int((logits.argmax(-1) == y).sum())
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
    event_data: bool | None = None,
    energy_model: EnergyModel | None = None,
) -> Any:
    """The energy report of ``model`` (a supernet or a standalone Spikformer) on ``batches``.

    One pass measures the rates and the accuracy together: the report's ``extras["accuracy"]``
    is the fraction of correct answers on the same images. At most ``limit`` batches are used;
    None when there was no batch. ``event_data``: the batches are event frames (SPEC section 4;
    default: the model's variant says).
    """
    is_super = hasattr(model, "configure")
    correct = seen = 0
    meter = EnergyMeter(model, arch, event_data=event_data)
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
    report = meter.report(model=energy_model)
    report.extras["accuracy"] = correct / seen
    return report
