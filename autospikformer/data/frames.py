"""Event data as frames: every events file read once into a compact cache, frames for any T.

A split's cache (``<set folder>/autospikformer_events/<train|test>/``, ``<split>-<H>x<W>/`` for
frames pooled down from the sensor) holds every sample's events in file order as one code each,
``p * H * W + y * W + x`` (``uint16``, 2 bytes an event, whatever the number of time steps;
``uint32`` for grids of more than 32768 pixels a polarity), with the per-sample offsets and
labels, and ``index.json``: the ``events_np`` files it was read from and their sizes, so that a
changed folder is read again.
It is built once, under the folder's lock, the first time a split is opened; every later opening
(a training run, each search worker) maps the files and reads no events file.

Frames for T are integrated from those codes exactly as spikingjelly's
``integrate_events_by_fixed_frames_number(split_by="number")`` does: with N events, frame j
counts the events ``[j * (N // T), (j + 1) * (N // T))`` and the last frame keeps the rest; each
frame holds the event count per (polarity, y, x). One frame set costs one ``bincount``, so
:class:`EventFrames` integrates a training sample when it is drawn, and :meth:`EventFrames.counts`
builds a whole evaluation split at T as integer counts (uint8 when they fit) to keep in memory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from autospikformer.data.base import DataError, DatasetInfo
from autospikformer.data.eventfolder import (
    damaged_advice,
    folder_samples,
    is_event_folder,
    outside_advice,
    sensor_size,
)
from autospikformer.data.events import (
    event_samples,
    folder_lock,
    frame_size,
    read_events,
)

CACHE_DIR = "autospikformer_events"
CACHE_FORMAT = 1
CODE_DTYPE = np.dtype("<u2")  # p * H * W + y * W + x < 2 * 128 * 128 = 32768
WIDE_CODE_DTYPE = np.dtype("<u4")  # for grids of more than 32768 pixels a polarity
COUNT_DTYPES = (np.uint8, np.int16, np.int32)  # the narrowest that holds a split's counts
FLIPPED = ("cifar10dvs", "ncaltech101")  # object classes: a mirrored recording keeps its label


def code_dtype(height: int, width: int) -> np.dtype:
    """The narrowest code type for a ``height x width`` grid of two polarities."""
    return CODE_DTYPE if 2 * height * width <= 1 << 16 else WIDE_CODE_DTYPE


def integrate(codes: np.ndarray, time_steps: int, pixels: int) -> np.ndarray:
    """Event counts ``int64 [T, pixels]`` of one sample: spikingjelly's split by event number.

    ``codes`` are the sample's events in file order; frame j counts events
    ``[j * (N // T), (j + 1) * (N // T))``, the last frame also the remainder.
    """
    n = len(codes)
    per = n // time_steps
    lengths = np.full(time_steps, per, dtype=np.int64)
    lengths[-1] = n - per * (time_steps - 1)
    frame = np.repeat(np.arange(time_steps, dtype=np.int64), lengths)
    flat = np.bincount(frame * pixels + codes, minlength=time_steps * pixels)
    return flat.reshape(time_steps, pixels)


def _track(items: Sequence[Any], description: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, total=len(items))


@dataclass
class EventSplit:
    """One split's event cache, memory-mapped: the codes, per-sample offsets and labels."""

    name: str
    path: Path  # the cache folder
    height: int
    width: int
    samples: list[tuple[str, int]]  # (events file, label), the cache's sample order
    classes: list[str]
    offsets: np.ndarray  # int64 [n + 1]
    codes: np.ndarray = field(repr=False)  # uint16 (or uint32) memmap [total events]

    @property
    def pixels(self) -> int:
        return 2 * self.height * self.width

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def frames(self, index: int, time_steps: int) -> np.ndarray:
        """Event counts ``int64 [T, 2, H, W]`` of sample ``index``."""
        codes = self.codes[self.offsets[index] : self.offsets[index + 1]]
        counts = integrate(codes, time_steps, self.pixels)
        return counts.reshape(time_steps, 2, self.height, self.width)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers started by spawn
        state = dict(self.__dict__)
        state["codes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.codes = _map_codes(self.path, code_dtype(self.height, self.width))


def _map_codes(path: Path, dtype: np.dtype) -> np.ndarray:
    size = (path / "codes.bin").stat().st_size
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path / "codes.bin", dtype=dtype, mode="r")


def _listing(folder: Path, samples: list[tuple[str, int]]) -> list[list[Any]]:
    """What the cache was read from: each events file (relative to ``events_np``) and its size."""
    raw = folder / "events_np"
    return [[str(Path(p).relative_to(raw)), os.path.getsize(p), label] for p, label in samples]


def _load(
    path: Path, listing: list[list[Any]], grid: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The cache at ``path`` if it was read from exactly ``listing`` into frames of ``grid``
    (None: absent or stale)."""
    try:
        index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError):
        return None
    if index.get("format") != CACHE_FORMAT or index.get("files") != listing:
        return None
    if (index.get("height"), index.get("width")) != grid:
        return None
    offsets = np.load(path / "offsets.npy")
    if len(offsets) != len(listing) + 1:
        return None
    return offsets, _map_codes(path, code_dtype(*grid))


def _read(info: DatasetInfo, events_file: str) -> dict[str, np.ndarray]:
    try:
        return read_events(events_file)
    except Exception as exc:  # a truncated or foreign .npz: name it, keep nothing half-built
        raise DataError(
            f"{info.name}: '{events_file}' cannot be read ({type(exc).__name__}: {exc}); "
            f"{damaged_advice(info)}"
        ) from None


def _codes(
    info: DatasetInfo, events_file: str, sensor: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    """One file's events as codes of the ``grid``, checked against the ``sensor``."""
    ev = _read(info, events_file)
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    (height, width), (rows, cols) = sensor, grid
    if len(x) and (x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height):
        raise DataError(
            f"{info.name}: '{events_file}' holds events outside the {height}x{width} (height x "
            f"width) sensor (x {x.min()}..{x.max()}, y {y.min()}..{y.max()}): "
            f"{outside_advice(info)}"
        )
    if grid != sensor:  # pooled: each event counts in the grid cell over its pixel
        x, y = x * cols // width, y * rows // height
    return (ev["p"] != 0).astype(np.int64) * rows * cols + y * cols + x


def _build(
    info: DatasetInfo, path: Path, samples: list[tuple[str, int]], listing: list,
    shapes: tuple[tuple[int, int], tuple[int, int]], progress: bool,
) -> None:  # fmt: skip
    """Read every events file of the split once and write the cache atomically; ``shapes`` is
    the sensor's ``(H, W)`` and the frames'."""
    sensor, grid = shapes
    dtype = code_dtype(*grid)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        with (tmp / "codes.bin").open("wb") as out:
            files = _track(samples, f"reading {info.name} events into the frame cache", progress)
            for i, (events_file, _) in enumerate(files):
                codes = _codes(info, events_file, sensor, grid)
                out.write(codes.astype(dtype).tobytes())
                offsets[i + 1] = offsets[i] + len(codes)
        np.save(tmp / "offsets.npy", offsets)
        index = {"format": CACHE_FORMAT, "height": grid[0], "width": grid[1], "files": listing}
        (tmp / "index.json").write_text(json.dumps(index))
        shutil.rmtree(path, ignore_errors=True)  # a stale cache (the folder changed)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(
            f"{info.name}: cannot write the frame cache '{path}' ({exc.strerror or exc}); the "
            "data set folder must be writable (copy it somewhere writable)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _samples(
    info: DatasetInfo, root: Path, train: bool
) -> tuple[Path, list[tuple[str, int]], list[str], tuple[int, int]]:
    """The set's folder, one split's ``(events file, label)`` list, the class names and the
    sensor's ``(H, W)``: from spikingjelly's preparation, or a folder of your own."""
    if is_event_folder(info):
        return (*folder_samples(info, root, train), sensor_size(info))  # type: ignore[arg-type]
    return (*event_samples(info, root, train), frame_size(info.name))


def open_split(info: DatasetInfo, root: Path, *, train: bool, progress: bool = False) -> EventSplit:
    """One split's event cache, built first (every events file read once) when it is missing."""
    folder, samples, classes, sensor = _samples(info, root, train)
    grid = info.hw  # the sensor's, or smaller: pooled
    split = "train" if train else "test"
    path = folder / CACHE_DIR / (split if grid == sensor else f"{split}-{grid[0]}x{grid[1]}")
    listing = _listing(folder, samples)
    loaded = _load(path, listing, grid)
    if loaded is None:
        with folder_lock(folder):
            loaded = _load(path, listing, grid)  # another process may have built it meanwhile
            if loaded is None:
                _build(info, path, samples, listing, (sensor, grid), progress)
                loaded = _load(path, listing, grid)
    assert loaded is not None
    offsets, codes = loaded
    return EventSplit(info.name, path, *grid, samples, classes, offsets, codes)


class EventFrames(Dataset):
    """One split of an event set at ``time_steps`` frames: ``(frames float32 [T, 2, H, W], label)``.

    Frames are integrated from the split's cache when a sample is drawn (one ``bincount``);
    ``transform`` (the training augmentation) applies to the float frames.
    """

    def __init__(
        self,
        split: EventSplit,
        time_steps: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if time_steps < 1:
            raise DataError(f"time_steps must be >= 1, got {time_steps}")
        self.split = split
        self.time_steps = int(time_steps)
        self.transform = transform
        self.samples = split.samples
        self.targets = split.targets
        self.classes = split.classes

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        counts = self.split.frames(index, self.time_steps)
        frames = torch.from_numpy(counts.astype(np.float32))
        if self.transform is not None:
            frames = self.transform(frames)
        return frames, self.samples[index][1]

    def counts(
        self, indices: Sequence[int] | None = None, *, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer event counts ``[n, T, 2, H, W]`` of ``indices`` (default: all) and their labels.

        The dtype is the narrowest that holds every count (uint8, else int16, else int32): a
        split kept in memory at 1 byte per pixel and step instead of float32's 4. No transform.
        """
        picked = list(range(len(self))) if indices is None else [int(i) for i in indices]
        split, steps = self.split, self.time_steps
        out = np.zeros((len(picked), steps, split.pixels), dtype=COUNT_DTYPES[0])
        for k, i in enumerate(_track(picked, f"{split.name} frames, T={steps}", progress)):
            codes = split.codes[split.offsets[i] : split.offsets[i + 1]]
            counts = integrate(codes, steps, split.pixels)
            peak = int(counts.max()) if counts.size else 0
            while peak > np.iinfo(out.dtype).max:
                out = out.astype(COUNT_DTYPES[COUNT_DTYPES.index(out.dtype.type) + 1])
            out[k] = counts
        frames = torch.from_numpy(out).view(len(picked), steps, 2, split.height, split.width)
        labels = torch.tensor([self.samples[i][1] for i in picked], dtype=torch.long)
        return frames, labels


class EventAugment:
    """Our train-time policy for event frames (the paper and SPEC give none).

    A random translation of the whole clip by up to ``max_shift`` pixels (zeros fill the gap),
    the same for every time step, and, where ``flip`` is set, a random horizontal flip. The flip
    is for CIFAR10-DVS only: in DVS128 Gesture it would turn a left-hand gesture into a
    right-hand one, or clockwise into counter-clockwise, and so change the label.
    """

    def __init__(self, flip: bool, max_shift: int) -> None:
        self.flip = flip
        self.max_shift = max_shift

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.flip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        s = self.max_shift
        dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,)))
        if dx == 0 and dy == 0:
            return frames
        h, w = frames.shape[-2:]
        out = torch.zeros_like(frames)
        out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = frames[
            ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out


def build_event_frames(
    info: DatasetInfo,
    root: Path,
    *,
    train: bool,
    augment: bool,
    time_steps: Sequence[int],
    progress: bool = False,
) -> dict[int, EventFrames]:
    """One split of an event set at each T of ``time_steps``, all over one cache opened once."""
    split = open_split(info, root, train=train, progress=progress)
    out = {}
    for steps in time_steps:
        transform = None
        if augment:
            transform = EventAugment(flip=info.name in FLIPPED, max_shift=min(info.hw) // 10)
        out[int(steps)] = EventFrames(split, int(steps), transform)
    return out
