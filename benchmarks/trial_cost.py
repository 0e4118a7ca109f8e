"""A search trial's wall time over the time of its bare forward passes.

For each scenario a real study is registered in a SQLite file, a real supernet checkpoint is
written (one short training epoch: the timing does not depend on the weights) and a real search
worker (``study/worker.py``: sampler, storage, the trial engine, the energy meter) runs one trial
at a time through its own run loop. After each trial the same subnet runs the same calibration
and evaluation batches with nothing else: train-mode passes over the calibration batches, then
eval-mode passes over the evaluation batches, no BN bookkeeping, no meter, no storage. The two
alternate in one process, so a change in the machine's load hits both. The ratio is

    trial wall time (run loop + sampler + storage + recalibration + evaluation + energy report)
    / bare forward passes of that trial

and its parts: ``engine`` = the evaluator's own time over the bare passes, the rest is the
sampler and the storage. Each is also given in process CPU time (torch on one thread), which a
busy machine disturbs far less than wall time but which leaves out waiting for the disk (the
SQLite commits' fsync). Targets: <= 1.15 on digits and on CIFAR-shaped data, <= 1.3 on event
data in the on-disk format.

    python benchmarks/trial_cost.py --scenario digits --trials 30
    python benchmarks/trial_cost.py --scenario cifar --trials 8
    python benchmarks/trial_cost.py --scenario dvs --trials 6

Scenarios (data written in the real formats under a temporary folder, ``synthetic_data.py``):
``digits`` (the embedded digits, the ``digits`` study's settings: 1 x 360 calibration digits, all
360 test digits in one batch); ``cifar`` (CIFAR-10-shaped pickles, space ``S_T1+S_S``, 1 x 32
calibration images, 32 test images); ``dvs`` (CIFAR10-DVS-shaped AER-DAT recordings of 100k
events, the ``dvs`` space with T 8..16, 1 x 8 calibration recordings, 8 test recordings).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from synthetic_data import write_cifar, write_cifar10dvs

from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.storage import resolve_study
from autospikformer.study.worker import Worker, WorkerOptions
from autospikformer.training.evaluate import _bn_statistics_kept

SPACES = {
    "digits": 'preset = "digits"',
    "cifar": 'preset = "S_T1+S_S"',
    "dvs": 'preset = "dvs"',
}
SEARCH = {  # calib_batches, calib_batch_size, batch_size, eval_samples
    "digits": (1, 360, 360, None),
    "cifar": (1, 32, 32, 32),
    "dvs": (1, 8, 8, 8),
}
DATASET = {"digits": "digits", "cifar": "cifar10", "dvs": "cifar10dvs"}
TARGET = {"digits": 1.15, "cifar": 1.15, "dvs": 1.3}

STUDY = """
[study]
name = "{name}"
seed = 0
[data]
dataset = "{dataset}"
root = "{root}"
[space]
{space}
[train]
epochs = 1
batch_size = {train_batch}
warmup_epochs = 0
mixup = 0.0
amp = false
workers = 0
augment = false
train_samples = {train_batch}
[search]
sampler = "dsps"
trials = 1000
calib_batches = {calib_batches}
calib_batch_size = {calib_batch_size}
batch_size = {batch_size}
{eval_samples}
baseline = false
[search.options]
population_size = 8
num_parents = 4
"""


def _write_data(scenario: str, root: Path, events: int) -> None:
    if scenario == "cifar":
        write_cifar(root, classes=10, train=500, test=100)
    elif scenario == "dvs":
        write_cifar10dvs(root, per_class=10, events=events)


@torch.no_grad()
def bare_passes(worker: Worker, arch: Any) -> tuple[float, float]:
    """The trial's forward passes alone: same subnet, same batches, same precision."""
    from autospikformer.training.evaluate import autocast

    evaluator = worker.evaluator
    model, device, precision = evaluator.supernet, evaluator.device, evaluator.precision
    calib, test = evaluator.splits(arch.time_steps)
    with _bn_statistics_kept(model):  # outside the timed part: leave the supernet as it was
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        model.train()
        for x, _ in calib or ():
            with autocast(device, precision):
                model(x, arch)
        model.eval()
        for x, _ in test:
            with autocast(device, precision):
                model(x, arch)
        _sync(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    scenario: str, trials: int, events: int, device: str, workdir: Path, storage_dir: Path
) -> dict[str, Any]:
    from autospikformer.training.trainer import train_supernet

    root = workdir / "data"
    started = time.perf_counter()
    _write_data(scenario, root, events)
    calib_batches, calib_batch_size, batch_size, eval_samples = SEARCH[scenario]
    text = STUDY.format(
        name=f"cost-{scenario}", dataset=DATASET[scenario], root=root, space=SPACES[scenario],
        train_batch=8, calib_batches=calib_batches, calib_batch_size=calib_batch_size,
        batch_size=batch_size,
        eval_samples="" if eval_samples is None else f"eval_samples = {eval_samples}",
    )  # fmt: skip
    study_file = workdir / f"cost-{scenario}.toml"
    study_file.write_text(text)
    storage = f"sqlite:///{storage_dir / f'cost-{scenario}-{os.getpid()}.db'}"
    _, config, _ = resolve_study(str(study_file), storage, create=True)
    checkpoint = train_supernet(
        space=config.space, dataset=config.dataset, data_root=str(root),
        out_dir=workdir / "supernet", config=config.train, device=device, progress=False,
    )  # fmt: skip
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    options = WorkerOptions(
        storage_url=storage, study_name=config.name, trials=0, checkpoint=str(checkpoint),
        device=device,
    )  # fmt: skip
    worker = Worker(options)
    setup = time.perf_counter() - started
    rows = []
    for k in range(1, trials + 1):
        worker.options = dataclasses.replace(options, trials=k)
        start, cpu = time.perf_counter(), time.process_time()
        worker.run()  # the production loop: exactly one more complete trial
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        trial = [t for t in worker.study.get_trials(deepcopy=False) if t.values][-1]
        arch = architecture_from_params(trial.params)
        engine = float(trial.user_attrs["autospik:seconds"])
        bare, bare_cpu = bare_passes(worker, arch)
        rows.append(
            {"arch": str(arch), "wall": wall, "engine": engine, "bare": bare, "cpu": cpu,
             "bare_cpu": bare_cpu}
        )  # fmt: skip
        print(
            f"  {scenario} trial {trial.number:3d}: {wall:7.3f} s wall, {engine:7.3f} s engine, "
            f"{bare:7.3f} s bare -> x{wall / bare:.3f}; CPU time {cpu:7.3f} s / {bare_cpu:7.3f} s "
            f"-> x{cpu / bare_cpu:.3f}  {arch}",
            flush=True,
        )
    return {"rows": rows, "prepared": prepared, "setup": setup}


