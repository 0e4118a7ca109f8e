"""Faults, measured: outages, kills, full disks, commands at once, and every bad input.

Each experiment runs real processes and counts what the README promises: nothing lost, exactly
N complete trials, and every failure one ``error:`` line.

``outage``: a tiny digits study (``tests/helpers.py``) searched to N complete trials by
``autospik study run --workers 2`` on a private PostgreSQL server (``tests/private_postgres.py``;
the shared server is never touched). Scenarios, each a fresh study: ``baseline`` (no fault),
``restart`` (``pg_ctl restart -m fast`` at K complete trials, with a trial being evaluated),
``stop`` (the server stopped for S seconds at K complete), ``limit`` (stopped for longer than
``search.max_outage``: the workers stop, the server comes back, the same command runs again),
``after`` (stopped for S seconds as the search ends, while the command measures the front on
the test split and exports). For each: exit codes, the search's wall time over the baseline's
(interleaved in this process), warning lines, the longest stall a worker reported, and the
study afterwards: complete trials (exactly N?), trials complete before the fault and missing
after (lost), FAIL / RUNNING / WAITING trials, duplicate architectures.

``checkpoint``: a Spikformer-4-384-sized supernet (112 MB checkpoints, seconds to write)
trained by ``tests/checkpoint_killer.py`` is SIGKILLed from outside at a random moment of a
checkpoint write (the parent watches for the temporary file and waits a random fraction of the
measured write time), then resumed, repeatedly. After each kill: is a complete, verified
checkpoint at the final name, and how many kills landed inside a write (a partial file left)?
At the end: are the weights, optimizer and RNG states bit-identical to an unkilled run, and are
the partial files gone?

``inputs``: about 110 bad command lines over every command (markup-shaped names and paths, out
of range values, unknown options, files that are not what they should be, unwritable outputs,
a busy port), each run as ``python -m autospikformer.cli``: tracebacks, failures that are not
exactly one ``error:`` line, mangled lines (the echoed input or the option is missing), exit 0.

``together``: P ``study create`` started at one moment (``tests/start_together.py``) on a new
SQLite file, and on a new PostgreSQL schema with ``--postgres URL``; then two ``study run`` of a
new validation-protocol study at one moment: what each says it ran, the front measured once,
one complete export.

``orphans``: a ``--workers 2`` command SIGKILLed at K complete trials: trials its workers
completed after the kill, seconds until they are gone, and what the rerun says it ran.

``disk-full``: a 4 MB tmpfs under the study's SQLite file filled at K complete trials for H
seconds, then freed (needs root to mount); a tmpfs under an export filled; an export SIGKILLed
at random moments of its writes, each time with one more trial in the study, and the folder
checked for one consistent set.

    nice -n 10 python benchmarks/faults.py outage --trials 60 --at 30 --stop 15
    nice -n 10 python benchmarks/faults.py outage --scenarios after --stop 5
    nice -n 10 python benchmarks/faults.py checkpoint --kills 10
    nice -n 10 python benchmarks/faults.py inputs --jobs 3          # or --in-process
    nice -n 10 python benchmarks/faults.py together --tries 5 --postgres private
    nice -n 10 python benchmarks/faults.py orphans --tries 3
    nice -n 10 python benchmarks/faults.py disk-full --tries 3 --kills 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from checkpoint_killer import recipe  # noqa: E402
from helpers import (  # noqa: E402
    fill_disk,
    process_gone,
    run_until_searched,
    tiny_study,
    worker_pid,
)
from private_postgres import PrivatePostgres  # noqa: E402

from autospikformer.checkpoint_file import load_checkpoint  # noqa: E402
from autospikformer.study.config import StudyConfig  # noqa: E402
from autospikformer.training.trainer import train_supernet  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STALL = re.compile(r"storage (?:reachable|writable) again after ([\d.]+) s")


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


def after_search(pg: PrivatePostgres, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The server stopped for ``--stop`` seconds as the search ends (the front's test pass and
    the export are next), in a validation-protocol study whose command trains its supernet."""
    name = f"after-{uuid.uuid4().hex[:6]}"
    (folder / f"{name}.toml").write_text(
        study_text(name, args.grace, 300).replace("[search]\n", '[search]\neval_split = "val"\n')
    )
    proc = run_until_searched(folder, name, max(6, args.at), pg.url, ENV)
    pg.stop()
    time.sleep(args.stop)
    pg.start()
    _, err = proc.communicate(timeout=3600)
    lines = err.strip().splitlines()
    summary_path = folder / "after-runs" / name / "export" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    stalls = [float(m.group(1)) for line in lines if (m := STALL.search(line))]
    return {
        "scenario": "after", "rc": proc.returncode, "outage_s": args.stop,
        "warning_lines": sum(line.startswith("warning:") for line in lines),
        "error_lines": [line for line in lines if line.startswith("error:")],
        "longest_stall_s": max(stalls, default=0.0),
        "front": summary.get("front_size"),
        "front_measured": summary.get("front_test_accuracy", {}).get("measured"),
        "exported_complete": summary.get("complete"), "sample_lines": lines[:2],
    }  # fmt: skip


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
            if kind == "after":
                print(json.dumps(after_search(pg, folder, args)), flush=True)
                continue
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


