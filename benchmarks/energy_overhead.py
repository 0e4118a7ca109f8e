"""Evaluation time with energy accounting over evaluation without it (target <= 1.15 on a CPU).

Both variants run the same batches in one process, interleaved repeat by repeat (plain, metered,
plain, metered, ...) so that drift in machine load hits both alike; the ratio of the median pass
times is the figure. One pass is what an evaluation loop does: forward, argmax, count correct.

    python benchmarks/energy_overhead.py --space digits --batch-size 64
    python benchmarks/energy_overhead.py --model 4-384 --batch-size 16 --batches 2
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch

from autospikformer.energy import EnergyMeter
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture, spikformer_4_384
from autospikformer.search.space import SearchSpace


def _lively(model: torch.nn.Module) -> None:
    """Weights and BN affine set so that neurons fire at realistic rates (a fresh init is
    nearly silent)."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):  # fan-in scaled, input-driven
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2 / fan_in**0.5)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 1.5


def _pass(run: Callable[[torch.Tensor], torch.Tensor], batches: list) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one evaluation pass."""
    wall, cpu = time.perf_counter(), time.process_time()
    correct = 0
    for x, y in batches:
        correct += int((run(x).argmax(-1) == y).sum())
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(
    model: torch.nn.Module, arch: Architecture, batches: list, repeats: int, supernet: bool
) -> dict[str, float]:
    run = (lambda x: model(x, arch)) if supernet else model
    plain, metered = [], []
    with torch.no_grad():
        _pass(run, batches[:1])  # warm-up (first-call initialisation)
        with EnergyMeter(model, arch) as meter:
            _pass(run, batches[:1])
        for _ in range(repeats):
            plain.append(_pass(run, batches))
            with EnergyMeter(model, arch) as meter:
                metered.append(_pass(run, batches))
                report = meter.report()  # included: the one host transfer at the end
    med = statistics.median
    return {
        "plain_s": med(p[0] for p in plain),
        "metered_s": med(m[0] for m in metered),
        "ratio_median": med(m[0] for m in metered) / med(p[0] for p in plain),
        "ratio_min": min(m[0] for m in metered) / min(p[0] for p in plain),
        "cpu_ratio_median": med(m[1] for m in metered) / med(p[1] for p in plain),
        "energy_mj": report.energy_mj,
        "mean_firing_rate": report.mean_firing_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits", help="supernet space (ignored with --model)")
    parser.add_argument("--model", choices=["4-384"], help="a standalone Spikformer-4-384, 32x32")
    parser.add_argument("--archs", type=int, default=3, help="subnets sampled from the space")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    if args.model:
        arch = spikformer_4_384()
        model = Spikformer(arch, num_classes=10).eval()
        cases: list[tuple[torch.nn.Module, Architecture, bool]] = [(model, arch, False)]
        shape = (3, 32, 32)
    else:
        space = SearchSpace.load(args.space)
        size = 8 if args.space == "digits" else 32
        model = SuperSpikformer(
            space, num_classes=10, in_channels=1 if size == 8 else 3, img_size=size
        ).eval()
        rng = random.Random(0)
        archs = [space.largest(), *(space.sample(rng) for _ in range(args.archs - 1))]
        cases = [(model, a, True) for a in archs]
        shape = (model.in_channels, size, size)
    _lively(model)
    batches = [
        (torch.rand(args.batch_size, *shape), torch.randint(0, 10, (args.batch_size,)))
        for _ in range(args.batches)
    ]
    for net, arch, supernet in cases:
        row = measure(net, arch, batches, args.repeats, supernet)
        results.append({"arch": str(arch), **row})
    summary = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "repeats": args.repeats,
        "results": results,
        "worst_ratio_median": max(r["ratio_median"] for r in results),
        "worst_cpu_ratio_median": max(r["cpu_ratio_median"] for r in results),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        summary["machine"],
        f"batch {args.batch_size} x {args.batches} batches, {args.repeats} repeats",
    )
    for r in results:
        print(
            f"{r['arch']:<44} plain {r['plain_s'] * 1e3:8.1f} ms  metered "
            f"{r['metered_s'] * 1e3:8.1f} ms  ratio {r['ratio_median']:.3f} "
            f"(min/min {r['ratio_min']:.3f}, CPU time {r['cpu_ratio_median']:.3f})"
        )
    print(
        f"worst median ratio: wall {summary['worst_ratio_median']:.3f}, "
        f"CPU time {summary['worst_cpu_ratio_median']:.3f} (target <= 1.15)"
    )


if __name__ == "__main__":
    main()
