"""Static images held in memory: the embedded 8x8 digits and CIFAR-10/100 from their pickles.

Nothing here downloads: every loader reads a local folder and, when that folder is missing or
incomplete, raises one ``DataError`` naming the expected files, where to get them and which
folder was searched. The folder layouts, the digits split and the augmentation are described in
``docs/data.md``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from autospikformer.data.base import DATASETS, DataError, require_root


class ImageDataset(Dataset):
    """Static images held in memory; ``transform`` turns one stored image into the model input.

    Yields ``(image float32 [C, H, W], label int)``; ``targets`` and ``classes`` allow class
    statistics without touching the images.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: list[int],
        classes: list[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = targets
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


# --------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed stratified split of scikit-learn's 1797 digits: 1437 train, 360 test.

    Built from arithmetic alone (no library shuffling whose algorithm could change between
    versions): the samples are ordered by (class, original index), and every fifth sample of
    that order, starting with the first, goes to the test split. Each class thus gives one
    fifth of its samples (+-1) to the test split, from all over the original file.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.images, dtype=np.float32) / 16.0  # the digits' pixels are 0..16
    y = np.asarray(digits.target, dtype=np.int64)
    order = np.lexsort((np.arange(len(y)), y))
    is_test = np.zeros(len(y), dtype=bool)
    is_test[order[::5]] = True
    train_idx = np.flatnonzero(~is_test)
    test_idx = np.flatnonzero(is_test)
    return train_idx, test_idx, x, y


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``sklearn.datasets.load_digits()`` of the train and test splits."""
    train_idx, test_idx, _, _ = _digits_split()
    return train_idx.copy(), test_idx.copy()


def build_digits(train: bool, augment: bool | None) -> ImageDataset:
    if augment:
        warnings.warn(
            "the digits set has no augmentation (8x8 glyphs: flips and crops change the digit); "
            "augment=True is ignored",
            stacklevel=3,
        )
    train_idx, test_idx, x, y = _digits_split()
    mean = float(x[train_idx].mean())
    std = float(x[train_idx].std())
    idx = train_idx if train else test_idx
    images = torch.from_numpy((x[idx] - mean) / std).unsqueeze(1).contiguous()
    return ImageDataset(images, y[idx].tolist(), [str(d) for d in range(10)])


# --------------------------------------------------------------------------- CIFAR

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2675, 0.2565, 0.2761)}

_CIFAR_FILES = {
    "cifar10": {
        "title": "CIFAR-10",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "archive": "'CIFAR-10 python version' archive (cifar-10-python.tar.gz)",
    },
    "cifar100": {
        "title": "CIFAR-100",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "archive": "'CIFAR-100 python version' archive (cifar-100-python.tar.gz)",
    },
}
CIFAR_NAMES = tuple(_CIFAR_FILES)
_CIFAR_PAGE = "the CIFAR web page (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html)"


def _find_cifar_folder(name: str, root: Path) -> Path:
    """``root`` itself or the archive's own sub-folder, whichever holds the files."""
    spec = _CIFAR_FILES[name]
    expected = [*spec["train"], *spec["test"], spec["meta"]]
    candidates = [root, root / spec["folder"]]
    for folder in candidates:
        if all((folder / f).is_file() for f in expected):
            return folder
    best = max(candidates, key=lambda f: sum((f / e).is_file() for e in expected))
    missing = [f for f in expected if not (best / f).is_file()]
    searched = " and ".join(f"'{c}'" for c in candidates)
    found = (
        f"none of its files found (searched {searched})"
        if len(missing) == len(expected)
        else f"missing {', '.join(missing)} in '{best}'"
    )
    raise DataError(
        f"{spec['title']}: {found}; expected {', '.join(expected)}: download the "
        f"{spec['archive']} from {_CIFAR_PAGE} and extract it into '{root}'"
    )


def _unpickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle (written by Python 2) as a dict with ``str`` keys."""
    try:
        with path.open("rb") as fh:
            content = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"'{path}' is truncated or not a CIFAR pickle ({type(exc).__name__}: {exc}); "
            f"extract the archive from {_CIFAR_PAGE} again"
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"'{path}' is not a CIFAR pickle (holds a {type(content).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in content.items()}


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, list]:
    batch = _unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"'{path}' lacks the 'data' or '{label_key}' entry of a CIFAR batch")
    data = np.asarray(batch["data"])
    labels = [int(v) for v in batch[label_key]]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"'{path}': 'data' has shape {data.shape} and dtype {data.dtype}, "
            "expected [N, 3072] uint8 (truncated or wrong file?)"
        )
    if len(labels) != data.shape[0]:
        raise DataError(f"'{path}': {data.shape[0]} images but {len(labels)} labels")
    if labels and not 0 <= min(labels) <= max(labels) < num_classes:
        raise DataError(f"'{path}': labels outside 0..{num_classes - 1}")
    return data, labels


def load_cifar_arrays(
    name: str, root: str | Path | None, *, train: bool
) -> tuple[np.ndarray, list[int], list[str]]:
    """Images ``uint8 [N, 3, 32, 32]``, labels and class names of one CIFAR split."""
    spec = _CIFAR_FILES[name]
    folder = _find_cifar_folder(name, require_root(name, root))
    num_classes = DATASETS[name].num_classes
    meta = _unpickle(folder / spec["meta"])
    names = [
        n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(spec["names_key"], [])
    ]
    if len(names) != num_classes:
        raise DataError(
            f"'{folder / spec['meta']}': expected {num_classes} entries in "
            f"'{spec['names_key']}', found {len(names)}"
        )
    parts = [
        _read_cifar_batch(folder / f, spec["label_key"], num_classes)
        for f in spec["train" if train else "test"]
    ]
    data = np.concatenate([d for d, _ in parts])
    labels = [label for _, batch_labels in parts for label in batch_labels]
    return data.reshape(-1, 3, 32, 32), labels, names


def cifar_transform(name: str, augment: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``[3, 32, 32]`` -> normalized float32; with ``augment`` the reference policy.

    Reference (SPEC section 1): horizontal flip, RandAugment rand-m9-n1, normalization, random
    erasing p=0.25. RandAugment is torchvision's: one op per image at magnitude 9 of 10 (11
    bins, so 9 means 90 % of each op's range as in timm's ``m9``), bilinear, gaps filled with
    the data set's mean colour; erasing fills with per-pixel normal noise (timm's 'pixel' mode)
    after normalization.
    """
    from torchvision.transforms import InterpolationMode, v2

    mean, std = CIFAR_MEAN[name], CIFAR_STD[name]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if not augment:
        return v2.Compose(tail)
    fill = [round(255 * m) for m in mean]
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandAugment(
                num_ops=1,
                magnitude=9,
                num_magnitude_bins=11,
                interpolation=InterpolationMode.BILINEAR,
                fill=fill,
            ),
            *tail,
            v2.RandomErasing(p=0.25, value="random"),
        ]
    )


def build_cifar(name: str, root: str | Path | None, train: bool, augment: bool) -> ImageDataset:
    data, labels, names = load_cifar_arrays(name, root, train=train)
    return ImageDataset(torch.from_numpy(data), labels, names, cifar_transform(name, augment))
