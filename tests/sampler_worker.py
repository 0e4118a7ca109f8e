"""One worker process of the multi-process DSPS tests: joins a study and runs ``n`` trials.

Usage: ``python tests/sampler_worker.py STORAGE_URL STUDY_NAME N_TRIALS POPULATION SEED
[SAMPLER] [BARRIER_DIR WORKERS]`` with SAMPLER ``dsps`` (default) or ``dsps-plus``. The objective is a cheap deterministic function of the architecture
(no training). With a barrier folder, the process announces itself there once loaded and starts
its first trial only when ``WORKERS`` processes have, so that all of them start together.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna

from autospikformer.search.dsps import DSPSSampler
from autospikformer.search.dsps_plus import DSPSPlusSampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import suggest_architecture


def _barrier(folder: Path, workers: int, timeout: float = 60.0) -> None:
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("ready-*"))) < workers and time.monotonic() < deadline:
        time.sleep(0.005)


def main(argv: list[str]) -> None:
    url, name, n_trials, population, seed, *barrier = argv
    cls = DSPSSampler
    if barrier and barrier[0] in ("dsps", "dsps-plus"):
        cls = DSPSPlusSampler if barrier.pop(0) == "dsps-plus" else DSPSSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load("digits")
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    sampler = cls(space=space, population_size=int(population), num_parents=3, seed=int(seed))
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        acc = arch.embed_dim / 64 + sum(arch.mlp_ratio) / 8 - sum(arch.threshold) / 10
        energy = arch.embed_dim * arch.depth * arch.time_steps / sum(arch.tau)
        return acc, energy

    if barrier:
        _barrier(Path(barrier[0]), int(barrier[1]))
    study.optimize(objective, n_trials=int(n_trials))


if __name__ == "__main__":
    main(sys.argv[1:])
