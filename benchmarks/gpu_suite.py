"""One GPU run: training and evaluation speed, a search trial's wall time, peak memory.

    python benchmarks/gpu_suite.py                       # one GPU, under 8 minutes
    python benchmarks/gpu_suite.py --device cpu --tiny   # the same code at a tiny size

At Spikformer-4-384 size on CIFAR-100-shaped synthetic data (T = 4), it prints the card's name and:

1. training images/s, model only (AdamW, label-smoothed cross-entropy, AMP, batch 128, inputs on
   the device): the ``S_T2`` supernet with a new random architecture every step, and a standalone
   Spikformer-4-384, in alternating rounds;
2. training images/s of the real trainer (``SupernetTrainer``: the reference recipe with mixup,
   RandAugment in loader workers, AMP, random ``S_T2`` architectures) on synthetic CIFAR-100 files;
3. subnet evaluation images/s at batch 1024 (Spikformer-4-384 of that supernet, the trial
   engine's autocast, with and without the energy meter);
4. the wall time of a search trial (a real worker: sampler, SQLite storage, BN recalibration on
   8 x 128 training images, evaluation and energy on 10,000 test images), for trials that
   compute SPS and for trials that reuse its outputs (SPEC section 10), and the projected time
   of a 1000-trial study on this one GPU as the engine runs it: SPS computed once for each
   (E, T) pair of the space, every other trial on kept outputs;
5. the peak GPU memory of each part.

Reference, the original Spikformer code on one H100: 2,124 training and 5,583 evaluation
images/s; targets 2x (4,248) and 3x (16,749), and a 1000-trial CIFAR-100 study under 20 minutes.
Each part runs for ``--seconds`` (default 40 s on a GPU); a part that fails prints its error and
the others still run (exit code 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from synthetic_data import write_cifar
from train_throughput import Stepper

from autospikformer.data.base import dataset_info
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import spikformer_4_384
from autospikformer.search.space import SearchSpace

REFERENCE = {"train": 2124.0, "eval": 5583.0}  # original Spikformer code, one H100
TARGET = {"train": 2.0, "eval": 3.0}  # times the reference
STUDY_MINUTES = 20.0  # target for 1000 trials

TINY_SPACE = {
    "name": "tiny-cifar",
    "transformer": {"embed_dim": [16, 32], "mlp_ratio": [1.0, 2.0], "num_heads": [2, 4],
                    "depth": [1, 2]},
    "neuron": {"threshold": [1.0], "tau": [2.0], "time_steps": [2]},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Size:
    space: Any  # a preset name or a space dict
    train_batch: int
    eval_batch: int
    eval_images: int
    calib: tuple[int, int]  # calibration batches, batch size
    trainer_steps: int  # steps per trainer epoch (two epochs: warm-up, timed)
    trials: int
    seconds: float


FULL = Size("S_T2", 128, 1024, 10_000, (8, 128), 60, 12, 40.0)
TINY = Size(TINY_SPACE, 8, 32, 64, (2, 8), 3, 4, 1.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return f"n/a on the CPU (process peak RSS {rss:.2f} GiB)"


def _verdict(value: float, kind: str, tiny: bool) -> str:
    target = REFERENCE[kind] * TARGET[kind]
    ratio = value / REFERENCE[kind]
    text = (
        f"reference {REFERENCE[kind]:,.0f} images/s (original code, H100): x{ratio:.2f}; "
        f"target x{TARGET[kind]:.0f} = {target:,.0f}"
    )
    if tiny:
        return text + " (tiny size: not comparable)"
    return text + (": MET" if value >= target else ": MISSED")


class Suite:
    def __init__(self, size: Size, device: torch.device, workdir: Path, tiny: bool) -> None:
        self.size = size
        self.device = device
        self.workdir = workdir
        self.tiny = tiny
        space = size.space
        self.space = (
            SearchSpace.from_dict(space) if isinstance(space, dict) else SearchSpace.load(space)
        )
        self.standalone_arch = self.space.largest() if tiny else spikformer_4_384()
        self.space.check(self.standalone_arch)
        self.info = dataset_info("cifar100")
        self.shape = {"num_classes": 100, "in_channels": 3, "img_size": 32}
        self.root = workdir / "cifar-100-python"
        self.checkpoint: Path | None = None
        self.lines: list[str] = []
        self.failed: list[str] = []

    def report(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def part(self, name: str, func: Any) -> None:
        start = time.perf_counter()
        _peak_reset(self.device)
        try:
            func()
        except Exception as exc:  # one failing part must not hide the others' figures
            traceback.print_exc()
            self.failed.append(name)
            self.report(f"{name}: FAILED ({type(exc).__name__}: {exc})")
        else:
            self.report(
                f"  {name}: peak memory {_peak(self.device)}, {time.perf_counter() - start:.1f} s"
            )

    # -- 1. model-only training ------------------------------------------------------------
    def training_model_only(self) -> None:
        size, device = self.size, self.device
        amp = device.type == "cuda"
        torch.manual_seed(0)
        supernet = SuperSpikformer(self.space, **self.shape)
        standalone = Spikformer(self.standalone_arch, **self.shape)
        steppers = {"supernet": Stepper(supernet, device, amp),
                    "standalone": Stepper(standalone, device, amp)}  # fmt: skip
        x = torch.randn(size.train_batch, 3, 32, 32, device=device)
        y = torch.randint(0, 100, (size.train_batch,), device=device)
        rng = random.Random(0)

        def steps(name: str, count: int) -> float:
            _sync(device)
            start = time.perf_counter()
            for _ in range(count):
                if name == "supernet":
                    arch = self.space.sample(rng)  # a new random architecture every step
                    steppers[name].step(lambda a=arch: supernet(x, a), y)
                else:
                    steppers[name].step(lambda: standalone(x), y)
            _sync(device)
            return time.perf_counter() - start

        steps("supernet", 3), steps("standalone", 3)  # warm-up: allocator, cuDNN autotuning
        per_round = 10 if not self.tiny else 2
        rates: dict[str, list[float]] = {"supernet": [], "standalone": []}
        deadline = time.perf_counter() + 2 * size.seconds
        r = 0
        while time.perf_counter() < deadline or r < 2:
            order = ("supernet", "standalone") if r % 2 == 0 else ("standalone", "supernet")
            for name in order:
                rates[name].append(per_round * size.train_batch / steps(name, per_round))
            r += 1
        sup, alone = statistics.median(rates["supernet"]), statistics.median(rates["standalone"])
        self.report(
            f"training, model only, AMP, batch {size.train_batch}, {r} rounds: supernet "
            f"({self.space.name}, a new random architecture every step) {sup:,.0f} images/s; "
            f"standalone {self.standalone_arch} {alone:,.0f} images/s (supernet/standalone "
            f"{sup / alone:.3f})"
        )
        self.report(f"  supernet training vs {_verdict(sup, 'train', self.tiny)}")
        self.report(f"  spikingjelly LIF implementation: {_lif_implementation(device)}")
        self.report(f"  standalone training vs {_verdict(alone, 'train', self.tiny)}")

    # -- 2. the real trainer ---------------------------------------------------------------
    def training_trainer(self) -> None:
        from autospikformer.training.config import TrainConfig
        from autospikformer.training.trainer import SupernetTrainer

        size = self.size
        samples = size.train_batch * size.trainer_steps
        config = TrainConfig(
            epochs=2, warmup_epochs=0, batch_size=size.train_batch, train_samples=samples,
            workers=min(8, os.cpu_count() or 1), seed=0,
        )  # fmt: skip
        trainer = SupernetTrainer(
            space=self.space, dataset="cifar100", data_root=self.root,
            out_dir=self.workdir / "supernet", config=config, device=str(self.device),
            resume=False, progress=False,
        )  # fmt: skip
        self.checkpoint = trainer.run()
        row = trainer.history[-1]
        self.report(
            f"training, the real trainer (reference recipe: mixup, RandAugment in "
            f"{config.workers} loader workers, AMP {trainer.amp}; random {self.space.name} "
            f"architectures), epoch 2 of 2 ({row['steps']} steps of {size.train_batch}): "
            f"{row['images_per_s']:,.0f} images/s"
        )
        self.report(f"  trainer vs {_verdict(row['images_per_s'], 'train', self.tiny)}")

    # -- 3. evaluation -----------------------------------------------------------------------
    def evaluation(self) -> None:
        from autospikformer.checkpoint import load_supernet
        from autospikformer.training.evaluate import SubnetEvaluator, autocast

        size, device = self.size, self.device
        supernet = self._supernet(load_supernet)
        evaluator = SubnetEvaluator(
            supernet, dataset="cifar100", data_root=self.root, calib_batches=size.calib[0],
            calib_batch_size=size.calib[1], batch_size=size.eval_batch, device=device,
            precision="auto",
        )  # fmt: skip
        arch = self.standalone_arch
        evaluator.evaluate(arch, recalibrate=False)  # warm-up
        metered: list[float] = []
        bare: list[float] = []
        _, test = evaluator.splits(arch.time_steps)
        deadline = time.perf_counter() + size.seconds
        while time.perf_counter() < deadline or len(bare) < 2:
            result = evaluator.evaluate(arch, recalibrate=False)
            metered.append(result.samples / result.seconds)
            _sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                for x, _ in test:
                    with autocast(device, evaluator.precision):
                        supernet(x, arch)
            _sync(device)
            bare.append(len(test) / (time.perf_counter() - start))
        rate, plain = statistics.median(metered), statistics.median(bare)
        self.report(
            f"evaluation, {arch} of the supernet, batch {size.eval_batch}, {evaluator.precision}, "
            f"{len(test):,} images x {len(bare)}: {rate:,.0f} images/s with the energy meter "
            f"(a trial's pass), {plain:,.0f} images/s forward only"
        )
        self.report(f"  evaluation vs {_verdict(rate, 'eval', self.tiny)}")

    def _supernet(self, load: Any) -> Any:
        if self.checkpoint is None:
            raise RuntimeError("needs the trainer's checkpoint (part 2 failed)")
        return load(self.checkpoint, space=self.space).to(self.device)

    # -- 4. a search trial -------------------------------------------------------------------
    def trial(self) -> None:
        from autospikformer.study.storage import resolve_study
        from autospikformer.study.worker import Worker, WorkerOptions

        if self.checkpoint is None:
            raise RuntimeError("needs the trainer's checkpoint (part 2 failed)")
        size = self.size
        space_file = self.workdir / "space.toml"
        space_file.write_text(_space_toml(self.space))
        study_file = self.workdir / "trial.toml"
        study_file.write_text(
            f'[study]\nname = "gpu-suite"\nseed = 0\n[data]\ndataset = "cifar100"\n'
            f'root = "{self.root}"\n[space]\nfile = "{space_file}"\n[search]\nsampler = "dsps"\n'
            f"calib_batches = {size.calib[0]}\ncalib_batch_size = {size.calib[1]}\n"
            f"batch_size = {size.eval_batch}\namp = true\nbaseline = false\n"
        )
        storage = f"sqlite:///{self.workdir / 'suite.db'}"
        resolve_study(str(study_file), storage, create=True)
        options = WorkerOptions(
            storage_url=storage, study_name="gpu-suite", trials=1, checkpoint=str(self.checkpoint),
            device=str(self.device),
        )  # fmt: skip
        start = time.perf_counter()
        worker = Worker(options)
        setup = time.perf_counter() - start
        worker.run()  # warm-up trial
        walls: dict[str, list[float]] = {"computed": [], "reused": []}
        for k in range(2, size.trials + 2):
            worker.options = dataclasses.replace(options, trials=k)
            start = time.perf_counter()
            worker.run()
            wall = time.perf_counter() - start
            trial = max((t for t in worker.study.trials if t.values), key=lambda t: t.number)
            walls[trial.user_attrs["autospik:evaluation"]["features"]].append(wall)
        done = [t for t in worker.study.trials if t.values]
        record = done[-1].user_attrs.get("autospik:evaluation", {})
        self.report(
            f"search trial ({record.get('calib_images')} calibration images in batches of "
            f"{record.get('calib_batch_size')}, {record.get('eval_images')} test images in "
            f"batches of {record.get('eval_batch_size')}, {record.get('precision')} on "
            f"{record.get('device')}, energy measured), {size.trials} trials after a warm-up: "
            + "; ".join(
                f"SPS {how} in {len(w)} (median {statistics.median(w):.3f} s)"
                for how, w in walls.items()
                if w
            )
            + f"; worker setup {setup:.1f} s"
        )
        self.report(f"  {_projection(walls, self.space, self.tiny)}")


def _projection(walls: dict[str, list[float]], space: SearchSpace, tiny: bool) -> str:
    """A 1000-trial study as the trial engine runs it: SPS computed once for each (E, T) pair
    of the space (at most), every other trial on kept SPS outputs."""
    pairs = len(space.choices["embed_dim"]) * len(space.choices["time_steps"])
    everything = walls["computed"] + walls["reused"]
    fill = statistics.median(walls["computed"] or everything)
    hit = statistics.median(walls["reused"] or everything)
    minutes = (pairs * fill + (1000 - pairs) * hit) / 60
    verdict = "" if tiny else (": MET" if minutes < STUDY_MINUTES else ": MISSED")
    measured = "" if walls["reused"] else " (no trial reused SPS here: every trial as computed)"
    return (
        f"a 1000-trial study on this one device: {minutes:.1f} min projected ({pairs} (E, T) "
        f"pairs computed once at {fill:.3f} s, 1000 - {pairs} trials reusing SPS at "
        f"{hit:.3f} s{measured}; target < {STUDY_MINUTES:.0f} min"
        f"{' at full size' if tiny else ''}){verdict}"
    )


def _lif_implementation(device: torch.device) -> str:
    """Which spikingjelly LIF implementation ran on ``device`` (its fused CUDA or Triton kernel,
    or the step-by-step torch loop); read from spikingjelly's private selection table."""
    if device.type != "cuda":
        return "its CPU kernel"
    try:
        from spikingjelly._ops.lif import _selection

        chosen = {getattr(v, "name", str(v)) for v in _selection._selections.values()}
        return ", ".join(sorted(chosen)) or "none selected yet"
    except Exception as exc:  # a private table: report, never fail on it
        return f"unknown ({type(exc).__name__})"


