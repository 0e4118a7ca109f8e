"""Sampler overhead: time per trial of DSPS and NSGA-II over RandomSampler's, in one process.

Every sampler runs the same cheap objective (``suggest_architecture`` over ``S_T2+S_S`` plus the
surrogate of ``benchmarks/surrogate.py``), so the difference is the sampler's own cost. Trials
run in chunks of ``--chunk``; the time per trial of the chunk that ends at each checkpoint is
reported, and divided by RandomSampler's at the same checkpoint. The samplers take turns chunk
by chunk, so a change in the machine's load hits them alike (the ratio is the figure;
absolute times depend on the machine). A ratio that stays flat across checkpoints means the
per-trial cost does not grow with the study.

SQLite runs write to a file in ``/dev/shm`` where it exists (else the temp folder). On a slow
disk every SQLite write costs milliseconds, so ``--sqlite-trials`` is smaller by default.

    python benchmarks/sampler_overhead.py                       # in memory to 10,000 trials
    python benchmarks/sampler_overhead.py --trials 2000 --sqlite-trials 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.search import make_sampler, suggest_architecture
from autospikformer.space import SearchSpace

SAMPLERS = ("random", "dsps", "nsga2")


def per_trial_times(
    names: list[str],
    space: SearchSpace,
    trials: int,
    chunk: int,
    storages: dict[str, str | None],
    seed: int,
) -> dict[str, dict[int, float]]:
    """Seconds per trial of the chunk ending at each multiple of ``chunk``, per sampler.

    The samplers take turns chunk by chunk, so a change in the machine's load between the
    start and the end of the run affects them alike and the ratios stay fair.
    """
    studies = {
        name: optuna.create_study(
            directions=["maximize", "minimize"],
            sampler=make_sampler(name, space=space, seed=seed),
            storage=storages[name],
        )
        for name in names
    }

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return surrogate.evaluate(suggest_architecture(trial, space))

    times: dict[str, dict[int, float]] = {name: {} for name in names}
    done = 0
    while done < trials:
        for name, study in studies.items():
            start = time.perf_counter()
            study.optimize(objective, n_trials=chunk)
            times[name][done + chunk] = (time.perf_counter() - start) / chunk
        done += chunk
    return times


def report(label: str, results: dict[str, dict[int, float]], checkpoints: list[int]) -> None:
    print(f"\n{label}: ms per trial (ratio to RandomSampler at the same size)")
    print(f"{'trials':>7} " + " ".join(f"{n:>18}" for n in results))
    for point in checkpoints:
        base = results["random"][point]
        cells = [f"{r[point] * 1e3:8.2f} (x{r[point] / base:4.2f})" for r in results.values()]
        print(f"{point:>7} " + " ".join(f"{c:>18}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="in-memory study size")
    parser.add_argument("--sqlite-trials", type=int, default=300, help="SQLite study size")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samplers", default=",".join(SAMPLERS), help="comma list; random is always included"
    )
    args = parser.parse_args()
    names = ["random", *(n for n in args.samplers.split(",") if n and n != "random")]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load("S_T2+S_S")

    def checkpoints(total: int) -> list[int]:
        marks = [m for m in (1_000, 5_000, 10_000) if m <= total]
        return sorted({*marks, total, args.chunk})

    if args.trials:
        mem = per_trial_times(
            names, space, args.trials, args.chunk, dict.fromkeys(names), args.seed
        )
        report("in memory", mem, checkpoints(args.trials))
    if args.sqlite_trials:
        folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        paths = {}
        for name in names:
            fd, paths[name] = tempfile.mkstemp(suffix=".db", dir=folder)
            os.close(fd)
        try:
            sql = per_trial_times(
                names,
                space,
                args.sqlite_trials,
                args.chunk,
                {name: f"sqlite:///{path}" for name, path in paths.items()},
                args.seed,
            )
        finally:
            for path in paths.values():
                os.remove(path)
        report(f"SQLite ({folder})", sql, checkpoints(args.sqlite_trials))


if __name__ == "__main__":
    main()
