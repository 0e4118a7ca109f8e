"""The front door of the data sets: one split of any set, a seeded loader, a fixed subset.

Static sets (digits, CIFAR) live in ``images``, the named event sets in ``events``, your own
folders in ``imagefolder`` and ``eventfolder`` (their :class:`~autospikformer.data.folders.
FolderInfo` is the data set); :func:`build_dataset` picks the right one, so callers never import
them. A data set is a name or a :class:`~autospikformer.data.base.DatasetInfo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from autospikformer.data.base import DataError, DatasetInfo, dataset_info, require_root
from autospikformer.data.folders import FolderInfo, checked_listing
from autospikformer.data.images import CIFAR_NAMES, _find_cifar_folder, build_cifar, build_digits


def build_dataset(
    name: str | DatasetInfo,
    root: str | Path | None,
    *,
    train: bool,
    augment: bool | None = None,
    time_steps: int | None = None,
) -> Dataset:
    """One split of a data set, ready for a ``DataLoader``.

    Static sets yield ``(image [C, H, W], label)`` (the model repeats images over T itself);
    event sets yield ``(frames float32 [T, C, H, W], label)`` and need ``time_steps``.
    ``augment=None`` gives the train split the reference augmentation and the test split none.
    """
    info = dataset_info(name)  # an unknown name lists the known ones
    name = info.name
    if isinstance(info, FolderInfo) and not info.event_based:
        from autospikformer.data.imagefolder import build_image_folder

        augment = train if augment is None else bool(augment)
        return build_image_folder(info, root, train=train, augment=augment)
    if name == "digits":
        return build_digits(train, augment)
    if name in CIFAR_NAMES:
        return build_cifar(name, root, train, train if augment is None else bool(augment))
    if time_steps is None or int(time_steps) < 1:
        raise DataError(f"{name} is event data: pass time_steps (the number of frames T >= 1)")
    steps = int(time_steps)
    return build_frames(info, root, train=train, augment=augment, time_steps=[steps])[steps]


def build_frames(
    name: str | DatasetInfo,
    root: str | Path | None,
    *,
    train: bool,
    augment: bool | None = None,
    time_steps: Sequence[int],
    progress: bool = False,
) -> dict[int, Any]:
    """One split of an event set at every T of ``time_steps``, over one cache opened once.

    The first opening of a split reads its events files once into the frame cache
    (``data/frames.py``; ``progress`` shows a bar); every T is then integrated from it.
    """
    info = dataset_info(name)
    if not info.event_based:
        raise DataError(f"{info.name} is not event data: build_frames is for event sets")
    if not time_steps or any(int(t) < 1 for t in time_steps):
        raise DataError(f"{info.name}: time_steps must be frame counts T >= 1, got {time_steps!r}")
    from autospikformer.data.frames import build_event_frames

    return build_event_frames(
        info,
        require_root(info.name, root),
        train=train,
        augment=train if augment is None else bool(augment),
        time_steps=[int(t) for t in time_steps],
        progress=progress,
    )


def check_dataset(name: str | DatasetInfo, root: str | Path | None) -> None:
    """Refuse a data set whose files are not where ``root`` says, without reading them.

    A cheap look (file names only; for a folder, also that it still holds what ``name``
    recorded) that a command runs before it registers or trains anything; :func:`build_dataset`
    still checks the files' content when it reads them.
    """
    info = dataset_info(name)
    name = info.name
    if isinstance(info, FolderInfo):
        checked_listing(info, root)
        return
    if name == "digits":
        return
    folder = require_root(name, root)
    if not folder.is_dir():
        raise DataError(f"{name}: data folder '{folder}' does not exist (data.root, --data-root)")
    if name in CIFAR_NAMES:
        _find_cifar_folder(name, folder)
    elif info.event_based:
        from autospikformer.data.events import _find_folder

        _find_folder(name, folder)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool | None = None,
) -> DataLoader:
    """A loader whose shuffling depends only on ``seed`` (its own generator, not the global one).

    Train loaders shuffle and, by default, drop the last partial batch (a batch of one breaks
    batch norm statistics); test loaders keep order and every sample.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        num_workers=workers,
        generator=generator,
        drop_last=train if drop_last is None else drop_last,
        persistent_workers=workers > 0,
    )


def subset(dataset: Dataset, n: int, seed: int) -> Dataset:
    """A fixed random subset of ``min(n, len(dataset))`` samples (BN recalibration, quick evals).

    Uses NumPy's legacy ``RandomState``, whose stream NumPy keeps stable, so the same seed picks
    the same samples across versions; indices are sorted to keep reading order cache-friendly.
    """
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    size = len(dataset)  # type: ignore[arg-type]
    picked = np.random.RandomState(int(seed)).permutation(size)[: min(n, size)]
    return Subset(dataset, sorted(int(i) for i in picked))
