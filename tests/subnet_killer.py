"""A trial's subnet trained with a schedule, SIGKILLed at a chosen step (or not at all).

Usage: ``python tests/subnet_killer.py URL STUDY TRIAL SUPERNET RUNS_DIR EPOCHS [EPOCH STEP]``

Fine-tunes trial TRIAL of study STUDY (in storage URL, its supernet at SUPERNET) for EPOCHS
epochs into RUNS_DIR, as ``autospik subnet train`` does. With EPOCH and STEP the process kills
itself with a real ``SIGKILL`` right after that optimizer step (0-based): nothing of Python's
clean-up runs, the last checkpoint is the one of the epochs finished before.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from autospikformer.study.storage import resolve_study
from autospikformer.study.subnets import subnet_start, train_subnet
from autospikformer.study.trained_subnets import schedule_for


def main(argv: list[str]) -> None:
    url, name, trial, supernet, runs_dir, epochs = argv[:6]
    kill_at = (int(argv[6]), int(argv[7])) if len(argv) > 7 else None
    torch.set_num_threads(1)
    study, config, _ = resolve_study(name, url, create=False)
    schedule = schedule_for(config.train, epochs=int(epochs))

    def step(epoch: int, step: int) -> None:
        if (epoch, step) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    start = subnet_start(
        study, config, schedule, trial=int(trial), runs_dir=runs_dir, supernet=supernet
    )
    train_subnet(
        study, config, start, schedule, runs_dir=runs_dir, device="cpu", progress=False,
        step_callback=step,
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
