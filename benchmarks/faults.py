"""Faults, measured: a database outage under a ``--workers 2`` study, a trainer killed mid-write.

Two experiments, each with real processes:

``outage``: a tiny digits study (``tests/helpers.py``) searched to N complete trials by
``autospik study run --workers 2`` on a private PostgreSQL server (``tests/private_postgres.py``;
the shared server is never touched). Scenarios, each a fresh study: ``baseline`` (no fault),
``restart`` (``pg_ctl restart -m fast`` at K complete trials, with a trial being evaluated),
``stop`` (the server stopped for S seconds at K complete), ``limit`` (stopped for longer than
``search.max_outage``: the workers stop, the server comes back, the same command runs again).
For each: exit codes, the search's wall time over the baseline's (interleaved in this process),
warning lines, the longest stall a worker reported, and the study afterwards: complete trials
(exactly N?), trials complete before the fault and missing after (lost), FAIL / RUNNING /
WAITING trials, duplicate architectures.

``checkpoint``: a Spikformer-4-384-sized supernet (112 MB checkpoints, seconds to write)
trained by ``tests/checkpoint_killer.py`` is SIGKILLed from outside at a random moment of a
checkpoint write (the parent watches for the temporary file and waits a random fraction of the
measured write time), then resumed, repeatedly. After each kill: is a complete, verified
checkpoint at the final name, and how many kills landed inside a write (a partial file left)?
At the end: are the weights, optimizer and RNG states bit-identical to an unkilled run, and are
the partial files gone?

    nice -n 10 python benchmarks/faults.py outage --trials 60 --at 30 --stop 15
    nice -n 10 python benchmarks/faults.py checkpoint --kills 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from checkpoint_killer import recipe  # noqa: E402
from helpers import tiny_study  # noqa: E402
from private_postgres import PrivatePostgres  # noqa: E402

from autospikformer.checkpoint_file import load_checkpoint  # noqa: E402
from autospikformer.study.config import StudyConfig  # noqa: E402
from autospikformer.training.trainer import train_supernet  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STALL = re.compile(r"storage reachable again after ([\d.]+) s")


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


# --- the database outage -----------------------------------------------------------------------
def study_text(name: str, grace: int, max_outage: int) -> str:
    text = tiny_study(name).replace("grace_period = 3", f"grace_period = {grace}")
    return text.replace("[search]\n", f"[search]\nmax_outage = {max_outage}\n")


def launch(folder: Path, url: str, target: str, trials: int, ckpt: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autospikformer.cli", "study", "run", target, "--trials",
         str(trials), "--workers", "2", "--storage", url, "--supernet", str(ckpt), "--device",
         "cpu", "--no-export"],
        cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def trials_of(url: str, name: str) -> list[Any]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials()
    except Exception:
        return []


def complete(trials: list[Any]) -> set[int]:
    return {t.number for t in trials if t.state == TrialState.COMPLETE}


def wait_mid_trial(url: str, name: str, at: int, timeout: float = 1800) -> set[int]:
    """Wait for ``at`` complete trials and one being evaluated; returns the complete ones."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        trials = trials_of(url, name)
        busy = [
            t for t in trials if t.state == TrialState.RUNNING and "autospik:worker" in t.user_attrs
        ]
        if len(complete(trials)) >= at and busy:
            return complete(trials)
        time.sleep(0.05)
    raise TimeoutError("the study did not get there")


