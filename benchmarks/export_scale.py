"""Export and compare at scale: the hypervolume history kept point by point against the front
recomputed for every prefix, and a whole ``study export`` / ``study compare`` of large studies.

Studies of N trials (real digits architectures, synthetic objectives, a tenth of them over an
energy budget) are written to SQLite files once; then, in one process:

- the hypervolume history of N trials, incremental (``autospikformer.pareto.Staircase``) over the
  per-prefix recomputation the export used before (``hypervolume_2d`` of every prefix), as a
  ratio; the per-prefix baseline is skipped above ``--baseline-max`` trials (quadratic);
- ``export_study`` (every file: CSV, JSON, HTML, PNG, PDF) and ``compare_studies`` of two studies,
  in seconds, and per 1,000 trials as a ratio to the smallest N (1.0: linear).

    python benchmarks/export_scale.py                      # 1,000, 4,000 and 10,000 trials
    python benchmarks/export_scale.py --trials 1000 4000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from autospikformer.pareto import hypervolume_2d, hypervolume_history
from autospikformer.report.compare import compare_studies
from autospikformer.report.export import export_study
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import architecture_params, distributions
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import create_study, open_storage

BUDGET_MJ = 0.9


def build(url: str, name: str, n: int, seed: int) -> optuna.Study:
    """A digits study of ``n`` complete trials with plausible objectives and attributes."""
    config = StudyConfig.from_dict(
        {**StudyConfig.load("digits").to_dict(), "study": {"name": name}}
    )
    study, _ = create_study(open_storage(url, create=True), config)
    space: SearchSpace = config.space
    rng = random.Random(seed)
    trials = []
    for _ in range(n):
        arch = space.sample(rng)
        params = architecture_params(arch)
        dists = distributions(space, arch.depth)
        size = arch.embed_dim * arch.depth * arch.time_steps / 256
        energy = size * rng.uniform(0.5, 1.5)
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=[min(0.99, 0.6 + 0.3 * size**0.3 + rng.gauss(0, 0.03)), energy],
                user_attrs={
                    "autospik:architecture": str(arch),
                    "autospik:num_parameters": 1000 * arch.embed_dim * arch.depth,
                    "autospik:firing_rate": rng.uniform(0.05, 0.2),
                },
                system_attrs={"constraints:max_energy_mj": energy - BUDGET_MJ},
            )
        )
    study.add_trials(trials)
    return study


def per_prefix(acc: np.ndarray, energy: np.ndarray, ref: float) -> list[float]:
    """The baseline: the front's hypervolume recomputed for every prefix (quadratic)."""
    return [hypervolume_2d(acc[: k + 1], energy[: k + 1], ref) for k in range(len(acc))]


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--baseline-max", type=int, default=4000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="export-scale-"))
    first: tuple[float, float] | None = None
    for n in args.trials:
        url = f"sqlite:///{folder / f'{n}.db'}"
        build_s, study = timed(build, url, "a", n, seed=n)
        build(url, "b", n, seed=n + 1)
        values = np.array([t.values for t in study.get_trials(deepcopy=False)])
        acc, energy = values[:, 0], values[:, 1]
        ref = 1.1 * float(energy.max())
        inc_s, history = timed(hypervolume_history, acc, energy, ref)
        line = f"{n:>6} trials: hypervolume history {inc_s * 1e3:8.1f} ms incremental"
        if n <= args.baseline_max:
            base_s, base = timed(per_prefix, acc, energy, ref)
            assert np.allclose(history, base, rtol=1e-12, atol=0)
            line += f", {base_s:7.2f} s per prefix: x{inc_s / base_s:.4f}"
        print(line, flush=True)
        export_s, _ = timed(export_study, study, folder / f"export-{n}")
        compare_s, _ = timed(compare_studies, ["a", "b"], folder / f"compare-{n}", [url])
        per_k = (export_s / n * 1000, compare_s / n * 1000)
        first = first or per_k
        print(
            f"{n:>6} trials: export {export_s:6.2f} s, compare {compare_s:6.2f} s "
            f"(per 1,000 trials x{per_k[0] / first[0]:.2f} / x{per_k[1] / first[1]:.2f} of "
            f"{args.trials[0]:,}; building the two studies took {build_s:.0f} s each)",
            flush=True,
        )


if __name__ == "__main__":
    main()
