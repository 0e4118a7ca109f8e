"""What every data set module shares: the static description of each set and one error type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autospikformer.errors import AutospikError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set before seeing a sample."""

    name: str  # "digits" | "cifar10" | "cifar100" | "cifar10dvs" | "dvs128"
    num_classes: int
    in_channels: int  # 1 digits, 3 cifar, 2 dvs (the two event polarities)
    img_size: int  # 8 digits, 32 cifar, 128 dvs
    event_based: bool = False  # True for the DVS sets: samples are frames [T, C, H, W]

    @property
    def variant(self) -> str:
        """The model variant trained on this set: the reference's DVS model for event data."""
        return "dvs" if self.event_based else "cifar"


CIFAR10 = DatasetInfo("cifar10", 10, 3, 32, False)
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, 1, 8, False),
    "cifar10": CIFAR10,
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, False),
    "cifar10dvs": DatasetInfo("cifar10dvs", 10, 2, 128, True),
    "dvs128": DatasetInfo("dvs128", 11, 2, 128, True),
}


class DataError(AutospikError):
    """A data set cannot be used as asked; the message says what to fix, in one line."""


def dataset_info(name: str) -> DatasetInfo:
    """The static description of ``name``; an unknown name lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}"
        ) from None


def require_root(name: str, root: str | Path | None) -> Path:
    """The local folder of a data set that is read from disk; None is a DataError."""
    if root is None:
        raise DataError(f"{name} is read from a local folder: pass its path as the data root")
    return Path(root).expanduser()
