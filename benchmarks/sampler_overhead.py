"""Sampler overhead: time per trial of DSPS and NSGA-II over RandomSampler's, in one process.

Every sampler runs the same cheap objective (``suggest_architecture`` over ``S_T2+S_S`` plus the
surrogate of ``benchmarks/surrogate.py``), so the difference is the sampler's own cost. Trials
run in chunks of ``--chunk``, the samplers taking turns chunk by chunk so that a change in the
machine's load hits them alike. Every chunk's time per trial is printed with its ratio to
RandomSampler's chunk of the same size (the ratio is the figure; absolute times depend on the
machine), and, in brackets, the time spent inside the sampler's methods (its own storage
reads and writes included). Then each sampler's mean ratio over the first and the second half
of the run: equal halves mean the per-trial cost does not grow with the study. The ratio of
whole trials also reflects what the sampler proposes (a DSPS population of shallow
architectures suggests fewer parameters, and every parameter is a storage write), so a second
ratio swaps the samplers' own times into random search's trial: (random's trial - random's
sampler time + this sampler's time) / random's trial.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.search.samplers import SAMPLER_OPTIONS, make_sampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import suggest_architecture

SAMPLERS = ("random", "dsps", "dsps-plus", "nsga2")


SAMPLER_METHODS = (
    "before_trial",
    "infer_relative_search_space",
    "sample_relative",
    "sample_independent",
    "after_trial",
)


class Stopwatch:
    """Total seconds spent in a sampler's methods (its storage reads and writes included)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.seconds = 0.0
        for method in SAMPLER_METHODS:
            setattr(sampler, method, self._timed(getattr(sampler, method)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


Times = dict[str, dict[int, tuple[float, float]]]  # sampler -> chunk end -> (trial s, own s)


def per_trial_times(
    names: list[str],
    space: SearchSpace,
    trials: int,
    chunk: int,
    storages: dict[str, str | None],
    seed: int,
) -> Times:
    """Per sampler and chunk: seconds per trial, and seconds per trial inside the sampler.

    The samplers take turns chunk by chunk, so a change in the machine's load between the
    start and the end of the run affects them alike and the ratios stay fair.
    """
    samplers = {
        name: make_sampler(name, space=space, seed=seed, **SAMPLER_OPTIONS[name]) for name in names
    }
    watches = {name: Stopwatch(sampler) for name, sampler in samplers.items()}
    studies = {
        name: optuna.create_study(
            directions=["maximize", "minimize"], sampler=sampler, storage=storages[name]
        )
        for name, sampler in samplers.items()
    }

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return surrogate.evaluate(suggest_architecture(trial, space))

    times: Times = {name: {} for name in names}
    done = 0
    while done < trials:
        for name, study in studies.items():
            own = watches[name].seconds
            start = time.perf_counter()
            study.optimize(objective, n_trials=chunk)
            elapsed = time.perf_counter() - start
            times[name][done + chunk] = (elapsed / chunk, (watches[name].seconds - own) / chunk)
        done += chunk
    return times


def report(label: str, results: Times) -> None:
    """Every chunk's ms per trial, its ratio to random's and the sampler's own ms; then the
    mean ratio over each half of the run, raw and with the samplers' own times swapped."""
    print(f"\n{label}: ms per trial (ratio to RandomSampler at the same size) [in the sampler]")
    print(f"{'trials':>7} " + " ".join(f"{n:>27}" for n in results))
    points = sorted(results["random"])
    for point in points:
        base = results["random"][point][0]
        cells = [
            f"{r[point][0] * 1e3:7.2f} (x{r[point][0] / base:4.2f}) [{r[point][1] * 1e3:5.2f}]"
            for r in results.values()
        ]
        print(f"{point:>7} " + " ".join(f"{c:>27}" for c in cells))
    half = len(points) // 2
    for name, r in results.items():
        if name == "random" or half == 0:
            continue
        raw, swapped = [], []
        for p in points:
            base_trial, base_own = results["random"][p]
            raw.append(r[p][0] / base_trial)
            swapped.append((base_trial - base_own + r[p][1]) / base_trial)
        for label_, ratios in (("trial time", raw), ("random's trial with this sampler", swapped)):
            print(
                f"  {name}, {label_}: mean x{sum(ratios) / len(ratios):.3f}; first half"
                f" x{sum(ratios[:half]) / half:.3f}, second half"
                f" x{sum(ratios[half:]) / (len(ratios) - half):.3f}"
            )


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

    if args.trials:
        mem = per_trial_times(
            names, space, args.trials, args.chunk, dict.fromkeys(names), args.seed
        )
        report("in memory", mem)
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
        report(f"SQLite ({folder})", sql)


if __name__ == "__main__":
    main()
