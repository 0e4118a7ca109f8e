"""Image folders at scale: the evaluation images decoded by a pool of threads against one thread,
and the trial engine's images held as uint8 (normalised a batch at a time) against float32.

A folder of ``--images`` JPEGs of ``--source`` pixels (10 classes, structured content, the real
format) is written to a temporary folder and opened as a study would open it
(``img_size = --size``). Three figures, each a ratio against a baseline run in this process:

1. **decoding**: ``ImageFolderSplit.uint8_images`` (open, JPEG draft, convert, resize to cover,
   centre-crop) over the test split with the pool of threads, against the same with one thread,
   alternating, median of ``--repeats``; images/s of both. Target: >= 1 (the pool never slows
   decoding down).
2. **memory**: bytes of the evaluation split held on the device, uint8 against float32.
   Target: 0.25 exactly (one byte a pixel instead of four).
3. **evaluation**: one subnet's evaluation pass (``SubnetEvaluator.evaluate``: recalibration,
   evaluation, energy meter) on uint8 images normalised a batch at a time, against the same
   evaluator holding the normalised float32 images; the two alternate repeat by repeat (the
   order flipping each repeat), median of ``--repeats`` in wall and process CPU time; the
   accuracies must be equal. Target: <= 1.05. Since a loaded machine scatters whole passes by
   more than that, the normalisation's own cost is timed too: drawing every batch of the uint8
   split against the float32 one, in CPU time.

    python benchmarks/image_folder.py --images 256 --size 224 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from autospikformer.data import folders
from autospikformer.data.folders import FolderSettings, folder_info
from autospikformer.data.imagefolder import normalize
from autospikformer.data.loading import build_dataset
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.training.evaluate import DeviceSplit, SubnetEvaluator

SPACE = {
    "name": "bench",
    "transformer": {"embed_dim": [32, 64], "mlp_ratio": [2.0], "num_heads": [4], "depth": [1, 2]},
    "neuron": {"threshold": [1.0], "tau": [2.0], "time_steps": [1, 2]},
}


def write_folder(root: Path, images: int, source: tuple[int, int]) -> None:
    """``images`` JPEGs per split, 10 classes, ``source`` = (width, height)."""
    rng = np.random.default_rng(0)
    width, height = source
    ys, xs = np.mgrid[0:height, 0:width]
    for split in ("train", "val"):
        for i in range(images):
            folder = root / split / f"class_{i % 10:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            phase = rng.uniform(0, 6.3, 3)
            base = 127 + 100 * np.sin(xs[..., None] / 17 + ys[..., None] / 23 + phase)
            pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def decoding(test, threads: int) -> float:
    """Seconds to decode the whole test split with ``threads`` threads."""
    saved = folders.DECODE_THREADS
    folders.DECODE_THREADS = threads
    try:
        start = time.perf_counter()
        test.uint8_images()
        return time.perf_counter() - start
    finally:
        folders.DECODE_THREADS = saved


def iterate(split: DeviceSplit) -> float:
    """CPU seconds to draw every batch of a held split (and touch it)."""
    start = time.process_time()
    for x, _ in split:
        x.sum()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="images per split")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--source", type=int, nargs=2, default=[500, 375], help="width height")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root, args.images, tuple(args.source))
        info = folder_info(FolderSettings.from_table("imagefolder", {"img_size": args.size}), root)
        test = build_dataset(info, root, train=False)
        pool = folders.DECODE_THREADS
        decoding(test, pool)  # the files in the page cache for both
        runs: dict[int, list[float]] = {1: [], pool: []}
        for repeat in range(args.repeats):
            for threads in (1, pool) if repeat % 2 == 0 else (pool, 1):
                runs[threads].append(decoding(test, threads))
        one, many = statistics.median(runs[1]), statistics.median(runs[pool])
        n = len(test)
        print(f"decoding {n} JPEGs {args.source[0]}x{args.source[1]} -> {args.size}x{args.size} "
              f"(median of {args.repeats}): 1 thread {n / one:.1f} images/s, {pool} threads "
              f"{n / many:.1f} images/s, speed-up {one / many:.2f} (target >= 1)")  # fmt: skip
        torch.manual_seed(0)
        supernet = SuperSpikformer.for_data(SearchSpace.from_dict(SPACE), test.info)
        evaluator = SubnetEvaluator(
            supernet, dataset=test.info, data_root=root, calib_batches=1, calib_batch_size=16,
            batch_size=16, device="cpu",
        )  # fmt: skip
        calib, held = evaluator.splits(1)
        floats = DeviceSplit(normalize(held.inputs, *held.normalization), held.labels, 16)
        ratio_bytes = held.inputs.nbytes / floats.inputs.nbytes
        print(f"memory of the {n} held evaluation images: uint8 {held.inputs.nbytes / 2**20:.1f} "
              f"MiB, float32 {floats.inputs.nbytes / 2**20:.1f} MiB, ratio {ratio_bytes:.3f} "
              "(target 0.25)")  # fmt: skip
        arch = Architecture.uniform(depth=1, embed_dim=64, mlp_ratio=2.0, num_heads=4, time_steps=1)
        wall: dict[str, list[float]] = {"uint8": [], "float32": []}
        cpu: dict[str, list[float]] = {"uint8": [], "float32": []}
        accuracy = {}
        for repeat in range(args.repeats):
            order = (("uint8", held), ("float32", floats))
            for name, split in order if repeat % 2 == 0 else order[::-1]:
                evaluator._data[None] = (calib, split)
                start = time.process_time()
                result = evaluator.evaluate(arch)
                cpu[name].append(time.process_time() - start)
                wall[name].append(result.seconds)
                accuracy[name] = result.accuracy
        assert accuracy["uint8"] == accuracy["float32"], accuracy
        a, b = statistics.median(wall["uint8"]), statistics.median(wall["float32"])
        c, d = statistics.median(cpu["uint8"]), statistics.median(cpu["float32"])
        extra = statistics.median(iterate(held) - iterate(floats) for _ in range(args.repeats))
        print(f"normalising the {n} evaluation images a batch at a time: {extra * 1e3:.1f} ms "
              f"CPU a pass, {extra / d:.1%} of the float32 pass")  # fmt: skip
        print(f"evaluation of {arch} on {n} images (median of {args.repeats}): wall uint8 "
              f"{a:.3f} s, float32 {b:.3f} s, ratio {a / b:.3f}; CPU uint8 {c:.3f} s, float32 "
              f"{d:.3f} s, ratio {c / d:.3f} (target <= 1.05); equal accuracy "
              f"{accuracy['uint8']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
