"""Evaluation time with energy accounting over evaluation without it (target <= 1.15 on a CPU).

Three variants run the same batches in one process, interleaved repeat by repeat (plain,
sop-45nm, memory-45nm; the order rotates each repeat) so that drift in machine load hits them
alike; the ratio of
each metered variant's median pass time to the plain one's is the figure. A plain pass is what
an evaluation loop does: forward, argmax, count correct. A metered pass adds what a search trial
adds: the meter's hooks, ``report()`` under the variant's energy model (with the dense ANN
equivalent) and the compact record the trial stores for re-pricing.

    python benchmarks/energy_overhead.py --space digits --batch-size 64
    python benchmarks/energy_overhead.py --model 4-384 --batch-size 16 --batches 2
    python benchmarks/energy_overhead.py --space dvs --archs 2 --batch-size 4 --batches 2

``--space dvs`` feeds 2x128x128 event frames (integer spike counts, ``event_data=True``: the first
conv is counted as SOPs, so its input is summed too).

``--profile`` adds figures that machine load hardly moves: the share of a profiled metered pass
spent inside the meter's hooks (an upper bound: cProfile inflates Python-level time), and the
once-per-pass costs (meter set-up; report, ANN equivalent and record) timed directly.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from autospikformer.energy import EnergyMeter, EnergyModel
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture, spikformer_4_384
from autospikformer.search.space import SearchSpace

VARIANTS = ("plain", "sop-45nm", "memory-45nm")
SHAPES = {"digits": (1, 8), "dvs": (2, 128)}  # (in_channels, img_size); 3x32x32 otherwise


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


def _timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _evaluate(run: Callable[[torch.Tensor], torch.Tensor], batches: list) -> int:
    correct = 0
    for x, y in batches:
        correct += int((run(x).argmax(-1) == y).sum())
    return correct


def measure(
    model: torch.nn.Module,
    arch: Architecture,
    batches: list,
    repeats: int,
    *,
    supernet: bool,
    event_data: bool,
) -> dict[str, Any]:
    run = (lambda x: model(x, arch)) if supernet else model
    models = {name: EnergyModel(name=name) for name in VARIANTS[1:]}

    def plain() -> None:
        _evaluate(run, batches)

    def metered(pricing: EnergyModel) -> Callable[[], Any]:
        def work() -> Any:
            with EnergyMeter(model, arch, event_data=event_data) as meter:
                _evaluate(run, batches)
            report = meter.report(model=pricing)  # the one host transfer, the pricing
            report.measurement().to_json()  # what the trial stores
            return report

        return work

    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    reports: dict[str, Any] = {}
    with torch.no_grad():
        for variant in VARIANTS:  # warm-up (first-call initialisation)
            _timed(plain if variant == "plain" else metered(models[variant]))
        for i in range(repeats):  # the order rotates, so no variant always runs first
            for variant in VARIANTS[i % 3 :] + VARIANTS[: i % 3]:
                work = plain if variant == "plain" else metered(models[variant])
                w, c, result = _timed(work)
                wall[variant].append(w)
                cpu[variant].append(c)
                if result is not None:
                    reports[variant] = result
    med = statistics.median
    out: dict[str, Any] = {"plain_s": med(wall["plain"])}
    for variant in VARIANTS[1:]:
        out[variant] = {
            "metered_s": med(wall[variant]),
            "ratio_median": med(wall[variant]) / med(wall["plain"]),
            # each metered pass over the plain pass of the same repeat: slow load drift cancels
            "ratio_paired": med(m / p for m, p in zip(wall[variant], wall["plain"], strict=True)),
            "ratio_min": min(wall[variant]) / min(wall["plain"]),
            "cpu_ratio_median": med(cpu[variant]) / med(cpu["plain"]),
            "energy_mj": reports[variant].energy_mj,
            "ann_energy_mj": reports[variant].ann_energy_mj,
        }
    out["mean_firing_rate"] = reports["sop-45nm"].mean_firing_rate
    out["first_conv"] = reports["sop-45nm"].first_conv_rule
    return out


def profile_share(
    model: torch.nn.Module,
    arch: Architecture,
    batches: list,
    repeats: int,
    *,
    supernet: bool,
    event_data: bool,
) -> dict[str, float]:
    """The meter's cost split in what grows with the data and what is paid once per pass.

    ``hooks``: the share of a profiled metered pass spent inside the meter's hooks (cProfile
    inflates Python-level time, so an upper bound); ``setup_ms`` (building the meter, adding and
    removing its hooks) and ``report_ms`` (the memory-45nm report with its ANN equivalent, and
    the record) timed directly, per pass.
    """
    run = (lambda x: model(x, arch)) if supernet else model
    pricing = EnergyModel(name="memory-45nm")
    with torch.no_grad():
        with EnergyMeter(model, arch, event_data=event_data) as meter:
            _evaluate(run, batches)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeats):
            with EnergyMeter(model, arch, event_data=event_data):
                _evaluate(run, batches)
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())  # every function's own time
    hooks = sum(
        row[3]
        for (path, _, name), row in stats.items()
        if path.endswith("meter.py") and name == "hook"
    )

    def setup() -> None:
        with EnergyMeter(model, arch, event_data=event_data):
            pass

    def report() -> None:
        meter.report(model=pricing).measurement().to_json()

    timed = {}
    for name, work in (("setup_ms", setup), ("report_ms", report)):
        work()
        start = time.perf_counter()
        for _ in range(20):
            work()
        timed[name] = (time.perf_counter() - start) / 20 * 1e3
    return {"hooks": hooks / total, **timed}


def _batches(
    args: argparse.Namespace, shape: tuple[int, int, int], steps: int, event_data: bool
) -> list:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(args.batches):
        if event_data:  # spike-count frames [B, T, C, H, W], mostly silent pixels
            x = torch.poisson(torch.full((args.batch_size, steps, *shape), 0.3), generator=gen)
        else:
            x = torch.rand(args.batch_size, *shape, generator=gen)
        out.append((x, torch.randint(0, 10, (args.batch_size,), generator=gen)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits", help="supernet space (ignored with --model)")
    parser.add_argument("--model", choices=["4-384"], help="a standalone Spikformer-4-384, 32x32")
    parser.add_argument("--archs", type=int, default=3, help="subnets sampled from the space")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--profile", action="store_true", help="also the cProfile shares")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    event_data = args.model is None and args.space == "dvs"
    if args.model:
        arch = spikformer_4_384()
        model = Spikformer(arch, num_classes=10).eval()
        cases: list[tuple[torch.nn.Module, Architecture, bool]] = [(model, arch, False)]
        shape = (3, 32, 32)
    else:
        space = SearchSpace.load(args.space)
        channels, size = SHAPES.get(args.space, (3, 32))
        model = SuperSpikformer(space, num_classes=10, in_channels=channels, img_size=size).eval()
        rng = random.Random(0)
        archs = [space.largest(), *(space.sample(rng) for _ in range(args.archs - 1))]
        cases = [(model, a, True) for a in archs]
        shape = (channels, size, size)
    _lively(model)
    results = []
    for net, arch, supernet in cases:
        batches = _batches(args, shape, arch.time_steps, event_data)
        row = measure(net, arch, batches, args.repeats, supernet=supernet, event_data=event_data)
        if args.profile:
            row["profile_share"] = profile_share(
                net, arch, batches, 3, supernet=supernet, event_data=event_data
            )
        results.append({"arch": str(arch), **row})
    worst = {v: max(r[v]["ratio_median"] for r in results) for v in VARIANTS[1:]}
    worst_cpu = {v: max(r[v]["cpu_ratio_median"] for r in results) for v in VARIANTS[1:]}
    summary = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}",
        "input": "event frames" if event_data else "images",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "repeats": args.repeats,
        "results": results,
        "worst_ratio_median": worst,
        "worst_cpu_ratio_median": worst_cpu,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        summary["machine"],
        f"| {summary['input']}, batch {args.batch_size} x {args.batches} batches, "
        f"{args.repeats} repeats",
    )
    for r in results:
        print(f"{r['arch']}  plain {r['plain_s'] * 1e3:.1f} ms, first conv {r['first_conv']}")
        for v in VARIANTS[1:]:
            m = r[v]
            print(
                f"  {v:<12} {m['metered_s'] * 1e3:8.1f} ms  ratio {m['ratio_median']:.3f} "
                f"(paired {m['ratio_paired']:.3f}, min/min {m['ratio_min']:.3f}, "
                f"CPU time {m['cpu_ratio_median']:.3f})  "
                f"{m['energy_mj']:.4g} mJ, ANN {m['ann_energy_mj']:.4g} mJ"
            )
        if "profile_share" in r:
            share = r["profile_share"]
            print(
                f"  profiled: hooks {share['hooks']:.2%} of a metered pass; once per pass: "
                f"set-up {share['setup_ms']:.2f} ms, report + record {share['report_ms']:.2f} ms"
            )
    print(
        "worst median ratio: "
        + ", ".join(f"{v} {worst[v]:.3f} (CPU time {worst_cpu[v]:.3f})" for v in VARIANTS[1:])
        + "; target <= 1.15"
    )


if __name__ == "__main__":
    main()
