"""Synthetic data sets written in the real on-disk formats, for benchmarks (no data set host is
reachable from the machines this project runs on).

- CIFAR-10 / CIFAR-100 "python version" folders: pickled dicts of ``uint8 [N, 3072]`` images and
  labels, plus the meta file, exactly the files the loaders read;
- CIFAR10-DVS ``extract/<class>/cifar10_<class>_<i>.aedat`` recordings in AER-DAT 2.0 (big-endian
  address and timestamp words, the sensor's raw address layout), which spikingjelly converts.

The pixel values and events are random: these files time the pipeline, they teach nothing.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def write_cifar(
    folder: Path, *, classes: int = 10, train: int = 500, test: int = 100, seed: int = 0
) -> Path:
    """A CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``) folder of random images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    label_key = b"labels" if classes == 10 else b"fine_labels"

    def dump(name: str, n: int) -> None:
        batch = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            label_key: [int(v) for v in rng.integers(0, classes, size=n)],
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)

    if classes == 10:
        per = -(-train // 5)
        for i in range(1, 6):
            dump(f"data_batch_{i}", per)
        dump("test_batch", test)
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
        meta_name = "batches.meta"
    else:
        dump("train", train)
        dump("test", test)
        meta = {b"fine_label_names": [f"class{i}".encode() for i in range(classes)]}
        meta_name = "meta"
    with (folder / meta_name).open("wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return folder


def write_cifar10dvs(
    folder: Path, *, per_class: int = 10, events: int = 100_000, seed: int = 0
) -> Path:
    """``folder/extract/<class>/*.aedat``: ``per_class`` recordings of ``events`` random events
    per class (about 100k events is a typical CIFAR10-DVS recording)."""
    rng = np.random.default_rng(seed)
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# This is a raw AE data file created by saveaerdat.m\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each "
        b"event\r\n"
        b"# Timestamps tick is 1 us\r\n"
    )
    for cn in CIFAR10_CLASSES:
        (folder / "extract" / cn).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x = rng.integers(0, 128, size=events)
            y = rng.integers(0, 128, size=events)
            p = rng.integers(0, 2, size=events)
            t = np.cumsum(rng.integers(1, 20, size=events))
            # spikingjelly reads x = 127 - y_addr, y = 127 - x_addr, p = 1 - polarity bit
            address = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)
            words = np.stack([address, t], axis=1).astype(">u4")
            path = folder / "extract" / cn / f"cifar10_{cn}_{i}.aedat"
            path.write_bytes(header + words.tobytes())
    return folder
