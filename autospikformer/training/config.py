"""Supernet training settings as data: the reference recipe, the digits recipe, validation.

:class:`TrainConfig` is a study file's ``[train]`` table; its defaults are the reference
Spikformer recipe (SPEC section 1) and every bad value is refused with a message that names the
setting and what is allowed. Nothing here imports torch: a study file is checked without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from autospikformer.checks import refuse
from autospikformer.errors import AutospikError, did_you_mean

#: The reference recipe's warm-up (SPEC section 1); a shorter run gets a tenth of its epochs.
REFERENCE_WARMUP_EPOCHS = 20


class TrainConfigError(AutospikError, ValueError):
    """A training setting that cannot be used; the message names the setting."""


#: The evaluation's defaults (a study's ``[search]`` and the evaluator share them): batches of
#: training images that recalibrate BN, and the evaluation batch size.
CALIB_BATCHES = 8
EVAL_BATCH_SIZE = 128


def default_warmup_epochs(epochs: int) -> int:
    """The warm-up a recipe gets when it names none: 20 epochs, at most a tenth of the run."""
    return min(REFERENCE_WARMUP_EPOCHS, epochs // 10)


@dataclass(frozen=True)
class TrainConfig:
    """Supernet training settings; the defaults are the reference recipe (SPEC section 1).

    ``batch_size`` is the global batch (split over DDP ranks). ``mixup`` is the Beta(alpha,
    alpha) parameter of batch mixup (0 = off), switched off after ``mixup_off_fraction`` of
    the epochs. ``amp`` applies on CUDA only. ``train_samples`` trains on a fixed random subset
    of the training split (quick runs, tests). ``eval_every`` > 0 evaluates the largest and the
    smallest subnet on the test split, with BN recalibration, every that many epochs (and after
    the last) and writes their accuracy to the metrics CSV.

    Settings that depend on others are derived when left out (``None``): ``warmup_epochs``
    becomes :func:`default_warmup_epochs` of ``epochs`` (20 for the reference's 1000 epochs, 0
    for a 1-epoch run), and :meth:`replace` derives it again when ``epochs`` changes.
    """

    epochs: int = 1000
    batch_size: int = 128
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_lr: float = 1e-5
    warmup_epochs: int | None = None  # derived from epochs when None
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
        derived = []
        if self.warmup_epochs is None and type(self.epochs) is int:
            object.__setattr__(self, "warmup_epochs", default_warmup_epochs(self.epochs))
            derived.append("warmup_epochs")
        object.__setattr__(self, "_derived", tuple(derived))
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
                refuse(f.name, value, _ALLOWED[kind], TrainConfigError)
        checks = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "a number > 0"),
            ("min_lr", self.min_lr >= 0, "a number >= 0"),
            ("warmup_lr", self.warmup_lr >= 0, "a number >= 0"),
            (
                "warmup_epochs",
                0 <= self.warmup_epochs <= self.epochs,  # type: ignore[operator]
                f"0 <= warmup_epochs <= epochs = {self.epochs}: lower warmup_epochs, raise "
                "epochs, or leave warmup_epochs out to derive it",
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
                refuse(name, getattr(self, name), allowed, TrainConfigError)
        if self.train_samples is not None and self.train_samples < self.batch_size:
            raise TrainConfigError(
                f"train_samples: {self.train_samples} is fewer than one batch (batch_size = "
                f"{self.batch_size}): raise train_samples or lower batch_size"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a study file's ``[train]`` table); names an unknown or bad key."""
        if not isinstance(data, dict):
            raise TrainConfigError(f"expected a table of training settings, got {data!r}")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise TrainConfigError(
                    f"{key}: unknown setting (allowed: {', '.join(known)}){did_you_mean(key, known)}"
                )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (validated); ``None`` values are ignored, and the
        settings this config derived are derived again from the new values."""
        given = {k: v for k, v in changes.items() if v is not None}
        kept = {k: v for k, v in self.to_dict().items() if k not in self.derived}
        return TrainConfig.from_dict({**kept, **given})

    @property
    def derived(self) -> tuple[str, ...]:
        """The settings that were left out and derived from others (``warmup_epochs``)."""
        return getattr(self, "_derived", ())

    @classmethod
    def preset(cls, dataset: str) -> TrainConfig:
        """The reference recipe, or for ``digits`` the CPU-sized settings tuned for it."""
        if dataset == "digits":
            return cls(**DIGITS_SETTINGS)
        return cls()

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a fractional epoch: linear warm-up, then cosine to ``min_lr``."""
        assert self.warmup_epochs is not None  # derived in __post_init__
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
