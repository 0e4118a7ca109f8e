"""Sampler quality on the surrogate problem: hypervolume after N trials, DSPS vs Optuna's samplers.

The problem is ``benchmarks/surrogate.py`` over the real ``S_T2+S_S`` space (a deterministic
accuracy-like and energy-like function of the architecture; see that file). For every seed and
sampler a fresh in-memory study runs ``--trials`` trials; the script prints the normalised
hypervolume (reference: accuracy 80 %, energy above the space's maximum), the ratio of each
sampler's hypervolume to random search's of the same seed, and the wall time.

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

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.fitness import balanced_fitness
from autospikformer.search import make_sampler, suggest_architecture
from autospikformer.space import SearchSpace


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either variable counted as in scipy)."""
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else 0.0


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
    ref = surrogate.reference_point(space)
    names = args.samplers.split(",")
    hv: dict[str, list[float]] = {n: [] for n in names}
    secs: dict[str, list[float]] = {n: [] for n in names}
    taus: dict[str, list[float]] = {"dsps top-100": [], "random 100": []}
    print(
        f"space {space.name}, {args.trials} trials, reference (acc {ref[0]}, energy {ref[1]:.3f} mJ)"
    )
    print(f"{'seed':>4} " + " ".join(f"{n:>16}" for n in names))
    for seed in range(args.seeds):
        row = []
        for name in names:
            points, elapsed = run(name, space, args.trials, seed, args.mismatch_weight)
            hv[name].append(surrogate.hypervolume(points, ref))
            secs[name].append(elapsed)
            row.append(f"{hv[name][-1]:.5f} ({elapsed:4.0f}s)")
            if name == "dsps":
                fit = balanced_fitness([p[0] for p in points], [p[1] for p in points], 0.5)
                top = sorted(range(len(points)), key=lambda i: -fit[i])[:100]
                taus["dsps top-100"].append(
                    kendall_tau([points[i][0] for i in top], [points[i][1] for i in top])
                )
            if name == "random":
                taus["random 100"].append(
                    kendall_tau([p[0] for p in points[:100]], [p[1] for p in points[:100]])
                )
        print(f"{seed:>4} " + " ".join(f"{c:>16}" for c in row))
    print("\nhypervolume (mean over seeds), ratio to random of the same seed, wall time per run")
    for name in names:
        ratios = (
            [a / b for a, b in zip(hv[name], hv["random"], strict=True)] if "random" in hv else []
        )
        ratio = f"x{statistics.mean(ratios):.4f} (min x{min(ratios):.4f})" if ratios else ""
        print(
            f"  {name:>7}: {statistics.mean(hv[name]):.5f} +- {statistics.pstdev(hv[name]):.5f}"
            f"  {ratio}  {statistics.mean(secs[name]):.1f}s"
        )
    if "dsps" in hv and "random" in hv:
        wins = sum(a > b for a, b in zip(hv["dsps"], hv["random"], strict=True))
        print(f"  DSPS beats random on {wins}/{args.seeds} seeds")
    if "dsps" in hv and "nsga2" in hv:
        wins = sum(a > b for a, b in zip(hv["dsps"], hv["nsga2"], strict=True))
        ratio = statistics.mean(a / b for a, b in zip(hv["dsps"], hv["nsga2"], strict=True))
        print(f"  DSPS vs NSGA-II: x{ratio:.4f} (DSPS higher on {wins}/{args.seeds} seeds)")
    for key, values in taus.items():
        if values:
            print(
                f"Kendall tau(accuracy, energy), {key}: {statistics.mean(values):.3f} "
                f"(per seed {', '.join(f'{v:.2f}' for v in values)})"
            )


if __name__ == "__main__":
    main()
