"""Many workers on one DSPS study: exact N, no duplicates, every generation at its size.

A digits study (the digits preset, DSPS with a population of 20 and 8 parents; a supernet
trained once, 1 epoch on 128 digits, and passed to every run with ``--supernet``; 128
evaluation digits, one calibration batch) is searched by real ``autospik study run NAME
--trials N --workers K --device cpu`` processes on SQLite and, when a URL is given
(``--postgres URL`` or ``AUTOSPIK_TEST_POSTGRES_URL``), on PostgreSQL. For each storage it
reports the complete count, duplicate architectures among complete trials, trials left
RUNNING or WAITING, the trials pruned (surplus, duplicate) or failed, and each generation's
size (the trials holding a DSPS candidate of that generation that count toward it: not FAIL,
not handed on to a re-queued copy, not a surplus trial closed before drawing) against
``population_size``. The wall time is given per complete trial over that of a one-worker run
of ``--baseline-trials`` trials on SQLite in the same process.

``--kill-at C`` adds a fault: when C trials are complete, one worker process is killed
(SIGKILL) at that moment of its trial, and the others finish the study; its trial fails as
stale after the grace period (``--grace``) and is re-queued, so the generation sizes show
whether a failed and re-queued trial keeps its generation whole.

    python benchmarks/many_workers.py                       # 200 trials, 8 workers, SQLite
    python benchmarks/many_workers.py --postgres postgresql+psycopg2://autospik:autospik@127.0.0.1:5432/autospik
    python benchmarks/many_workers.py --trials 80 --workers 4 --skip-sqlite --postgres URL
    python benchmarks/many_workers.py --kill-at 100 --grace 15 --baseline-trials 10
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.search.dsps import CANDIDATE_KEY
from autospikformer.study.config import StudyConfig

ROOT = Path(__file__).resolve().parents[1]

STUDY = """
[study]
name = "{name}"
seed = 0
[data]
dataset = "digits"
[space]
preset = "digits"
[train]
epochs = 1
batch_size = 64
lr = 2e-3
warmup_epochs = 0
mixup = 0.0
amp = false
workers = 0
augment = false
train_samples = 128
[search]
sampler = "dsps"
trials = {trials}
calib_batches = 1
batch_size = 128
eval_samples = 128
heartbeat_interval = {heartbeat}
grace_period = {grace}
[search.options]
population_size = {population}
num_parents = 8
"""


def write_study(folder: Path, name: str, trials: int, population: int, grace: int = 120) -> Path:
    path = folder / f"{name}.toml"
    heartbeat = max(1, min(5, grace // 3))
    text = STUDY.format(
        name=name, trials=trials, population=population, heartbeat=heartbeat, grace=grace
    )
    path.write_text(text)
    return path


def train(folder: Path, population: int) -> Path:
    """The one supernet every run evaluates (``--supernet``)."""
    from autospikformer.training.trainer import train_supernet

    text = STUDY.format(name="supernet", trials=1, population=population, heartbeat=5, grace=120)
    config = StudyConfig.from_dict(tomllib.loads(text), base=folder)
    return train_supernet(
        space=config.space,
        dataset="digits",
        data_root=None,
        out_dir=folder / "supernet",
        config=config.train,
        device="cpu",
        progress=False,
    )


def _worker_children(pid: int) -> list[int]:
    """The spawned worker processes of a ``study run`` (not multiprocessing's helpers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    workers = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(int(child))
    return workers


def _kill_one_worker_at(proc: subprocess.Popen, storage: str, name: str, complete: int) -> None:
    """SIGKILL one worker of ``proc`` once the study holds ``complete`` complete trials."""
    while proc.poll() is None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        except (KeyError, optuna.exceptions.StorageInternalError):
            done = 0  # not registered yet
        if done >= complete and (workers := _worker_children(proc.pid)):
            os.kill(workers[-1], signal.SIGKILL)
            print(f"  killed worker process {workers[-1]} at {done} complete trials")
            return
        time.sleep(0.2)


def run_study(
    folder: Path,
    study: Path,
    storage: str,
    ckpt: Path,
    trials: int,
    workers: int,
    kill_at: int | None = None,
    name: str = "",
) -> float:
    """Wall seconds of one ``study run`` invocation; raises with its stderr when it fails."""
    cmd = [
        sys.executable, "-m", "autospikformer.cli", "study", "run", str(study),
        "--storage", storage, "--trials", str(trials), "--workers", str(workers),
        "--supernet", str(ckpt), "--device", "cpu", "--no-export",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    if kill_at is not None:
        _kill_one_worker_at(proc, storage, name, kill_at)
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"study run failed ({proc.returncode}):\n{stderr[-4000:]}")
    if kill_at is not None:
        print("  " + "\n  ".join(line for line in stderr.splitlines() if "killed" in line))
    return seconds


def _supersedes(trial: FrozenTrial) -> int | None:
    history = trial.system_attrs.get("retry_history")
    if isinstance(history, list) and history:
        return int(history[-1])
    failed = trial.system_attrs.get("failed_trial")
    return int(failed) if failed is not None else None


def generation_sizes(trials: list[FrozenTrial]) -> tuple[Counter[int], Counter[int]]:
    """(members, complete) per generation; members as the sampler counts them."""
    superseded = {
        n for t in trials if CANDIDATE_KEY in t.system_attrs and (n := _supersedes(t)) is not None
    }
    members: Counter[int] = Counter()
    complete: Counter[int] = Counter()
    for t in trials:
        stored = t.system_attrs.get(CANDIDATE_KEY)
        if not isinstance(stored, dict) or t.number in superseded or t.state == TrialState.FAIL:
            continue
        if t.state == TrialState.PRUNED and not t.params:
            continue  # closed as surplus before its (enqueued) candidate was suggested
        generation = int(stored["generation"])
        members[generation] += 1
        complete[generation] += t.state == TrialState.COMPLETE
    return members, complete


def report(storage: str, name: str, population: int) -> dict[str, Any]:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    params = Counter(json.dumps(t.params, sort_keys=True) for t in done)
    skipped = Counter(
        str(t.user_attrs.get("autospik:skipped", "pruned")).split(":")[0]
        for t in trials
        if t.state == TrialState.PRUNED
    )
    members, complete = generation_sizes(trials)
    last = max(members) if members else -1
    full = [g for g in range(last + 1) if g < last or members[g] >= population]
    deviation = [members[g] - population for g in full]
    return {
        "complete": len(done),
        "duplicates": sum(c - 1 for c in params.values()),
        "running_or_waiting": sum(
            t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials
        ),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "pruned": dict(skipped),
        "trials": len(trials),
        "generations": {g: [members[g], complete[g]] for g in range(last + 1)},
        "max_abs_deviation": max((abs(d) for d in deviation), default=0),
        "max_rel_deviation": max((abs(d) / population for d in deviation), default=0.0),
    }


def show(label: str, result: dict[str, Any], population: int) -> None:
    gens = " ".join(
        f"{g}:{m}" + (f"({c})" if c != m else "") for g, (m, c) in result["generations"].items()
    )
    print(
        f"{label}: {result['complete']} complete of {result['trials']} trials, "
        f"{result['duplicates']} duplicates, {result['running_or_waiting']} running/waiting, "
        f"{result['failed']} failed, pruned {result['pruned'] or '{}'}"
    )
    print(f"  generation:size (complete where fewer): {gens}")
    print(
        f"  largest deviation from population_size {population}: "
        f"{result['max_abs_deviation']} ({100 * result['max_rel_deviation']:.0f} %)"
    )
    print(
        f"  wall {result['seconds']:.1f} s, {result['per_trial']:.3f} s per complete trial = "
        f"x{result['ratio']:.2f} of one worker's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--baseline-trials", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("AUTOSPIK_TEST_POSTGRES_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--kill-at", type=int, help="SIGKILL one worker at this many complete")
    parser.add_argument("--grace", type=int, default=120, help="search.grace_period, seconds")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=base, prefix="autospik-many-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        ckpt = train(folder, args.population)
        print(f"supernet trained in {time.perf_counter() - start:.1f} s")
        sqlite = f"sqlite:///{folder / 'bench.db'}"
        one = write_study(folder, "one-worker", args.baseline_trials, args.population)
        seconds = run_study(folder, one, sqlite, ckpt, args.baseline_trials, 1)
        per_trial_one = seconds / args.baseline_trials
        print(
            f"baseline: 1 worker, {args.baseline_trials} trials on SQLite: {seconds:.1f} s, "
            f"{per_trial_one:.3f} s per trial"
        )
        runs = [] if args.skip_sqlite else [("sqlite", sqlite)]
        if args.postgres:
            runs.append(("postgresql", args.postgres))
        for label, storage in runs:
            name = f"many-{uuid.uuid4().hex[:8]}"
            study = write_study(folder, name, args.trials, args.population, args.grace)
            seconds = run_study(
                folder, study, storage, ckpt, args.trials, args.workers, args.kill_at, name
            )
            result = report(storage, name, args.population)
            result["seconds"] = seconds
            result["per_trial"] = seconds / max(1, result["complete"])
            result["ratio"] = result["per_trial"] / per_trial_one
            results[label] = result
            show(f"{label}, {args.workers} workers, {args.trials} trials", result, args.population)
            if label == "postgresql":
                optuna.delete_study(study_name=name, storage=storage)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
