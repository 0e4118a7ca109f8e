"""Folders of your own in their real formats for the tests: images (PNG, JPEG) in class folders,
event recordings as spikingjelly's ``.npz`` files, and the frames their integration must give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_image_folder(
    root: Path,
    counts: dict[str, tuple[int, int]],
    *,
    sizes: list[tuple[int, int]] | None = None,
    test_name: str = "test",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``root/{train,<test_name>}/<class>/<i>.png|jpg``: ``counts[class] = (train, test)``
    images, PNG and JPEG in turn, of the ``(height, width)`` ``sizes`` in turn (default: several
    sizes). Returns the pixels written, uint8 ``[H, W, 3]``, by path (a JPEG's as decoded)."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [(20, 30), (33, 25), (24, 24), (40, 52)]
    written, k = {}, 0
    for split, column in (("train", 0), (test_name, 1)):
        for name, numbers in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(numbers[column]):
                height, width = sizes[k % len(sizes)]
                pixels = _smooth_image(rng, height, width)
                path = folder / f"{i}.{'png' if k % 2 == 0 else 'jpg'}"
                Image.fromarray(pixels).save(path)
                with Image.open(path) as image:
                    written[str(path)] = np.asarray(image.convert("RGB"))
                k += 1
    return written


def _smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A colourful image with structure (a gradient plus noise), uint8 ``[H, W, 3]``."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([ys * 255 // max(height - 1, 1), xs * 255 // max(width - 1, 1),
                     (ys + xs) * 127 // max(height + width - 2, 1)], axis=-1)  # fmt: skip
    noise = rng.integers(-40, 41, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_event_folder(
    root: Path,
    counts: dict[str, tuple[int, int]],
    *,
    sensor: tuple[int, int],
    events: int = 40,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """``root/events_np/{train,test}/<class>/<i>.npz`` with ``t, x, y, p`` as spikingjelly
    writes them (``counts[class] = (train, test)`` recordings of ``events`` events on the
    ``(height, width)`` sensor, every pixel reached). Returns the events by path."""
    rng = np.random.default_rng(seed)
    height, width = sensor
    written = {}
    for split, column in (("train", 0), ("test", 1)):
        for name, numbers in counts.items():
            folder = root / "events_np" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(numbers[column]):
                ev = {
                    "t": np.sort(rng.integers(0, 10_000, events)).astype(np.int64),
                    "x": rng.integers(0, width, events).astype(np.uint16),
                    "y": rng.integers(0, height, events).astype(np.uint16),
                    "p": rng.integers(0, 2, events).astype(np.uint8),
                }
                ev["x"][:2], ev["y"][:2] = [0, width - 1], [0, height - 1]  # both corners
                path = folder / f"{i:03d}.npz"
                np.savez(path, **ev)
                written[str(path)] = ev
    return written


def expected_frames(ev: dict[str, np.ndarray], steps: int, sensor: tuple[int, int]) -> torch.Tensor:
    """spikingjelly's split by event number into ``steps`` frames of counts per (p, y, x)."""
    height, width = sensor
    frames = torch.zeros(steps, 2, height, width)
    n = len(ev["t"])
    per = n // steps
    for i in range(n):
        frames[
            min(i // per, steps - 1), int(ev["p"][i] != 0), int(ev["y"][i]), int(ev["x"][i])
        ] += 1
    return frames
