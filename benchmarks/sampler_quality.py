"""Sampler quality: hypervolume after N trials, DSPS and DSPS+ against Optuna's samplers.

Two problems. ``surrogate`` (default): ``benchmarks/surrogate.py`` over the real ``S_T2+S_S``
space, a deterministic accuracy-like and energy-like function of the architecture (see that
file), 1000 trials. ``digits``: the digits supernet trained once by
``benchmarks/digits_supernet.py`` and shared by every run, subnets evaluated with inherited
weights on the 360 test digits (accuracy %, measured energy mJ), 300 trials. For every seed and
sampler a fresh in-memory study runs the trials; the script prints each run's hypervolume after
100, 200, 300 (and 1000) trials, on how many seeds each sampler beats each other one (and the
mean ratio), and the sampler's time per trial (outside the objective). Slow samplers can be
capped (``--cap gp=300``): their figures stop at that count.

Reference point. All runs' candidates are pooled and their Pareto front taken; the reference is
that front's nadir (its lowest accuracy, its highest energy) moved 10 % of the front's range
further out in each objective, the usual choice for a fair comparison (Ishibuchi et al., "How to
specify a reference point in hypervolume calculation for fair performance comparison", 2018).
Hypervolumes are divided by the box between that reference and the front's ideal point.
It also prints the Kendall tau between accuracy and energy, as the paper does: over the top 100
DSPS candidates by F_AEB, and over 100 random candidates (the paper: 0.63 vs 0.08).

    python benchmarks/sampler_quality.py                 # surrogate, 1000 trials, 5 seeds
    python benchmarks/sampler_quality.py --problem digits  # 300 trials, 5 seeds
    python benchmarks/sampler_quality.py --trials 300 --seeds 2 --samplers dsps-plus,random
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.pareto import hypervolume_2d, pareto_mask
from autospikformer.report.tables import kendall_tau
from autospikformer.search.architecture import Architecture
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.samplers import SAMPLER_OPTIONS, make_sampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import suggest_architecture

Points = list[tuple[float, float]]  # (accuracy %, energy mJ) of every trial of one run


def pooled_reference(runs: list[Points], margin: float = 0.1) -> tuple[tuple[float, float], float]:
    """(reference (accuracy, energy), normaliser): the pooled front's nadir moved out by
    ``margin`` of its range, and the area of the box between that reference and the ideal."""
    acc, energy = (
        np.array(column) for column in zip(*[p for run in runs for p in run], strict=True)
    )
    front = pareto_mask(acc, energy)
    ideal_acc, nadir_acc = acc[front].max(), acc[front].min()
    ideal_energy, nadir_energy = energy[front].min(), energy[front].max()
    ref_acc = nadir_acc - margin * (ideal_acc - nadir_acc)
    ref_energy = nadir_energy + margin * (nadir_energy - ideal_energy)
    box = (ideal_acc - ref_acc) * (ref_energy - ideal_energy)
    return (float(ref_acc), float(ref_energy)), float(box)


def hypervolume(points: Points, ref: tuple[float, float], box: float) -> float:
    acc, energy = zip(*points, strict=True)
    return hypervolume_2d(acc, energy, ref_energy=ref[1], ref_accuracy=ref[0]) / box


CHECKPOINTS = (100, 200, 300, 1000)


class DigitsObjective:
    """The digits supernet with inherited weights: one trained supernet, real energy.

    Evaluation is a deterministic function of the architecture (fixed calibration subset, one
    thread), so results are cached per architecture and shared by every run of the process;
    ``seconds`` is what the evaluations cost when first made. With ``cache`` the results also
    go to a JSON-lines file tied to the checkpoint's SHA-256, so a rerun (a tuning run, or one
    cut short) evaluates only what it has not seen.
    """

    def __init__(self, checkpoint: Path, cache: Path | None = None) -> None:
        import torch

        from autospikformer.checkpoint import load_supernet
        from autospikformer.study.supernet_stage import file_sha256
        from autospikformer.training.evaluate import SubnetEvaluator

        torch.set_num_threads(1)
        self.evaluator = SubnetEvaluator(
            load_supernet(checkpoint), dataset="digits", data_root=None, calib_batches=2,
            calib_batch_size=64, batch_size=360, device="cpu",
        )  # fmt: skip
        self.cache: dict[str, tuple[float, float]] = {}
        self.seconds = 0.0
        self.evaluated = 0
        self.file = None
        if cache is not None:
            digest = file_sha256(checkpoint)
            if cache.is_file():
                lines = cache.read_text().splitlines()
                head = json.loads(lines[0]) if lines else {}
                if head.get("supernet_sha256") != digest:
                    raise SystemExit(
                        f"{cache} holds evaluations of another supernet "
                        f"({str(head.get('supernet_sha256'))[:12]}, here {digest[:12]}): "
                        "delete it or name another --cache"
                    )
                for line in lines[1:]:
                    row = json.loads(line)
                    self.cache[row["arch"]] = (row["accuracy"], row["energy_mj"])
            else:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"supernet_sha256": digest}) + "\n")
            self.file = cache.open("a")

    def __call__(self, arch: Architecture) -> tuple[float, float]:
        key = str(arch)
        if key not in self.cache:
            start = time.perf_counter()
            r = self.evaluator.evaluate(arch)
            self.seconds += time.perf_counter() - start
            self.evaluated += 1
            self.cache[key] = (100.0 * float(r.accuracy), float(r.energy_mj))
            if self.file is not None:
                acc, energy = self.cache[key]
                row = {"arch": key, "accuracy": acc, "energy_mj": energy}
                self.file.write(json.dumps(row) + "\n")  # one append: safe beside another run
                self.file.flush()
        return self.cache[key]


def run(
    name: str,
    space: SearchSpace,
    trials: int,
    seed: int,
    evaluate: Callable[[Architecture], tuple[float, float]],
    overrides: dict[str, Any] | None = None,
) -> tuple[Points, float]:
    """(every trial's point, seconds per trial spent outside the objective: the sampler's).

    The sampler gets the options a study file gets by default (``SAMPLER_OPTIONS``), then
    ``overrides``."""
    options = {**SAMPLER_OPTIONS[name], **(overrides or {})}
    sampler = make_sampler(name, space=space, seed=seed, **options)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    inside = 0.0

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        nonlocal inside
        arch = suggest_architecture(trial, space)
        start = time.perf_counter()
        values = evaluate(arch)
        inside += time.perf_counter() - start
        return values

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    elapsed = time.perf_counter() - start
    points = [(t.values[0], t.values[1]) for t in study.get_trials(deepcopy=False)]
    return points, (elapsed - inside) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("surrogate", "digits"), default="surrogate")
    parser.add_argument("--trials", type=int, default=None, help="1000 (surrogate), 300 (digits)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samplers", default="dsps-plus,dsps,nsga2,tpe,gp,random")
    parser.add_argument(
        "--cap",
        default="gp=300",
        help="fewer trials for slow samplers, e.g. gp=300,tpe=1000 (their figures stop there)",
    )
    parser.add_argument("--space", default="S_T2+S_S", help="surrogate space (digits: 'digits')")
    parser.add_argument(
        "--supernet",
        type=Path,
        default=Path("runs/bench-digits/supernet.pt"),
        help="digits supernet (benchmarks/digits_supernet.py --out runs/bench-digits)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="digits: keep evaluations in this JSON-lines file (tied to the supernet's SHA-256)",
    )
    parser.add_argument(
        "--mismatch-weight",
        type=float,
        default=surrogate.MISMATCH_WEIGHT,
        help="weight of the surrogate's neuron-mismatch term (0: the easy variant)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if args.problem == "digits":
        space = SearchSpace.load("digits")
        evaluate: Callable[[Architecture], tuple[float, float]] = DigitsObjective(
            args.supernet, args.cache
        )
        trials = args.trials or 300
    else:
        space = SearchSpace.load(args.space)
        weight = args.mismatch_weight

        def evaluate(arch: Architecture) -> tuple[float, float]:
            return surrogate.evaluate(arch, weight)

        trials = args.trials or 1000
    names = args.samplers.split(",")
    caps = {k: int(v) for k, v in (item.split("=") for item in args.cap.split(",") if item)}
    count = {n: min(trials, caps.get(n, trials)) for n in names}
    points: dict[str, list[Points]] = {n: [] for n in names}
    secs: dict[str, list[float]] = {n: [] for n in names}
    print(
        f"problem {args.problem}, space {space.name}, {trials} trials ({count}), {args.seeds} seeds"
    )
    for seed in range(args.seeds):
        for name in names:
            run_points, per_trial = run(name, space, count[name], seed, evaluate)
            points[name].append(run_points)
            secs[name].append(per_trial)
            print(
                f"  seed {seed} {name:>9}: {1000 * per_trial:7.1f} ms per trial (sampler)",
                flush=True,
            )
    if isinstance(evaluate, DigitsObjective):
        print(
            f"digits: {len(evaluate.cache)} distinct architectures known, {evaluate.evaluated} "
            f"evaluated in this run, {evaluate.seconds / max(1, evaluate.evaluated):.2f} s each"
        )

    ref, box = pooled_reference([run for runs in points.values() for run in runs])
    print(f"\npooled-front reference: accuracy {ref[0]:.3f} %, energy {ref[1]:.6g} mJ")
    marks = [c for c in CHECKPOINTS if c < trials] + [trials]
    for mark in marks:
        hv = {
            n: [hypervolume(p[:mark], ref, box) for p in points[n]]
            for n in names
            if count[n] >= mark
        }
        print(f"\nhypervolume after {mark} trials")
        print(
            f"{'sampler':>9} "
            + " ".join(f"{'seed ' + str(s):>8}" for s in range(args.seeds))
            + "     mean    +- sd"
        )
        for name, values in hv.items():
            print(
                f"{name:>9} "
                + " ".join(f"{v:8.5f}" for v in values)
                + f"  {statistics.mean(values):.5f} {statistics.pstdev(values):.5f}"
            )
        for name, values in hv.items():
            parts = []
            for peer, other in hv.items():
                if peer == name:
                    continue
                wins = sum(a > b for a, b in zip(values, other, strict=True))
                ratio = statistics.mean(a / b for a, b in zip(values, other, strict=True))
                parts.append(f"{peer} {wins}/{args.seeds} x{ratio:.4f}")
            print(f"  {name:>9} beats: " + ", ".join(parts))
    print("\nsampler time per trial (outside the objective), mean over seeds:")
    for name in names:
        print(f"  {name:>9}: {1000 * statistics.mean(secs[name]):.2f} ms ({count[name]} trials)")

    taus: dict[str, list[float]] = {}
    for key in ("dsps", "dsps-plus"):
        for run_points in points.get(key, []):
            fit = balanced_fitness([p[0] for p in run_points], [p[1] for p in run_points], 0.5)
            top = sorted(range(len(run_points)), key=lambda i: -fit[i])[:100]
            taus.setdefault(f"{key} top-100", []).append(
                kendall_tau([run_points[i][0] for i in top], [run_points[i][1] for i in top])
            )
    for run_points in points.get("random", []):
        first = run_points[:100]
        taus.setdefault("random 100", []).append(
            kendall_tau([p[0] for p in first], [p[1] for p in first])
        )
    for key, values in taus.items():
        print(
            f"Kendall tau(accuracy, energy), {key}: {statistics.mean(values):.3f} "
            f"(per seed {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
