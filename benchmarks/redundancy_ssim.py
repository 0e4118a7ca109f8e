"""SSIM between every pair of SPS channels: batched mosaics against one scikit-image call per pair.

``autospik analyze redundancy`` scores every pair of channels with scikit-image's
``structural_similarity``, many pairs per call (each pair a tile of two mosaics, see
``autospikformer/analysis/redundancy.py``). This script times that against the plain loop of
one call per pair on the same maps, interleaved repeat by repeat in one process, and checks that
both give the same matrix. Maps are random spike-count averages on the CIFAR token grid (8 x 8).

    python benchmarks/redundancy_ssim.py --channels 64 384 --images 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from skimage.metrics import structural_similarity

from autospikformer.analysis.redundancy import DATA_RANGE, pairwise_ssim


def per_pair(maps: np.ndarray, win: int) -> np.ndarray:
    """The baseline: one scikit-image call per pair of channels and image."""
    channels = maps.shape[1]
    out = np.eye(channels)
    for i in range(channels):
        for j in range(i + 1, channels):
            value = np.mean(
                [
                    structural_similarity(m[i], m[j], data_range=DATA_RANGE, win_size=win)
                    for m in maps
                ]
            )
            out[i, j] = out[j, i] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 384])
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    win = 7 if args.grid >= 7 else args.grid - (args.grid % 2 == 0)
    for channels in args.channels:
        maps = rng.integers(0, 9, (args.images, channels, args.grid, args.grid)) / 4.0
        loop, batched = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            expected = per_pair(maps, win)
            loop.append(time.perf_counter() - start)
            start = time.perf_counter()
            got = pairwise_ssim(maps, win_size=win)
            batched.append(time.perf_counter() - start)
            assert np.allclose(got, expected, atol=1e-12), "batched SSIM differs from per pair"
        pairs = channels * (channels - 1) // 2
        a, b = statistics.median(loop), statistics.median(batched)
        print(
            f"{channels:4d} channels, {args.images} image(s), {pairs:,} pairs: per pair "
            f"{a:8.3f} s, batched {b:7.3f} s, ratio {a / b:6.1f}x (medians of {args.repeats}); "
            "matrices equal to 1e-12"
        )


if __name__ == "__main__":
    main()
