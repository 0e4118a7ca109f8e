"""Event data in the sets' exact on-disk formats (AER-DAT 2.0 for CIFAR10-DVS, AEDAT 3.1 for
DVS128 Gesture), and the frames spikingjelly's integration must give, for the tests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CLASS_SIZES = [10, 2, 11, 1, 2, 20, 2, 3, 2, 12]  # ceil(0.9 n) train: 9, 2, 10, 1, 2, 18, ...


def write_cifar10dvs_aedat(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    """AER-DAT2.0: text header, then big-endian (address, timestamp) uint32 pairs.

    ``events`` are (t, x, y, p) as spikingjelly reports them; the file holds the sensor's raw
    address, which spikingjelly transposes and flips (x = 127 - y_addr, y = 127 - x_addr,
    p = 1 - polarity bit), so the inverse is written here.
    """
    words = []
    for t, x, y, p in events:
        x_addr, y_addr, pol = 127 - y, 127 - x, 1 - p
        words += [(y_addr << 8) | (x_addr << 1) | pol, t]
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# This is a raw AE data file created by saveaerdat.m\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each "
        b"event\r\n"
        b"# Timestamps tick is 1 us\r\n"
    )
    path.write_bytes(header + np.asarray(words, dtype=">u4").tobytes())


def write_aedat3(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    """AEDAT 3.1: text header up to #!END-HEADER, then packets of a 28-byte header + events.

    A special-event packet (type 0) comes first, as in real recordings; the polarity events
    (type 1, 8 bytes: address word with x << 17 | y << 2 | p << 1 | valid, then the timestamp)
    are split over two packets.
    """
    out = bytearray(
        b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01\r\n"
        b"#!END-HEADER\r\n"
    )
    out += struct.pack("<HHIIIIII", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<II", 0x0B, 0)
    halves = [events[: len(events) // 2], events[len(events) // 2 :]]
    for part in halves:
        out += struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, len(part), len(part), len(part))
        for t, x, y, p in part:
            out += struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, t)
    path.write_bytes(bytes(out))


def sample_events(rng: np.random.Generator, n: int, t0: int = 0) -> list[tuple[int, ...]]:
    """``n`` events (t, x, y, p) at distinct pixels, increasing timestamps from ``t0``."""
    flat = rng.choice(128 * 128, size=n, replace=False)
    return [
        (t0 + 10 * i + 1, int(f % 128), int(f // 128), int(rng.integers(0, 2)))
        for i, f in enumerate(flat)
    ]


def expected_frames(events: list[tuple[int, ...]], T: int) -> torch.Tensor:
    """Split by event count into T frames, counting events per (polarity, y, x)."""
    frames = torch.zeros(T, 2, 128, 128)
    per = len(events) // T
    for i, (_, x, y, p) in enumerate(events):
        frames[min(i // per, T - 1), p, y, x] += 1
    return frames


def write_cifar10dvs_extract(
    root: Path, sizes: list[int], *, events_per_sample: int, seed: int = 0
) -> dict[str, list[tuple[int, ...]]]:
    """``root/extract/<class>/cifar10_<class>_<i>.aedat`` for ``sizes[c]`` samples of class c,
    as the figshare zips unpack; returns each sample's events by file stem."""
    rng = np.random.default_rng(seed)
    events = {}
    for cn, size in zip(CIFAR10_NAMES, sizes, strict=True):
        (root / "extract" / cn).mkdir(parents=True)
        for i in range(size):
            ev = sample_events(rng, events_per_sample)
            write_cifar10dvs_aedat(root / "extract" / cn / f"cifar10_{cn}_{i}.aedat", ev)
            events[f"cifar10_{cn}_{i}"] = ev
    return events