# --- every command under bad input ----------------------------------------------------------
#: Markup-shaped text: rich would read each as a tag (or fail on it) if it printed it as markup.
MARKUP = ("x[/y]", "x[bold]y", "[red]x", "x[/]")


def bad_inputs(folder: Path) -> list[tuple[list[str], str]]:
    """``(arguments, fragment)``: a bad command line and what its one error line must hold
    verbatim (the input it echoes, or the option it names)."""
    (folder / "x.txt").write_text("not a study file")
    (folder / "noise.bin").write_bytes(bytes(range(128, 256)) * 8)
    (folder / "half.json").write_text('{"depth": 1')
    (folder / "edited.toml").write_text(tiny_study("tiny").replace("trials = 5", "trials = 6"))
    (folder / "bad.toml").write_text("[study\nname = ")
    cases: list[tuple[list[str], str]] = []
    for text in MARKUP:
        cases += [
            (["study", "create", f"{text}.toml"], f"{text}.toml"),
            (["study", "run", text], f"'{text}'"),
            (["study", "show", text], f"'{text}'"),
            (["study", "export", text], f"'{text}'"),
            (["study", "dashboard", text], f"'{text}'"),
            (["study", "compare", text, "tiny", "--out", "cmp"], f"'{text}'"),
            (["study", "list", "--storage", f"sqlite:///{text}.db"], f"{text}.db"),
            (["subnet", "export", text, "--trial", "0", "--out", "m.pt"], f"'{text}'"),
            (["analyze", "redundancy", text, "--trial", "0", "--out", "r"], f"'{text}'"),
            (["energy", text], f"'{text}'"),
            (["energy", f"@{text}.json"], f"'{text}.json'"),
            (["supernet", "eval", "--study", text, "--arch", "largest"], f"'{text}'"),
            (["supernet", "train", "--space", text, "--dataset", "digits", "--out", "sn"], text),
            (["subnet", "train", text, "--trial", "0"], f"'{text}'"),
            (["study", "validate", text], f"'{text}'"),
            (["subnet", "train", "tiny", "--trial", "0", "--model", f"{text}.pt"], f"{text}.pt"),
            (["study", "validate", "tiny", "--top", "3", "--supernet", f"{text}.pt"], f"{text}.pt"),
        ]
    cases += [
        (["study", "run", "tiny", "--trials", "0"], "--trials: 0 is not allowed"),
        (["study", "run", "tiny", "--trials", "-3"], "--trials: -3 is not allowed"),
        (["study", "run", "tiny", "--workers", "0"], "--workers: 0 is not allowed"),
        (["study", "run", "tiny", "--trials"], "--trials"),
        (["study", "list", "--format", "xml"], "--format: 'xml' is not allowed"),
        (["study", "list", "--bogus"], "no such option --bogus"),
        (["study", "bogus"], "no such command 'bogus'"),
        (["bogus"], "no such command 'bogus'"),
        (["study", "run"], "missing argument STUDY"),
        (["study", "dashboard", "tiny", "--port", "99999"], "--port: 99999 is not allowed"),
        (["study", "dashboard", "tiny", "--port", "0"], "--port: 0 is not allowed"),
        (["study", "dashboard", "tiny", "--host", "nowhere.invalid"], "--host nowhere.invalid"),
        (["study", "create", "x.txt"], "'x.txt' is not a study file"),
        (["study", "create", "bad.toml"], "bad.toml"),
        (["study", "create", "edited.toml"], "another [study] name"),
        (["study", "create", "nope"], "no study named 'nope'"),
        (["study", "run", "tiny", "--device", "bogus"], "device 'bogus'"),
        (["study", "run", "tiny", "--runs-dir", "/proc/nope"], "--runs-dir /proc/nope"),
        (["study", "run", "tiny", "--supernet", "missing.pt"], "missing.pt"),
        (["study", "run", "tiny", "--storage", "sqlite:/x.db"], "sqlite:/x.db"),
        (["study", "list", "--storage", "postgres://u:pw@127.0.0.1:1/db"], "postgresql://"),
        (["study", "list", "--storage", "postgresql+pg8000://u@127.0.0.1:1/db"], "[postgres]"),
        (["study", "export", "tiny", "--out", "/proc/nope"], "--out /proc/nope"),
        (["study", "export", "tiny", "--out", "x.txt"], "--out x.txt"),
        (["study", "export", "tiny", "--runs-dir", "/proc/nope"], "--runs-dir /proc/nope"),
        (["study", "export", "tiny", "--energy-model", "bogus"], "--energy-model: 'bogus'"),
        (["study", "export", "tiny", "--energy-model", "memory-45nm", "--constants", "noise.bin"], "noise.bin"),
        (["study", "export", "tiny", "--rows", "-1"], "--rows: -1 is not allowed"),
        (["study", "compare", "tiny", "other", "--out", "/proc/nope"], "--out /proc/nope"),
        (["study", "show", "tiny", "--format", "yaml"], "--format: 'yaml' is not allowed"),
        (["subnet", "export", "tiny", "--trial", "999", "--out", "m.pt"], "999"),
        (["subnet", "export", "tiny", "--trial", "0", "--out", "/proc/nope/m.pt"], "--out /proc/nope/m.pt"),
        (["analyze", "redundancy", "tiny", "--trial", "0", "--out", "/proc/nope", "--images", "4"], "--out /proc/nope"),
        (["analyze", "redundancy", "tiny", "--trial", "0", "--out", "r", "--average", "bogus"], "--average 'bogus'"),
        (["analyze", "redundancy", "--model", "missing.pt", "--out", "r"], "missing.pt"),
        (["energy", "{not json"], "'{not json' is not valid JSON"),
        (["energy", "@noise.bin"], "'noise.bin' is not a text file"),
        (["energy", "@half.json"], "'half.json' is not valid JSON"),
        (["energy", "@/tmp"], "'/tmp' is a folder"),
        (["energy", "d1-e16"], "'d1-e16'"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--checkpoint", "noise.bin"], "noise.bin"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--checkpoint", "tiny.toml"], "tiny.toml"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--dataset", "bogus"], "bogus"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--batches", "0"], "--batches: 0 is not allowed"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--energy-model", "bogus"], "'bogus'"),
        (["energy", "d1-e16-t1:r1:h2:th1:tau2", "--constants", "missing.toml"], "missing.toml"),
        (["supernet", "train", "--space", "digits", "--dataset", "bogus", "--out", "sn"], "bogus"),
        (["supernet", "train", "--space", "digits", "--dataset", "digits", "--out", "/proc/nope"], "--out /proc/nope"),
        (["supernet", "train", "--space", "digits", "--dataset", "cifar10", "--data-root", "nowhere", "--out", "sn"], "nowhere"),
        (["supernet", "train", "--space", "digits", "--dataset", "digits", "--out", "sn", "--device", "bogus"], "'bogus'"),
        (["supernet", "eval", "--study", "tiny", "--arch", "bogus"], "bogus"),
        (["supernet", "eval", "--study", "tiny", "--arch", "largest", "--batch-size", "0"], "--batch-size: 0"),
        (["subnet", "train", "tiny"], "--trial"),
        (["subnet", "train", "tiny", "--trial", "abc"], "--trial: 'abc' is not allowed"),
        (["subnet", "train", "tiny", "--trial", "999"], "999"),
        (["subnet", "train", "tiny", "--trial", "0", "--epochs", "0"], "--epochs: 0 is not allowed"),
        (["subnet", "train", "tiny", "--trial", "0", "--lr", "-1"], "--lr: -1.0 is not allowed"),
        (["subnet", "train", "tiny", "--trial", "0", "--out", "/proc/nope"], "--out /proc/nope"),
        (["subnet", "train", "tiny", "--trial", "0", "--device", "bogus"], "'bogus'"),
        (["subnet", "train", "tiny", "--trial", "0", "--bogus"], "no such option --bogus"),
        (["study", "validate", "tiny", "--top", "0"], "--top: 0 is not allowed"),
        (["study", "validate", "tiny", "--top", "few"], "--top: 'few' is not allowed"),
        (["study", "validate", "tiny", "--top", "3", "--workers", "0"], "--workers: 0 is not allowed"),
        (["study", "validate", "tiny", "--top", "3", "--epochs", "0"], "--epochs: 0 is not allowed"),
        (["study", "validate", "tiny", "--top", "3", "--out", "/proc/nope"], "--out /proc/nope"),
        (["study", "validate", "tiny", "--top", "3", "--runs-dir", "/proc/nope"], "--runs-dir /proc/nope"),
    ]  # fmt: skip
    return cases


