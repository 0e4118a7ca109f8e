"""CPU threads: OpenMP's passive wait policy, set before torch loads, and torch's thread count.

Torch runs its CPU operators on an OpenMP thread pool whose idle threads, by OpenMP's default,
spin while they wait for the next operator. On a CPU shared with other work (a laptop, a
cluster node, several search workers) a spinning thread takes the core another thread needs:
measured on a 2-core machine under a competing load of about 3.5, the same digits trials took
12.95 s each with 2 threads, 0.75 s with 1 thread and 0.73 s with 2 threads under
``OMP_WAIT_POLICY=PASSIVE`` (``benchmarks/README.md``). OpenMP reads the policy once, when torch
loads it, so :func:`passive_waits` must run before the first ``import torch``: the command line
(``autospikformer/cli/__init__.py``), the test suite (``tests/conftest.py``) and the parent of
spawned search workers (which inherit its environment) call it first. A policy the user set is
kept.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"


def passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in the environment unless a policy is set; returns
    whether this process's torch follows it (False: torch was loaded before, only the processes
    started from here from now on do)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules


def env_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a thread count, or None when unset or not a positive integer."""
    text = os.environ.get(NUM_THREADS, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def worker_threads(threads: int | None, workers: int, cpus: int | None = None) -> int:
    """The torch threads of each of ``workers`` worker processes on this machine: ``threads``
    if given (``--threads``), else ``OMP_NUM_THREADS`` if set (OpenMP's own per-process count),
    else this machine's ``cpus`` (default: all) split evenly, at least 1."""
    if threads is not None:
        return threads
    return env_threads() or max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def set_torch_threads(threads: int | None) -> None:
    """Torch's CPU threads in this process (None keeps torch's choice)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: {threads!r} is not allowed (allowed: an integer >= 1)")
    import torch

    torch.set_num_threads(threads)
