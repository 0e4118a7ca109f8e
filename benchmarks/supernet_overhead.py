"""Forward+backward time of a subnet run through the supernet over the same standalone model.

For a few architectures of a space, the subnet is timed through ``SuperSpikformer.forward(x, arch)``
(leading-slice weights) and through ``supernet.extract(arch)`` (a plain Spikformer with copied
weights), interleaved in one process; the figure is the ratio of the medians. Target: <= 1.10.

    python benchmarks/supernet_overhead.py --space S_T1+S_S --batch-size 8 --repeats 7
    python benchmarks/supernet_overhead.py --space digits --batch-size 128
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from autospikformer import SearchSpace, SuperSpikformer

SIZES = {"digits": (1, 8, 10), "dvs": (2, 128, 10)}


def _step_seconds(run, x: torch.Tensor) -> float:
    start = time.perf_counter()
    run(x).float().square().mean().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space", default="S_T1+S_S")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--archs", type=int, default=4, help="largest, smallest and random ones")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    space = SearchSpace.load(args.space)
    in_channels, img_size, classes = SIZES.get(args.space, (3, 32, 100))
    supernet = SuperSpikformer(
        space, num_classes=classes, in_channels=in_channels, img_size=img_size
    )
    supernet.to(args.device).train()
    rng = random.Random(args.seed)
    archs = [space.largest(), space.smallest()]
    archs += [space.sample(rng) for _ in range(max(0, args.archs - 2))]
    x = torch.rand(args.batch_size, in_channels, img_size, img_size, device=args.device)

    print(
        f"space {space.name}, batch {args.batch_size}, device {args.device}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print(f"{'architecture':<58} {'standalone s':>12} {'supernet s':>11} {'ratio':>6}")
    ratios = []
    for arch in archs:
        model = supernet.extract(arch).train()
        runs = {"standalone": model, "supernet": lambda inp, a=arch: supernet(inp, a)}
        for run in runs.values():  # warm-up
            _step_seconds(run, x)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for key, run in runs.items():
                supernet.zero_grad(set_to_none=True)
                model.zero_grad(set_to_none=True)
                times[key].append(_step_seconds(run, x))
        standalone = statistics.median(times["standalone"])
        through = statistics.median(times["supernet"])
        ratios.append(through / standalone)
        print(
            f"{str(arch)[:58]:<58} {standalone:12.4f} {through:11.4f} {through / standalone:6.3f}"
        )
    print(
        f"geometric-mean ratio supernet/standalone: {statistics.geometric_mean(ratios):.3f} (target <= 1.10)"
    )


if __name__ == "__main__":
    main()
