"""Sampler quality on the surrogate problem: hypervolume after N trials, DSPS vs Optuna's samplers.

The problem is ``benchmarks/surrogate.py`` over the real ``S_T2+S_S`` space (a deterministic
accuracy-like and energy-like function of the architecture; see that file). For every seed and
sampler a fresh in-memory study runs ``--trials`` trials; the script prints each run's
hypervolume, the ratio of each sampler's hypervolume to random search's of the same seed, and the
wall time.

Reference point. All runs' candidates are pooled and their Pareto front taken; the reference is
that front's nadir (its lowest accuracy, its highest energy) moved 10 % of the front's range
further out in each objective, the usual choice for a fair comparison (Ishibuchi et al., "How to
specify a reference point in hypervolume calculation for fair performance comparison", 2018).
Hypervolumes are divided by the box between that reference and the front's ideal point. For
comparison the script also prints them against the space-wide reference (accuracy 80 %, energy
above the space's maximum, ``surrogate.reference_point``): a point 3 mJ beyond the front, where
the area is decided almost only by each run's single most accurate candidate.

It also prints the Kendall tau between accuracy and energy, as the paper does: over the top 100
DSPS candidates by F_AEB, and over 100 random candidates (the paper: 0.63 vs 0.08).

    python benchmarks/sampler_quality.py                 # 1000 trials, 5 seeds, all samplers
    python benchmarks/sampler_quality.py --trials 300 --seeds 2 --samplers dsps,random
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.samplers import make_sampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import suggest_architecture
from autospikformer.study.export import hypervolume_2d, kendall_tau, pareto_mask

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


def run(
    name: str,
    space: SearchSpace,
    trials: int,
    seed: int,
    mismatch_weight: float = surrogate.MISMATCH_WEIGHT,
) -> tuple[list[tuple[float, float]], float]:
    sampler = make_sampler(name, space=space, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return surrogate.evaluate(suggest_architecture(trial, space), mismatch_weight)

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    elapsed = time.perf_counter() - start
    return [(t.values[0], t.values[1]) for t in study.get_trials(deepcopy=False)], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samplers", default="dsps,nsga2,tpe,random")
    parser.add_argument("--space", default="S_T2+S_S")
    parser.add_argument(
        "--mismatch-weight",
        type=float,
        default=surrogate.MISMATCH_WEIGHT,
        help="weight of the surrogate's neuron-mismatch term (0: the easy variant)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load(args.space)
    names = args.samplers.split(",")
    points: dict[str, list[Points]] = {n: [] for n in names}
    secs: dict[str, list[float]] = {n: [] for n in names}
    print(f"space {space.name}, {args.trials} trials, mismatch weight {args.mismatch_weight}")
    for seed in range(args.seeds):
        for name in names:
            run_points, elapsed = run(name, space, args.trials, seed, args.mismatch_weight)
            points[name].append(run_points)
            secs[name].append(elapsed)
            print(f"  seed {seed} {name:>7}: {elapsed:5.1f} s", flush=True)

    ref, box = pooled_reference([run for runs in points.values() for run in runs])
    space_ref = surrogate.reference_point(space)
    space_box = (100.0 - space_ref[0]) * space_ref[1]
    for label, (r, b) in {
        f"pooled-front reference (accuracy {ref[0]:.2f} %, energy {ref[1]:.4f} mJ)": (ref, box),
        f"space-wide reference (accuracy {space_ref[0]:.0f} %, energy {space_ref[1]:.3f} mJ)": (
            space_ref,
            space_box,
        ),
    }.items():
        hv = {n: [hypervolume(p, r, b) for p in points[n]] for n in names}
        print(f"\nhypervolume, {label}")
        print(f"{'sampler':>8} " + " ".join(f"{'seed ' + str(s):>8}" for s in range(args.seeds)))
        for name in names:
            print(f"{name:>8} " + " ".join(f"{v:8.5f}" for v in hv[name]))
        for name in names:
            line = f"  {name:>7}: mean {statistics.mean(hv[name]):.5f} +- {statistics.pstdev(hv[name]):.5f}"
            if "random" in hv:
                ratios = [a / b for a, b in zip(hv[name], hv["random"], strict=True)]
                wins = sum(x > 1 for x in ratios)
                line += (
                    f"  x{statistics.mean(ratios):.4f} random (min x{min(ratios):.4f},"
                    f" above on {wins}/{args.seeds} seeds)"
                )
            print(line + f"  {statistics.mean(secs[name]):.1f} s per run")
        if "dsps" in hv and "nsga2" in hv:
            ratios = [a / b for a, b in zip(hv["dsps"], hv["nsga2"], strict=True)]
            wins = sum(x > 1 for x in ratios)
            print(
                f"  DSPS vs NSGA-II: x{statistics.mean(ratios):.4f} (DSPS higher on {wins}/{args.seeds} seeds)"
            )

    taus: dict[str, list[float]] = {}
    for run_points in points.get("dsps", []):
        fit = balanced_fitness([p[0] for p in run_points], [p[1] for p in run_points], 0.5)
        top = sorted(range(len(run_points)), key=lambda i: -fit[i])[:100]
        taus.setdefault("dsps top-100", []).append(
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
