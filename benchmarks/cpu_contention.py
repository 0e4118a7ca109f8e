"""A trial's time on a busy CPU, with OpenMP's default wait policy and with a passive one.

OpenMP reads its wait policy once, when torch loads, so each configuration runs in a fresh
process: the trial engine (``SubnetEvaluator``, the digits study's evaluation: 1 x 360
calibration digits, the 287 validation digits in one batch, no feature reuse) evaluates the same
``--trials`` random subnets of a digits supernet (random weights: the time does not depend on
them). The configurations take turns, ``--rounds`` times, while ``--load`` busy processes (plain
Python loops, started here and stopped at the end) compete for the cores on top of whatever
else the machine runs; the load average is printed with each figure.

    python benchmarks/cpu_contention.py --load 4 --trials 5 --rounds 2

Configurations: OpenMP's default policy with torch's threads (one per core) and with 1 thread;
``OMP_WAIT_POLICY=PASSIVE`` (what ``autospik`` sets) with torch's threads and with 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = (("default", None), ("default", 1), ("PASSIVE", None), ("PASSIVE", 1))


def child(trials: int, threads: int | None) -> None:
    """One configuration: time ``trials`` evaluations, print them as JSON."""
    import random

    import torch

    from autospikformer.model.supernet import SuperSpikformer
    from autospikformer.search.space import SearchSpace
    from autospikformer.study.config import StudyConfig
    from autospikformer.training.evaluate import SubnetEvaluator

    if threads:
        torch.set_num_threads(threads)
    config = StudyConfig.load("digits")
    torch.manual_seed(0)
    supernet = SuperSpikformer.for_data(SearchSpace.load("digits"), config.data_info)
    evaluator = SubnetEvaluator(
        supernet, dataset="digits", data_root=None, calib_batches=1, calib_batch_size=360,
        batch_size=360, device="cpu", holdout=config.holdout, eval_split="val",
        reuse_features=False,
    )  # fmt: skip
    rng = random.Random(0)
    archs = [config.space.sample(rng) for _ in range(trials)]
    evaluator.evaluate(archs[0])  # warm-up: allocator, thread pool
    seconds = [evaluator.evaluate(arch).seconds for arch in archs]
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


def run_child(policy: str, threads: int | None, trials: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--child", "--trials", str(trials)]
    if threads:
        command += ["--threads", str(threads)]
    started = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    result["load"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", type=int, default=0, help="busy processes started here")
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.trials, args.threads)
        return
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    results: dict[tuple[str, int | None], list[dict]] = {c: [] for c in CONFIGS}
    try:
        time.sleep(5 if busy else 0)  # let the load average rise
        print(f"{os.cpu_count()} cores, {args.load} busy processes started here, load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        for _ in range(args.rounds):
            for config in CONFIGS:
                result = run_child(*config, args.trials)
                results[config].append(result)
                print(f"  {config[0]:8s} {result['threads']} thread(s): median "
                      f"{statistics.median(result['seconds']):.3f} s a trial (load "
                      f"{result['load']:.1f})", flush=True)  # fmt: skip
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    medians = {
        c: statistics.median(s for r in rs for s in r["seconds"]) for c, rs in results.items()
    }
    passive = medians[("PASSIVE", None)]
    for (policy, threads), median in medians.items():
        used = results[(policy, threads)][0]["threads"]
        print(f"{policy} wait policy, {used} thread(s): {median:.3f} s a trial (median of "
              f"{args.rounds * args.trials}), x{median / passive:.2f} the passive policy with "
              f"torch's threads")  # fmt: skip


if __name__ == "__main__":
    main()
