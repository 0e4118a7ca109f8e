"""What every data set module shares: the static description of each set and one error type.

A data set is named (:data:`DATASETS`: digits, CIFAR, the event sets spikingjelly prepares) or a
user's folder (:class:`FolderInfo`, ``data/folders.py``); both are a :class:`DatasetInfo`, which
is what models, energy counts, budgets, the trainer and the evaluator take.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autospikformer.errors import AutospikError

#: An input size: ``S`` for S x S, or ``(H, W)``.
ImageSize = int | tuple[int, int]


def image_hw(size: Any) -> tuple[int, int]:
    """``(H, W)`` of an input size (``S`` or ``(H, W)``, a list too); anything else is a
    ValueError naming what is allowed."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    pair = isinstance(size, (tuple, list)) and len(size) == 2
    if pair and all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"img_size: {size!r} is not allowed (allowed: an integer, or [height, width])")


def canonical_size(size: Any) -> ImageSize:
    """An input size in one form: ``S`` when square, else ``(H, W)``."""
    height, width = image_hw(size)
    return height if height == width else (height, width)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set before seeing a sample."""

    name: str  # a key of DATASETS, or "imagefolder" / "eventfolder"
    num_classes: int
    in_channels: int  # 1 digits, 3 cifar, 2 dvs (the two event polarities)
    img_size: ImageSize  # 8 digits, 32 cifar, 128 dvs; (H, W) when not square
    event_based: bool = False  # True for the DVS sets: samples are frames [T, C, H, W]

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", canonical_size(self.img_size))

    @property
    def variant(self) -> str:
        """The model variant trained on this set: the reference's DVS model for event data."""
        return "dvs" if self.event_based else "cifar"

    @property
    def hw(self) -> tuple[int, int]:
        """Input height and width."""
        return image_hw(self.img_size)

    def shape_text(self) -> str:
        """``3x32x32``: channels, height, width, for messages and tables."""
        return "x".join(str(v) for v in (self.in_channels, *self.hw))


CIFAR10 = DatasetInfo("cifar10", 10, 3, 32, False)
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, 1, 8, False),
    "cifar10": CIFAR10,
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, False),
    "cifar10dvs": DatasetInfo("cifar10dvs", 10, 2, 128, True),
    "dvs128": DatasetInfo("dvs128", 11, 2, 128, True),
    "nmnist": DatasetInfo("nmnist", 10, 2, 34, True),
    "ncaltech101": DatasetInfo("ncaltech101", 101, 2, (180, 240), True),
}
#: The user's own folders: named in a study file with their settings (``data/folders.py``).
FOLDER_KINDS = ("imagefolder", "eventfolder")


class DataError(AutospikError):
    """A data set cannot be used as asked; the message says what to fix, in one line."""

    def __init__(self, message: str = "", *args: Any) -> None:
        # raised in a DataLoader worker, it comes back as "Caught DataError in DataLoader worker
        # process 0. Original Traceback ...": keep the original line only
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if isinstance(message, str) and message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message, *args)


def dataset_info(name: str | DatasetInfo) -> DatasetInfo:
    """The static description of ``name`` (a :class:`DatasetInfo` is its own); an unknown name
    lists the known ones."""
    if isinstance(name, DatasetInfo):
        return name
    if name in FOLDER_KINDS:
        raise DataError(
            f"{name} is a folder of your own: name it in a study file ([data] dataset = "
            f"'{name}', root and its settings: docs/data.md)"
        )
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}, or a folder of "
            f"your own ({', '.join(FOLDER_KINDS)} in a study file)"
        ) from None


def require_root(name: str, root: str | Path | None) -> Path:
    """The local folder of a data set that is read from disk; None is a DataError."""
    if root is None:
        raise DataError(f"{name} is read from a local folder: pass its path as the data root")
    return Path(root).expanduser()