def scenario(
    kind: str, pg: PrivatePostgres, folder: Path, ckpt: Path, args: argparse.Namespace
) -> dict[str, Any]:
    name = f"{kind}-{uuid.uuid4().hex[:6]}"
    max_outage = args.limit if kind == "limit" else 300
    (folder / f"{name}.toml").write_text(study_text(name, args.grace, max_outage))
    started = time.monotonic()
    proc = launch(folder, pg.url, f"{name}.toml", args.trials, ckpt)
    before: set[int] = set()
    fault_at = None
    outage_s = args.stop if kind == "stop" else None
    if kind != "baseline":
        before = wait_mid_trial(pg.url, name, args.at)
        fault_at = time.monotonic() - started
        if kind == "restart":
            outage_s = pg.restart()
        else:
            pg.stop()
            if kind == "stop":
                time.sleep(args.stop)
                pg.start()
    _, err = proc.communicate(timeout=3600)
    first = {"rc": proc.returncode, "stderr": err.strip().splitlines()}
    rerun = None
    if kind == "limit":
        stopped_after = time.monotonic() - started - fault_at  # type: ignore[operator]
        pg.start()
        time.sleep(args.grace + 1)  # the stuck trials go stale
        again = launch(folder, pg.url, name, args.trials, ckpt)
        _, err2 = again.communicate(timeout=3600)
        rerun = {"rc": again.returncode, "stderr": err2.strip().splitlines(),
                 "workers_stopped_after_s": round(stopped_after, 1)}  # fmt: skip
    wall = time.monotonic() - started
    trials = optuna.load_study(study_name=name, storage=pg.url).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    stalls = [float(m.group(1)) for line in first["stderr"] if (m := STALL.search(line))]
    return {
        "scenario": kind,
        "rc": first["rc"],
        "rerun_rc": None if rerun is None else rerun["rc"],
        "wall_s": round(wall, 1),
        "fault_at_s": None if fault_at is None else round(fault_at, 1),
        "warning_lines": sum(line.startswith("warning:") for line in first["stderr"]),
        "error_lines": [line for line in first["stderr"] if line.startswith("error:")],
        "outage_s": None if outage_s is None else round(outage_s, 2),
        "longest_stall_s": max(stalls, default=0.0),
        "workers_stopped_after_s": None if rerun is None else rerun["workers_stopped_after_s"],
        "complete": len(done),
        "exact": len(done) == args.trials,
        "complete_before_fault": len(before),
        "lost": len(before - complete(trials)),
        "duplicates": len(done) - len({json.dumps(t.params, sort_keys=True) for t in done}),
        "fail": states["FAIL"],
        "running": states["RUNNING"],
        "waiting": states["WAITING"],
        "pruned": states["PRUNED"],
        "evaluations_thrown_away": sum(
            t.state == TrialState.FAIL and "autospik:seconds" in t.user_attrs for t in trials
        ),
        "sample_lines": first["stderr"][:3] + (rerun["stderr"][:1] if rerun else []),
    }


def outage(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = Path(args.workdir or f"/tmp/autospik-faults-{uuid.uuid4().hex[:6]}")
    folder.mkdir(parents=True, exist_ok=True)
    config = StudyConfig.from_dict(tomllib.loads(tiny_study("shared")), base=folder)
    ckpt = train_supernet(
        space=config.space, dataset="digits", data_root=None, out_dir=folder / "supernet",
        config=config.train, device="cpu", progress=False,
    )  # fmt: skip
    results = []
    with PrivatePostgres() as pg:
        for kind in args.scenarios:
            result = scenario(kind, pg, folder, ckpt, args)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"\nmachine: {machine()}")
    print(f"{args.trials} trials, 2 workers, fault at {args.at} complete, stop {args.stop} s, "
          f"max_outage {args.limit} s for 'limit', grace period {args.grace} s")  # fmt: skip
    print("| scenario | rc | outage s | longest stall s (/ outage) | command exited after s | "
          "warnings | complete | lost | dup | FAIL | RUNNING | WAITING | thrown away |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        rc = f"{r['rc']}" + ("" if r["rerun_rc"] is None else f", rerun {r['rerun_rc']}")
        outage_s, stall = r["outage_s"], r["longest_stall_s"]
        ratio = f" ({stall / outage_s:.2f})" if outage_s else ""
        print(f"| {r['scenario']} | {rc} | {outage_s if outage_s is not None else '-'} | "
              f"{stall:.1f}{ratio} | {r['workers_stopped_after_s'] or '-'} | "
              f"{r['warning_lines']} | {r['complete']}/{args.trials} | {r['lost']} | "
              f"{r['duplicates']} | {r['fail']} | {r['running']} | {r['waiting']} | "
              f"{r['evaluations_thrown_away']} |")  # fmt: skip
    return results


# --- the trainer killed mid-checkpoint ---------------------------------------------------------
def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".supernet.pt.*.tmp"))


def checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.workdir or f"/tmp/autospik-ckpt-{uuid.uuid4().hex[:6]}")
    out = folder / "killed"
    final = out / "supernet.pt"
    epochs = 2 * args.kills + 2
    rng = random.Random(args.seed)
    killer = [sys.executable, str(TESTS / "checkpoint_killer.py"), str(out), str(epochs), "none",
              "0", "big"]  # fmt: skip
    torch.set_num_threads(1)
    started = time.monotonic()
    reference = train_supernet(out_dir=folder / "reference", resume=False, **recipe(epochs, "big"))
    reference_s = time.monotonic() - started
    write_s = None
    kills = []

    def next_write(proc: subprocess.Popen, seen: set[str]) -> Path:
        """Wait for a new temporary file: a checkpoint write begins."""
        while True:
            new = [p for p in temporaries(out) if p.name not in seen]
            if new:
                return new[0]
            if proc.poll() is not None:
                raise RuntimeError(f"the trainer ended early: {proc.stderr.read()[-500:]!r}")
            time.sleep(0.001)

    while len(kills) < args.kills:
        proc = subprocess.Popen(killer, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = {p.name for p in temporaries(out)}
        timing = write_s is None  # the first run times one write and is killed after it
        spared = 1 if timing else rng.randint(0, 2)  # writes let through before the kill
        for _ in range(spared):
            partial = next_write(proc, seen)
            began = time.monotonic()
            while partial.exists():
                time.sleep(0.001)
            write_s = write_s or time.monotonic() - began  # the first write is timed
            seen.add(partial.name)
        if timing:
            proc.kill()
            proc.wait()
            continue
        next_write(proc, seen)
        delay = rng.uniform(0.0, 1.1 * write_s)
        time.sleep(delay)
        proc.kill()  # SIGKILL
        proc.wait()
        left = [p for p in temporaries(out) if p.name not in seen]
        try:
            epoch: int | str = load_checkpoint(final, kind="supernet")["epoch"]
        except Exception as exc:  # the promise is broken
            epoch = f"BROKEN: {exc}"
        kills.append(
            {"delay_s": round(delay, 3), "spared_writes": spared, "mid_write": bool(left),
             "epoch": epoch}
        )  # fmt: skip
        print(json.dumps(kills[-1]), flush=True)
    done = subprocess.run([*killer], env=ENV, capture_output=True, text=True)
    resumed, unkilled = load_checkpoint(final), load_checkpoint(reference)
    identical = resumed["state_dict"].keys() == unkilled["state_dict"].keys() and all(
        torch.equal(resumed["state_dict"][k], v) for k, v in unkilled["state_dict"].items()
    )
    same_state = all(str(resumed[k]) == str(unkilled[k]) for k in ("optimizer", "rng", "scheduler"))
    summary = {
        "checkpoint_mb": round(final.stat().st_size / 1e6, 1),
        "write_s": round(write_s or 0.0, 2),
        "reference_run_s": round(reference_s, 1),
        "kills": len(kills),
        "mid_write": sum(k["mid_write"] for k in kills),
        "always_verified": all(isinstance(k["epoch"], int) for k in kills),
        "final_rc": done.returncode,
        "partial_files_left": len(temporaries(out)),
        "bit_identical_weights": identical,
        "same_optimizer_scheduler_rng": same_state,
    }
    print(json.dumps(summary))
    print(f"\nmachine: {machine()}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    o = sub.add_parser("outage", help="a database outage under a --workers 2 study")
    o.add_argument("--trials", type=int, default=60)
    o.add_argument("--at", type=int, default=30, help="complete trials when the fault starts")
    o.add_argument("--stop", type=float, default=15.0, help="seconds the server is stopped")
    o.add_argument("--limit", type=int, default=20, help="max_outage of the 'limit' scenario")
    o.add_argument("--grace", type=int, default=10, help="the study's grace period (s)")
    o.add_argument("--scenarios", nargs="+", default=["baseline", "restart", "stop", "limit"],
                   choices=["baseline", "restart", "stop", "limit"])  # fmt: skip
    o.add_argument("--workdir", default=None)
    c = sub.add_parser("checkpoint", help="SIGKILL a trainer at random moments of its writes")
    c.add_argument("--kills", type=int, default=10)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workdir", default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.experiment == "outage":
        outage(args)
    else:
        checkpoint(args)


if __name__ == "__main__":
    main()