def _space_toml(space: SearchSpace) -> str:
    data = space.to_dict()
    lines = [f'name = "{data["name"]}"']
    for table in ("transformer", "neuron"):
        lines.append(f"[{table}]")
        lines += [f"{k} = {list(v)}" for k, v in data[table].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny size (a CPU check)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per part")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from autospikformer.device import resolve_device

    device = resolve_device(args.device)
    size = TINY if args.tiny else FULL
    if args.seconds is not None:
        size = dataclasses.replace(size, seconds=args.seconds)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    started = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
        extra = (
            f"CUDA {torch.version.cuda}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"
        )
    else:
        name, extra = "CPU", f"{torch.get_num_threads()} threads"
    print(f"device: {name} ({device}), torch {torch.__version__}, {extra}, size "
          f"{'tiny' if args.tiny else 'full'}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        workdir = Path(tmp)
        suite = Suite(size, device, workdir, args.tiny)
        images = (size.train_batch * size.trainer_steps, size.eval_images)
        write_cifar(suite.root, classes=100, train=max(images[0], size.calib[0] * size.calib[1]),
                    test=images[1])  # fmt: skip
        suite.part("training (model only)", suite.training_model_only)
        suite.part("training (trainer)", suite.training_trainer)
        suite.part("evaluation", suite.evaluation)
        suite.part("search trial", suite.trial)
    total = time.perf_counter() - started
    print(f"\nsummary, {name}:")
    for line in suite.lines:
        print(line)
    print(f"total wall time {total:.0f} s (budget 480 s on one GPU)")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