def classify(args: list[str], fragment: str, done: subprocess.CompletedProcess) -> dict[str, Any]:
    """What one bad command did: exit code, a traceback, one ``error:`` line, the fragment kept."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return {
        "args": args,
        "rc": done.returncode,
        "traceback": "Traceback (most recent call last)" in done.stderr,
        "one_line": len(errors) == 1 and len(lines) == 1 and "Listening" not in done.stdout,
        "mangled": not errors or fragment not in errors[0],
        "line": errors[0] if errors else (lines[-1] if lines else ""),
    }


def _in_process(command: list[str]) -> subprocess.CompletedProcess:
    """One command line through typer's test runner in this process (the console script's
    app; no interpreter start per case): an exception that escaped the command is printed as
    the traceback Python would print."""
    import traceback

    from typer.testing import CliRunner

    from autospikformer.cli.app import app

    result = CliRunner().invoke(app, command)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(command, result.exit_code, result.stdout, stderr)


def inputs(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = Path(args.workdir or f"/tmp/autospik-inputs-{uuid.uuid4().hex[:6]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(tiny_study("tiny"))
    (folder / "other.toml").write_text(tiny_study("other"))
    cli = [sys.executable, "-m", "autospikformer.cli"]
    for study in ("tiny.toml", "other.toml --supernet runs/tiny/supernet.pt"):
        subprocess.run([*cli, "study", "run", *study.split(), "--device", "cpu"], cwd=folder,
                       env=ENV, capture_output=True, check=True)  # fmt: skip
    with socket.socket() as taken:  # a port in use for the dashboard
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        cases = [*bad_inputs(folder), (["study", "dashboard", "tiny", "--port", busy], busy)]

        log = (folder / "results.jsonl").open("w")  # each case as it ends, to read

        def one(case: tuple[list[str], str]) -> dict[str, Any]:
            if args.in_process:
                done = _in_process(case[0])
            else:
                done = subprocess.run([*cli, *case[0]], cwd=folder, env=ENV, capture_output=True,
                                      text=True, timeout=600)  # fmt: skip
            result = classify(*case, done)
            log.write(json.dumps(result) + "\n")
            log.flush()
            return result

        if args.in_process:
            os.chdir(folder)
            results = [one(case) for case in cases]
        else:
            with ThreadPoolExecutor(args.jobs) as pool:  # independent commands, in order
                results = list(pool.map(one, cases))
    (folder / "results.json").write_text(json.dumps(results, indent=1))  # every line, to read
    bad = [
        r for r in results if r["rc"] == 0 or r["traceback"] or not r["one_line"] or r["mangled"]
    ]
    for r in bad:
        print(json.dumps(r), flush=True)
    print(f"\nmachine: {machine()}")
    print(f"{len(results)} bad inputs over every command: "
          f"{sum(r['traceback'] for r in results)} tracebacks, "
          f"{sum(not r['one_line'] for r in results)} not one error line, "
          f"{sum(r['mangled'] for r in results)} mangled (the echoed input or option missing), "
          f"{sum(r['rc'] == 0 for r in results)} exit 0")  # fmt: skip
    return results


# --- commands at once, killed commands, full disks, an outage after the search -----------------
def _race(folder: Path, url: str, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """The commands started through ``tests/start_together.py``: one shared moment."""
    at = str(time.time() + 6.0)
    procs = [
        subprocess.Popen([sys.executable, str(TESTS / "start_together.py"), at, *c], cwd=folder,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]  # fmt: skip
    return [subprocess.CompletedProcess(p.args, p.wait(), *p.communicate()) for p in procs]


def _fresh_postgres_schema(base_url: str) -> str:
    import sqlalchemy

    schema = f"race_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(base_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{base_url}?options=-csearch_path%3D{schema}"


def together(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.workdir or f"/tmp/autospik-together-{uuid.uuid4().hex[:6]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(tiny_study("tiny"))
    result: dict[str, Any] = {}
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    server = PrivatePostgres() if args.postgres == "private" else None
    if server is not None:
        args.postgres = server.url
    try:
        result |= _creates(folder, kinds, args)
    finally:
        if server is not None:
            server.close()
    result["two_runs"] = [two_runs(folder, args.trials) for _ in range(args.runs)]
    print(f"\nmachine: {machine()}")
    return result


def _creates(folder: Path, kinds: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """``--processes`` commands creating one study at one moment on a new storage, ``--tries``
    times per storage kind: tries with a failure, failed commands, their lines."""
    result: dict[str, Any] = {}
    for kind in kinds:
        failed_tries, failed_commands, lines = 0, 0, set()
        for _ in range(args.tries):
            url = (f"sqlite:///{folder / uuid.uuid4().hex[:8]}.db" if kind == "sqlite"
                   else _fresh_postgres_schema(args.postgres))  # fmt: skip
            runs = _race(
                folder, url, [["study", "create", "tiny.toml", "--storage", url]] * args.processes
            )
            bad = [r for r in runs if r.returncode != 0]
            failed_tries += bool(bad)
            failed_commands += len(bad)
            lines |= {r.stderr.strip()[:160] for r in bad}
        result[f"create_{kind}"] = {"tries": args.tries, "processes": args.processes,
                                    "tries_with_a_failure": failed_tries,
                                    "failed_commands": failed_commands, "lines": sorted(lines)}  # fmt: skip
        print(json.dumps({kind: result[f"create_{kind}"]}), flush=True)
    return result


def two_runs(folder: Path, n: int) -> dict[str, Any]:
    """Two `study run` of one new study (validation protocol, stage 1 trained by them)."""
    name = f"two{uuid.uuid4().hex[:6]}"
    (folder / f"{name}.toml").write_text(
        tiny_study(name).replace("[search]\n", '[search]\neval_split = "val"\n')
        .replace("trials = 5", f"trials = {n}")
    )  # fmt: skip
    url = f"sqlite:///{folder / name}.db"
    runs = _race(folder, url, [["study", "run", f"{name}.toml", "--storage", url,
                                "--device", "cpu", "--runs-dir", "runs"]] * 2)  # fmt: skip
    text = [" ".join(r.stdout.split()) for r in runs]
    here = [int(m.group(1)) for t in text for m in re.finditer(r"\((\d+) in this run", t)]
    measured = [int(m.group(1)) for t in text for m in re.finditer(r"test split: (\d+) new", t)]
    study = optuna.load_study(study_name=name, storage=url)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    export = folder / "runs" / name / "export"
    summary = json.loads((export / "summary.json").read_text()) if export.exists() else {}
    out = {"rc": [r.returncode for r in runs], "in_this_run": here, "complete": len(done),
           "errors": [r.stderr.strip()[-3000:] for r in runs if r.returncode != 0],
           "front": len(study.best_trials), "measured_by_each": measured,
           "export_files": len([p for p in export.iterdir() if p.is_file()]) if export.exists() else 0,
           "export_complete": summary.get("complete"),
           "export_measured": summary.get("front_test_accuracy", {}).get("measured")}  # fmt: skip
    print(json.dumps({"two_runs": out}), flush=True)
    return out


def orphans(args: argparse.Namespace) -> list[dict[str, Any]]:
    """SIGKILL a `--workers 2` command mid-search, then run it again: do its workers stop, and
    does the rerun count only its own trials?"""
    folder = Path(args.workdir or f"/tmp/autospik-orphans-{uuid.uuid4().hex[:6]}")
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = _tiny_supernet(folder)
    results = []
    for _ in range(args.tries):
        name = f"orphan{uuid.uuid4().hex[:6]}"
        (folder / f"{name}.toml").write_text(tiny_study(name))
        url = f"sqlite:///{folder / name}.db"
        run = [sys.executable, "-m", "autospikformer.cli", "study", "run", f"{name}.toml",
               "--trials", str(args.trials), "--storage", url, "--supernet", str(ckpt),
               "--device", "cpu", "--no-export"]  # fmt: skip
        parent = subprocess.Popen([*run, "--workers", "2"], cwd=folder, env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        while len(complete(trials_of(url, name))) < args.at:
            time.sleep(0.1)
        pids = {worker_pid(t) for t in trials_of(url, name)} - {None}
        parent.kill()
        parent.wait()
        killed_at, at_kill = time.monotonic(), len(complete(trials_of(url, name)))
        while not all(process_gone(pid) for pid in pids) and time.monotonic() - killed_at < 600:
            time.sleep(0.1)
        stopped_s = time.monotonic() - killed_at
        after = trials_of(url, name)
        rerun = subprocess.run(run, cwd=folder, env=ENV, capture_output=True, text=True)
        found = re.search(
            r"(\d+) complete trials \((\d+) in this run", " ".join(rerun.stdout.split())
        )
        final = complete(trials_of(url, name))
        results.append({
            "complete_at_kill": at_kill, "workers": len(pids),
            "completed_after_kill": len(complete(after)) - at_kill,
            "running_left": sum(t.state == TrialState.RUNNING for t in after),
            "workers_stopped_after_s": round(stopped_s, 1), "rerun_rc": rerun.returncode,
            "rerun_says": found.group(0) if found else None,
            "rerun_did": len(final) - len(complete(after)), "final": len(final),
        })  # fmt: skip
        print(json.dumps(results[-1]), flush=True)
    print(f"\nmachine: {machine()}")
    return results


def _tiny_supernet(folder: Path) -> Path:
    config = StudyConfig.from_dict(tomllib.loads(tiny_study("shared")), base=folder)
    return train_supernet(
        space=config.space, dataset="digits", data_root=None, out_dir=folder / "supernet",
        config=config.train, device="cpu", progress=False,
    )  # fmt: skip


def _mounted(folder: Path, megabytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}M", "tmpfs", str(folder)],
                   check=True)  # fmt: skip


def disk_full(args: argparse.Namespace) -> dict[str, Any]:
    """A tmpfs under the study's SQLite file filled mid-search for ``--hold`` seconds, then
    freed; a tmpfs under the export filled; an export SIGKILLed at random moments."""
    folder = Path(args.workdir or f"/tmp/autospik-full-{uuid.uuid4().hex[:6]}")
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = _tiny_supernet(folder)
    out: dict[str, Any] = {"storage": [], "export_full": None, "export_kills": None}
    disk = folder / "disk"
    _mounted(disk, 4)
    try:
        for _ in range(args.tries):
            out["storage"].append(_storage_full(folder, disk, ckpt, args))
            print(json.dumps(out["storage"][-1]), flush=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)])
    out["export_full"], out["export_kills"] = _export_faults(folder, args)
    print(json.dumps({k: out[k] for k in ("export_full", "export_kills")}), flush=True)
    print(f"\nmachine: {machine()}")
    return out


def _storage_full(folder: Path, disk: Path, ckpt: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = f"full{uuid.uuid4().hex[:6]}"
    (folder / f"{name}.toml").write_text(tiny_study(name))
    url = f"sqlite:///{disk / name}.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autospikformer.cli", "study", "run", f"{name}.toml", "--trials",
         str(args.trials), "--storage", url, "--supernet", str(ckpt), "--device", "cpu",
         "--no-export"], cwd=folder, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    while len(complete(trials_of(url, name))) < args.at and proc.poll() is None:
        time.sleep(0.05)
    filler = fill_disk(disk)
    time.sleep(args.hold)
    filler.unlink()
    _, err = proc.communicate()
    trials = trials_of(url, name)
    import sqlite3

    with sqlite3.connect(disk / f"{name}.db") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    for suffix in ("", "-wal", "-shm"):  # the next try gets the whole disk
        Path(f"{disk / name}.db{suffix}").unlink(missing_ok=True)
    return {"rc": proc.returncode, "complete": len(complete(trials)),
            "fail": sum(t.state == TrialState.FAIL for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "thrown_away": sum(t.state == TrialState.FAIL and "autospik:seconds" in t.user_attrs
                               for t in trials),
            "integrity": integrity, "stderr": err.strip().splitlines()}  # fmt: skip


def _export_state(out: Path, trials_now: int) -> str:
    """``old`` / ``new``: the folder holds one complete set, its trials.csv agreeing with its
    summary.json, of the previous study state or of the current one; else ``broken``."""
    import pandas as pd

    from autospikformer.report.export import EXPORT_FILES

    names = {p.name for p in out.iterdir() if p.is_file()}
    if names != set(EXPORT_FILES):
        return "broken"
    summary = json.loads((out / "summary.json").read_text())
    rows = len(pd.read_csv(out / "trials.csv"))
    if rows != sum(summary["trials"].values()):
        return "broken"
    return "new" if rows == trials_now else "old"


def _export_faults(folder: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    import hashlib

    from test_export import filled_study

    from autospikformer.optuna_api import storage_of
    from autospikformer.report.export import ExportError, export_study

    def digests(out: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*") if p.is_file()
        }

    url = f"sqlite:///{folder / 'export.db'}"
    optuna.copy_study(from_study_name="export-test", from_storage=storage_of(filled_study()),
                      to_storage=url)  # fmt: skip
    study = optuna.load_study(study_name="export-test", storage=url)
    disk = folder / "export-disk"
    _mounted(disk, 12)
    try:
        export_study(study, disk / "export")
        before = digests(disk / "export")
        filler = fill_disk(disk, leave=1 << 20)
        try:
            export_study(study, disk / "export", option="--out")
            line = "no error"
        except ExportError as exc:
            line = str(exc)
        full = {"line": line, "previous_set_intact": digests(disk / "export") == before,
                "files": len(before)}  # fmt: skip
        filler.unlink()
    finally:
        subprocess.run(["umount", "-l", str(disk)])
    rng = random.Random(args.seed)
    out = folder / "export-killed"
    script = ("import optuna, sys; from autospikformer.report.export import export_study; "
              "export_study(optuna.load_study(study_name='export-test', storage=sys.argv[1]), "
              "sys.argv[2])")  # fmt: skip
    started = time.monotonic()
    export_study(study, out)
    write_s = time.monotonic() - started
    results = []
    for _ in range(args.kills):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # a new set differs
        seen = {p.name for p in out.glob(".export.*.tmp")}
        proc = subprocess.Popen([sys.executable, "-c", script, url, str(out)], env=ENV)
        while not {p.name for p in out.glob(".export.*.tmp")} - seen and proc.poll() is None:
            time.sleep(0.002)  # its staging folder: the writes begin
        time.sleep(rng.uniform(0.0, 1.2 * write_s))  # somewhere in the writes or after them
        proc.kill()
        proc.wait()
        results.append(_export_state(out, len(study.trials)))
    kills = {"kills": args.kills, "export_s": round(write_s, 2),
             "consistent_sets": sum(r != "broken" for r in results),
             "old_set": results.count("old"), "new_set": results.count("new"),
             "staging_left": len(list(out.glob(".export.*.tmp")))}  # fmt: skip
    export_study(study, out)
    kills["staging_left_after_next_export"] = len(list(out.glob(".export.*.tmp")))
    return full, kills


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
                   choices=["baseline", "restart", "stop", "limit", "after"])  # fmt: skip
    o.add_argument("--workdir", default=None)
    c = sub.add_parser("checkpoint", help="SIGKILL a trainer at random moments of its writes")
    c.add_argument("--kills", type=int, default=10)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workdir", default=None)
    i = sub.add_parser("inputs", help="every command under bad input: tracebacks, mangled lines")
    i.add_argument("--jobs", type=int, default=1, help="command lines run at once")
    i.add_argument("--in-process", action="store_true",
                   help="run each command line through typer's CliRunner in this process")  # fmt: skip
    i.add_argument("--workdir", default=None)
    t = sub.add_parser("together", help="commands started at one moment on a new storage")
    t.add_argument("--tries", type=int, default=5)
    t.add_argument("--processes", type=int, default=6)
    t.add_argument("--trials", type=int, default=12, help="of the two-runs study")
    t.add_argument("--runs", type=int, default=3, help="tries of the two runs")
    t.add_argument("--postgres", default=None,
                   help="a PostgreSQL URL (a fresh schema per try), or 'private' for a private "
                   "server (tests/private_postgres.py)")  # fmt: skip
    t.add_argument("--workdir", default=None)
    r = sub.add_parser("orphans", help="SIGKILL a --workers 2 command, then rerun it")
    r.add_argument("--tries", type=int, default=3)
    r.add_argument("--trials", type=int, default=30)
    r.add_argument("--at", type=int, default=6, help="complete trials when it is killed")
    r.add_argument("--workdir", default=None)
    d = sub.add_parser("disk-full", help="a full disk under the storage and under the export")
    d.add_argument("--tries", type=int, default=3)
    d.add_argument("--trials", type=int, default=12)
    d.add_argument("--at", type=int, default=4, help="complete trials when the disk fills")
    d.add_argument("--hold", type=float, default=8.0, help="seconds the disk stays full")
    d.add_argument("--kills", type=int, default=10, help="exports SIGKILLed at random moments")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workdir", default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    experiments = {"outage": outage, "checkpoint": checkpoint, "inputs": inputs,
                   "together": together, "orphans": orphans, "disk-full": disk_full}  # fmt: skip
    experiments[args.experiment](args)


if __name__ == "__main__":
    main()