def summary(scenario: str, result: dict[str, Any]) -> str:
    rows = result["rows"]
    ratios = [r["wall"] / r["bare"] for r in rows]
    engine = [r["engine"] / r["bare"] for r in rows]
    total = sum(r["wall"] for r in rows) / sum(r["bare"] for r in rows)
    cpu = [r["cpu"] / r["bare_cpu"] for r in rows]
    ok = "meets" if statistics.median(ratios) <= TARGET[scenario] else "MISSES"
    return (
        f"{scenario}: {len(rows)} trials, median trial {statistics.median(r['wall'] for r in rows):.3f} s, "
        f"median bare {statistics.median(r['bare'] for r in rows):.3f} s; ratio median "
        f"x{statistics.median(ratios):.3f} (sum/sum x{total:.3f}, min x{min(ratios):.3f}, max "
        f"x{max(ratios):.3f}); engine alone x{statistics.median(engine):.3f}; CPU time "
        f"x{statistics.median(cpu):.3f} (min x{min(cpu):.3f}, max x{max(cpu):.3f}); "
        f"{ok} the x{TARGET[scenario]} target. Worker setup (data onto the device) "
        f"{result['setup']:.1f} s, data and checkpoint written in {result['prepared']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("digits", "cifar", "dvs", "all"), default="all")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--events", type=int, default=100_000, help="events per DVS recording")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--storage-dir", default=None,
        help="folder of the SQLite file (default: the temporary folder, on disk; /dev/shm "
        "takes the commits' fsync out)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    scenarios = ("digits", "cifar", "dvs") if args.scenario == "all" else (args.scenario,)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}, storage "
          f"in {args.storage_dir or 'the temporary folder'}, load average "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    lines = []
    for scenario in scenarios:
        with tempfile.TemporaryDirectory(prefix=f"trial-cost-{scenario}-") as tmp:
            cwd = os.getcwd()
            os.chdir(tmp)
            storage_dir = Path(args.storage_dir or tmp)
            try:
                result = run(
                    scenario, args.trials, args.events, args.device, Path(tmp), storage_dir
                )
            finally:
                os.chdir(cwd)
        lines.append(summary(scenario, result))
        print(lines[-1], flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
