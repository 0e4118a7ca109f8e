"""Images/s of a supernet training step against a standalone model of the same architecture.

Both run the same step (AdamW, label-smoothed cross-entropy, optional AMP) in one process on
synthetic inputs of the data set's shape, so data loading is left out. With ``--arch random``
the supernet trains a different sampled architecture at every step (what supernet training
does) and the standalone side trains, step for step, a model of that same architecture; rounds
alternate between the two so a busy machine slows both alike. The ratio supernet / standalone
should be >= 0.9. Also reports inference images/s (``--eval-batch-size``).

CPU, small space:   python benchmarks/train_throughput.py
GPU, paper setting: python benchmarks/train_throughput.py --device cuda --space S_T2 \\
                        --arch spikformer-4-384 --batch-size 128 --amp --eval-batch-size 1024
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from autospikformer.data.base import dataset_info
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture, spikformer_4_384
from autospikformer.search.space import SearchSpace

# the original Spikformer code, Spikformer-4-384, T=4, one H100 (train batch 128, eval 1024)
REFERENCE = {"train": 2124.0, "eval": 5583.0}
TARGET_FACTOR = {"train": 2.0, "eval": 3.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _architectures(text: str, space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    if text == "random":
        rng = random.Random(seed)
        return [space.sample(rng) for _ in range(count)]
    if text == "largest":
        return [space.largest()]
    if text == "smallest":
        return [space.smallest()]
    if text == "spikformer-4-384":
        return [spikformer_4_384()]
    return [Architecture.parse(text)]


class Stepper:
    """One optimizer per model; ``step(x, y)`` is a full training step."""

    def __init__(self, model: torch.nn.Module, device: torch.device, amp: bool):
        self.model = model.to(device).train()
        cuda = device.type == "cuda"  # as the trainer: fused on CUDA, multi-tensor on the CPU
        self.opt = torch.optim.AdamW(
            model.parameters(),
            lr=1e-4,
            weight_decay=0.06,
            fused=True if cuda else None,
            foreach=None if cuda else True,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.amp = amp
        self.device = device

    def step(self, forward: Callable[[], torch.Tensor], y: torch.Tensor) -> None:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = forward()
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits")
    parser.add_argument("--dataset", default=None, help="input shape (default: digits or cifar10)")
    parser.add_argument("--arch", default="random", help="random, largest, smallest, "
                        "spikformer-4-384 or a compact architecture")  # fmt: skip
    parser.add_argument("--archs", type=int, default=6, help="random architectures per round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (after one warm-up)")
    parser.add_argument("--steps", type=int, default=2, help="steps per architecture per round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = args.amp and device.type == "cuda"
    space = SearchSpace.load(args.space)
    info = dataset_info(args.dataset or ("digits" if args.space == "digits" else "cifar10"))
    archs = _architectures(args.arch, space, args.archs, args.seed)
    for arch in archs:
        space.check(arch)
    torch.manual_seed(args.seed)
    shape = (info.in_channels, info.img_size, info.img_size)
    kw = dict(num_classes=info.num_classes, in_channels=info.in_channels, img_size=info.img_size)
    supernet = SuperSpikformer(space, **kw)
    standalone = {a: supernet.extract(a) for a in archs}
    super_step = Stepper(supernet, device, amp)
    alone_steps = {a: Stepper(m, device, amp) for a, m in standalone.items()}
    x = torch.randn(args.batch_size, *shape, device=device)
    y = torch.randint(0, info.num_classes, (args.batch_size,), device=device)

    def run_super() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            for arch in archs:
                super_step.step(lambda a=arch: supernet(x, a), y)
        _sync(device)
        return time.perf_counter() - start

    def run_alone() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            for arch in archs:
                model = standalone[arch]
                alone_steps[arch].step(lambda m=model: m(x), y)
        _sync(device)
        return time.perf_counter() - start

    images = args.steps * len(archs) * args.batch_size
    run_super(), run_alone()  # warm-up (allocator, cuDNN autotuning)
    ratios, super_ips, alone_ips = [], [], []
    for r in range(args.rounds):
        order = (run_super, run_alone) if r % 2 == 0 else (run_alone, run_super)
        times = {f.__name__: f() for f in order}
        super_ips.append(images / times["run_super"])
        alone_ips.append(images / times["run_alone"])
        ratios.append(super_ips[-1] / alone_ips[-1])

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, threads {torch.get_num_threads()}, space {space.name}, "
          f"input {shape}, batch {args.batch_size}, amp {amp}, archs {args.arch} x{len(archs)}")  # fmt: skip
    print(f"train images/s: supernet {statistics.median(super_ips):.0f}, standalone "
          f"{statistics.median(alone_ips):.0f}; ratio per round "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; median ratio {statistics.median(ratios):.3f}")  # fmt: skip

    eval_batch = args.eval_batch_size or (1024 if device.type == "cuda" else 256)
    xe = torch.randn(eval_batch, *shape, device=device)
    supernet.eval()
    for m in standalone.values():
        m.eval()

    @torch.no_grad()
    def eval_time(forward: Callable[[Architecture], torch.Tensor]) -> float:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            _sync(device)
            start = time.perf_counter()
            for arch in archs:
                forward(arch)
            _sync(device)
        return time.perf_counter() - start

    def sup_eval() -> float:
        return eval_time(lambda a: supernet(xe, a))

    def alone_eval() -> float:
        return eval_time(lambda a: standalone[a](xe))

    sup_eval(), alone_eval()  # warm-up
    eval_images = len(archs) * eval_batch
    sup_rates, alone_rates, eval_ratios = [], [], []
    for r in range(args.rounds):
        order = (sup_eval, alone_eval) if r % 2 == 0 else (alone_eval, sup_eval)
        times = {f.__name__: f() for f in order}
        sup_rates.append(eval_images / times["sup_eval"])
        alone_rates.append(eval_images / times["alone_eval"])
        eval_ratios.append(sup_rates[-1] / alone_rates[-1])
    sup_rate = statistics.median(sup_rates)
    print(f"eval images/s (batch {eval_batch}): supernet subnet {sup_rate:.0f}, standalone "
          f"{statistics.median(alone_rates):.0f}; ratio per round "
          f"{', '.join(f'{r:.3f}' for r in eval_ratios)}; median ratio "
          f"{statistics.median(eval_ratios):.3f}")  # fmt: skip
    if args.arch == "spikformer-4-384":
        for kind, value in (("train", statistics.median(super_ips)), ("eval", sup_rate)):
            target = REFERENCE[kind] * TARGET_FACTOR[kind]
            print(f"{kind}: {value:.0f} images/s vs original Spikformer {REFERENCE[kind]:.0f} "
                  f"(H100) = {value / REFERENCE[kind]:.2f}x; target {target:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
