"""Image folders: any images Pillow reads, decoded when drawn, at any input size.

A folder is read where it lies and never written (it may be read-only); nothing is held in memory
but the file list. Each image is decoded when a sample is drawn (in loader workers while
training), converted to RGB or grayscale, then brought to the input size:

- **evaluation** (and the normalisation statistics): resized, keeping its aspect, to cover the
  input size divided by 0.875, then centre-cropped to it (timm's ``crop_pct`` convention, 256 ->
  224 for ImageNet); a folder without ``img_size`` must hold images of one size, used as they
  are;
- **training** (the reference's random-resized-crop family): a random crop of 8 % to 100 % of
  the area at an aspect ratio of 3/4 to 4/3 resized to the input size (left out for a folder of
  one fixed size), a horizontal flip, RandAugment ``rand-m9-n1``, then random erasing (p 0.25)
  after the normalisation, as for CIFAR.

Pixels are scaled to [0, 1] and normalised per channel with the folder's mean and std: given in
the study file, or computed once from up to ``norm_samples`` training images (a fixed draw) with
exact integer sums. :meth:`ImageFolderSplit.uint8_images` gives the evaluation images as uint8,
decoded by a pool of threads, so that the trial engine keeps them on the device at a byte per
pixel and normalises a batch at a time (:func:`normalize`, the same arithmetic as a sample's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from autospikformer.data.base import DataError
from autospikformer.data.folders import (
    FolderInfo,
    FolderListing,
    checked_listing,
    thread_map,
    unreadable,
)

CROP_FRACTION = 0.875  # evaluation: cover size / 0.875, then centre-crop the size
TRAIN_SCALE = (0.08, 1.0)  # random-resized-crop: fraction of the area
TRAIN_RATIO = (3 / 4, 4 / 3)  # random-resized-crop: aspect ratio
_MODES = {3: "RGB", 1: "L"}


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., C, H, W]`` as float32, per channel ``(x / 255 - mean) / std``
    (``mean`` and ``std`` float32 ``[C, 1, 1]`` on the images' device): one conversion, then a
    multiply and a subtract in place, ``x * (1 / (255 std)) - mean / std`` (a tenth of the
    textbook expression's time on a CPU); the one arithmetic of every path, so a sample and a
    device batch agree bit for bit."""
    scale, shift = 1.0 / (255.0 * std), mean / std
    return images.to(torch.float32).mul_(scale).sub_(shift)


