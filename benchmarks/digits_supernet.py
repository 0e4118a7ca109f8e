"""Train the digits supernet on this CPU and show what BN recalibration does to inherited weights.

Prints the training time, the test accuracy (360 images) of the largest and the smallest subnet
with and without BN recalibration, and the per-trial evaluation time over random subnets (what
one trial of a search costs). ``--threads`` defaults to torch's own choice.

    python benchmarks/digits_supernet.py --out runs/bench-digits
    python benchmarks/digits_supernet.py --out runs/bench-digits-val --val-fraction 0.2

``--val-fraction`` trains without the validation part of the training split (the study file's
``data.val_fraction`` under ``search.eval_split = "val"``, drawn with ``--split-seed``, the
study's seed), as ``autospik study run`` does for such a study.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from autospikformer.checkpoint import load_supernet
from autospikformer.data.split import HoldoutSplit
from autospikformer.search.space import SearchSpace
from autospikformer.training.config import TrainConfig
from autospikformer.training.evaluate import SubnetEvaluator
from autospikformer.training.trainer import train_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-digits"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-resume", action="store_true", help="train from scratch")
    parser.add_argument("--calib-batches", type=int, default=2)
    parser.add_argument("--calib-batch-size", type=int, default=64)
    parser.add_argument("--trials", type=int, default=20, help="random subnets to time")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="hold out this fraction of the training digits (validation protocol)",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="the study seed of the split")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override a digits training setting, e.g. --set epochs=10 lr=0.003")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = TrainConfig.preset("digits").replace(**overrides)
    space = SearchSpace.load("digits")
    holdout = None
    if args.val_fraction is not None:
        holdout = HoldoutSplit(fraction=args.val_fraction, seed=args.split_seed)
    print(f"threads {torch.get_num_threads()}; settings {config.to_dict()}")

    start = time.perf_counter()
    path = train_supernet(
        space=space, dataset="digits", data_root=None, out_dir=args.out, config=config,
        device="cpu", resume=not args.no_resume, holdout=holdout,
    )  # fmt: skip
    train_s = time.perf_counter() - start
    print(f"training: {train_s:.0f} s (0 if the checkpoint was already complete)")

    evaluator = SubnetEvaluator(
        load_supernet(path), dataset="digits", data_root=None, calib_batches=args.calib_batches,
        calib_batch_size=args.calib_batch_size, batch_size=360, device="cpu", holdout=holdout,
    )  # fmt: skip
    print("| subnet | params | recalibrated | accuracy | energy (mJ) | firing rate | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        for recal in (True, False):
            r = evaluator.evaluate(arch, recalibrate=recal)
            print(
                f"| {name} `{arch}` | {r.num_parameters:,} | {'yes' if recal else 'no'} | "
                f"{r.accuracy:.1%} | {r.energy_mj:.5f} | {r.mean_firing_rate:.3f} | "
                f"{r.seconds:.2f} |"
            )
    rng = random.Random(0)
    results = [evaluator.evaluate(space.sample(rng)) for _ in range(args.trials)]
    seconds = [r.seconds for r in results]
    accs = [r.accuracy for r in results]
    print(
        f"{args.trials} random subnets (recalibrated, with energy): accuracy "
        f"min {min(accs):.1%} / median {statistics.median(accs):.1%} / max {max(accs):.1%}; "
        f"seconds per trial mean {statistics.mean(seconds):.2f}, "
        f"median {statistics.median(seconds):.2f}, max {max(seconds):.2f}"
    )


if __name__ == "__main__":
    main()