class ImageFolderSplit(Dataset):
    """One split of an image folder: ``(image float32 [C, H, W], label)``, decoded when drawn.

    ``augment`` applies the training policy (module docstring); without it a sample is the
    evaluation image of :meth:`uint8`, normalised.
    """

    def __init__(
        self, info: FolderInfo, samples: list[tuple[str, int]], *, augment: bool = False
    ) -> None:
        if info.mean is None or info.std is None:
            raise DataError("imagefolder: the split needs its normalisation (mean and std)")
        self.info = info
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = list(info.classes)
        self.mode = _MODES[info.in_channels]
        self.height, self.width = info.hw
        self.mean = torch.tensor(info.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(info.std, dtype=torch.float32).view(-1, 1, 1)
        self.train_ops = _train_ops(info) if augment else None
        from torchvision.transforms import v2

        self.erase = v2.RandomErasing(p=0.25, value="random") if augment else None

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, index: int, resize: bool = False) -> Any:
        """Sample ``index`` as a Pillow image of the split's mode; with ``resize``, resized to
        cover the evaluation crop (a JPEG decoded at the smallest scale that still covers it)."""
        from PIL import Image

        path = self.samples[index][0]
        try:
            with Image.open(path) as image:
                cover = self._cover(*image.size) if resize else None
                if cover is not None:
                    image.draft(self.mode, cover)
                image = image.convert(self.mode)
        except Exception as exc:  # Pillow raises many kinds for a damaged file
            raise unreadable(path, exc, "decoded") from None
        return image if cover is None else image.resize(cover, Image.Resampling.BILINEAR)

    def _cover(self, width: int, height: int) -> tuple[int, int]:
        """The size (width, height) an image is resized to before the evaluation crop: its
        aspect kept, the input size / 0.875 covered."""
        scale = max(self.width / CROP_FRACTION / width, self.height / CROP_FRACTION / height)
        return max(self.width, round(width * scale)), max(self.height, round(height * scale))

    def uint8(self, index: int) -> torch.Tensor:
        """The evaluation image ``uint8 [C, H, W]`` of sample ``index`` (not normalised)."""
        from torchvision.transforms.v2 import functional as F

        if self.info.settings.img_size:
            image = F.pil_to_tensor(self._decode(index, resize=True))
            return F.center_crop(image, [self.height, self.width])
        image = self._decode(index)
        if image.size != (self.width, self.height):
            raise DataError(
                f"imagefolder: '{self.samples[index][0]}' is {image.size[0]}x{image.size[1]}, "
                f"the folder's images {self.width}x{self.height}: give data.img_size to resize "
                "them"
            )
        return F.pil_to_tensor(image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = self.samples[index][1]
        if self.train_ops is None:
            return normalize(self.uint8(index), self.mean, self.std), label
        from torchvision.transforms.v2 import functional as F

        image = F.pil_to_tensor(self.train_ops(self._decode(index)))
        return self.erase(normalize(image, self.mean, self.std)), label

    def uint8_images(
        self, indices: Sequence[int] | None = None, *, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation images ``uint8 [n, C, H, W]`` of ``indices`` (default: all) and their
        labels, decoded by a pool of threads."""
        picked = list(range(len(self))) if indices is None else [int(i) for i in indices]
        images = thread_map(self.uint8, picked, "decoding the evaluation images", progress)
        shape = (0, self.info.in_channels, self.height, self.width)
        stacked = torch.stack(images) if images else torch.zeros(shape, dtype=torch.uint8)
        labels = torch.tensor([self.samples[i][1] for i in picked], dtype=torch.long)
        return stacked, labels


def _train_ops(info: FolderInfo) -> Callable[[Any], Any]:
    """The geometric and colour part of the training policy, on a Pillow image."""
    from torchvision.transforms import InterpolationMode, v2

    assert info.mean is not None
    steps: list[Any] = []
    if info.settings.img_size:
        steps.append(
            v2.RandomResizedCrop(
                list(info.hw), scale=TRAIN_SCALE, ratio=TRAIN_RATIO,
                interpolation=InterpolationMode.BILINEAR, antialias=True,
            )
        )  # fmt: skip
    fill = [round(255 * m) for m in info.mean]
    steps += [
        v2.RandomHorizontalFlip(),
        v2.RandAugment(
            num_ops=1, magnitude=9, num_magnitude_bins=11,
            interpolation=InterpolationMode.BILINEAR, fill=fill,
        ),
    ]  # fmt: skip
    return v2.Compose(steps)


def pixel_statistics(split: ImageFolderSplit, count: int, progress: bool = False) -> tuple:
    """Per-channel mean and std of the evaluation images of up to ``count`` samples of ``split``
    (all of them, or a fixed draw), from exact integer sums of the pixels; and the count used."""
    size = len(split)
    picked = (
        range(size) if size <= count else sorted(np.random.RandomState(0).permutation(size)[:count])
    )
    sums = np.zeros(split.info.in_channels, dtype=np.int64)
    squares = np.zeros_like(sums)

    def one(index: int) -> tuple[np.ndarray, np.ndarray]:
        pixels = split.uint8(int(index)).numpy().reshape(split.info.in_channels, -1)
        wide = pixels.astype(np.int64)
        return wide.sum(axis=1), (wide * wide).sum(axis=1)

    for s, q in thread_map(one, list(picked), "normalisation from the training images", progress):
        sums += s
        squares += q
    n = len(picked) * split.height * split.width
    mean = sums / (255.0 * n)
    var = squares / (255.0 * 255.0 * n) - mean * mean
    return tuple(float(m) for m in mean), tuple(math.sqrt(max(v, 0.0)) for v in var), len(picked)


def normalized(info: FolderInfo, listing: FolderListing, *, progress: bool = False) -> FolderInfo:
    """``info`` with its normalisation: kept when it has one, else computed from the training
    split of ``listing``."""
    if info.mean is not None:
        return info
    probe = replace(info, mean=(0.0,) * info.in_channels, std=(1.0,) * info.in_channels)
    mean, std, used = pixel_statistics(
        ImageFolderSplit(probe, listing.train), info.settings.norm_samples, progress
    )
    if min(std) == 0.0:
        raise DataError(
            "imagefolder: a channel of the training images has one value everywhere (std 0); "
            "give data.mean and data.std"
        )
    return replace(info, mean=mean, std=std, normalization=f"computed from {used} training images")


def build_image_folder(
    info: FolderInfo, root: str | Path | None, *, train: bool, augment: bool
) -> ImageFolderSplit:
    """One split of an image folder (refused when the folder differs from ``info``)."""
    listing = checked_listing(info, root)
    info = normalized(info, listing)
    return ImageFolderSplit(info, listing.train if train else listing.test, augment=augment)
