"""The one training loop: a supernet (stage 1) or a standalone Spikformer (a chosen subnet).

:class:`Trainer` holds everything a training run needs whatever it trains: the batches, the
recipe, AMP, DDP under ``torchrun``, the progress bar, the checkpoint written at every epoch end
and the exact resume after a kill. What differs lives in two small subclasses:

- :class:`SupernetTrainer`: each step draws one architecture from the study's space (SPEC
  section 3): the transformer part selects weight-entangled slices, the neuron part (threshold,
  tau, T) is an "alternate choice" written into the LIF neurons; nothing is rebuilt. With
  ``sandwich=True`` a step trains the largest, the smallest and one random architecture and sums
  their gradients (BigNAS). Checkpoint ``supernet.pt``.
- :class:`StandaloneTrainer`: one :class:`~autospikformer.Spikformer`, started from given weights
  (a subnet's inherited weights: fine-tuning) or from a seeded initialisation (from scratch),
  SPEC section 9. Checkpoint ``model.pt``: a standalone model file that ``load_model`` (and so
  ``autospik energy --checkpoint``, ``analyze redundancy --model``) reads, which also carries the
  training state. An ``evaluate`` function measures the model before the first step (a
  fine-tuned subnet's start reproduces its trial's accuracy) and every ``eval_every`` epochs.

The recipe is the reference Spikformer one (SPEC section 1, ``TrainConfig`` defaults):
AdamW without weight decay on biases and BN, a per-step cosine schedule with linear warm-up, label
smoothing, batch mixup switched off after ``mixup_off_fraction`` of the epochs, AMP on CUDA.

Exact resume: everything random is either saved in the checkpoint (weights, optimizer,
scheduler, AMP scaler, the architecture and mixup RNGs, torch's global RNG) or derived from
``(seed, epoch)`` (the loader shuffles and worker seeds). A checkpoint is written atomically at
every epoch end, so a run killed mid-epoch resumes from the last finished epoch and ends with the
same weights, bit for bit on the CPU, as a run that was never interrupted.

Batches come from :class:`~autospikformer.training.batches.TrainBatches`: every data set and
loader (one per T for event data) is built at setup, before the first step, and kept for the
run. An event-data study trains the reference's DVS model (``DatasetInfo.variant``). A
``holdout`` keeps a study's validation images out of training; the checkpoint records it
(``holdout``: fraction, seed, fingerprint) and a resume must hold out the same.

Several processes (``torchrun``): ``WORLD_SIZE`` > 1 starts DistributedDataParallel (gloo on
the CPU, NCCL on CUDA). Every rank seeds the architecture RNG alike, so all ranks train the same
architecture at each step; ``batch_size`` is the global batch, split evenly over the ranks.
Layers a subnet of the supernet skips get no gradient on any rank (same architecture
everywhere), so the supernet's DDP runs with ``find_unused_parameters=True``; sliced layers
receive zero gradients outside the slice. BN buffers are broadcast from rank 0 at each epoch end
and the ranks' weights are compared, so a divergence stops the run instead of silently training
different models. Only rank 0 writes files and evaluates.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autospikformer.checkpoint import SUPERNET_KIND, check_space
from autospikformer.checkpoint_file import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from autospikformer.data.base import DatasetInfo, dataset_info
from autospikformer.data.folders import FolderInfo
from autospikformer.data.split import HoldoutSplit
from autospikformer.device import resolve_device
from autospikformer.model.spikformer import CHECKPOINT_KIND as SPIKFORMER_KIND
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.training.batches import TrainBatches
from autospikformer.training.config import TrainConfig
from autospikformer.training.distributed import dist_from_env, sync_replicas
from autospikformer.training.progress import TrainingProgress

CHECKPOINT_NAME = "supernet.pt"
MODEL_CHECKPOINT_NAME = "model.pt"  # a standalone model's training run
METRICS_NAME = "metrics.csv"
# settings that may change between a run and its resumption without changing the result
RESUME_FREE = ("workers", "eval_every")
LOG_INTERVAL = 10  # steps between progress-bar refreshes (each one syncs the device once)

#: A standalone run's evaluation: the model (eval mode is the function's to set) -> named values.
Evaluate = Callable[[nn.Module], dict[str, float]]


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's ``filter_bias_and_bn``: no weight decay on biases and BN affine parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (mixup with label smoothing)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _smooth_one_hot(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / classes
    out = torch.full((labels.shape[0], classes), off, device=labels.device)
    return out.scatter_(1, labels.unsqueeze(1), 1.0 - smoothing + off)


# --------------------------------------------------------------------------- the loop
class Trainer:
    """One training run into ``out_dir``: the loop every model of the project trains with.

    Subclasses say what is trained (:meth:`_build_model`, :meth:`architectures`,
    :meth:`_forward`, the T's to load, the checkpoint's kind, name and description of the model,
    and what a resume must agree on). ``step_callback(epoch, step)`` runs after every optimizer
    step (tests use it to interrupt a run mid-epoch).
    """

    kind = ""  # the checkpoint's "kind" entry
    checkpoint_name = ""
    find_unused_parameters = False  # DDP: some parameters get no gradient at some steps

    def __init__(
        self,
        *,
        dataset: str | DatasetInfo,
        data_root: str | Path | None,
        out_dir: str | Path,
        config: TrainConfig,
        device: str | torch.device = "auto",
        resume: bool = True,
        progress: bool = True,
        step_callback: Callable[[int, int], None] | None = None,
        holdout: HoldoutSplit | None = None,
    ):
        self.holdout = holdout
        self.info = dataset_info(dataset)  # a folder of your own: its FolderInfo
        self.dataset_name = self.info.name
        self.data_root = data_root
        self.out_dir = Path(out_dir)
        self.config = config
        self.dist = dist_from_env()
        self.device = self._device(device)
        self.progress = progress and self.dist.is_main
        self.step_callback = step_callback
        self.path = self.out_dir / self.checkpoint_name
        self.amp = config.amp and self.device.type == "cuda"
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.start_evaluation: dict[str, float] | None = None  # before the first step
        self._resume_state: dict[str, Any] | None = None
        if resume and self.path.exists():
            ckpt = load_checkpoint(self.path, kind=self.kind)
            self._resume_state = self._check_resumable(ckpt)
            self.start_epoch = int(self._resume_state["epoch"])
            self.start_evaluation = ckpt.get("start")
        self.model: nn.Module | None = None

    # --- what is trained (the subclasses') -----------------------------------------------
    def _build_model(self) -> nn.Module:
        raise NotImplementedError

    def _time_steps(self) -> Sequence[int]:
        """The T's a step may train at (event data: one loader each)."""
        raise NotImplementedError

    def architectures(self) -> list[Architecture]:
        """This step's architectures (each trains on a batch; their gradients are summed)."""
        raise NotImplementedError

    def _forward(self, inputs: torch.Tensor, arch: Architecture) -> torch.Tensor:
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        """The checkpoint entries that say what model this is (enough to rebuild it)."""
        raise NotImplementedError

    def _check_model(self, ckpt: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model (one clear line)."""
        raise NotImplementedError

    def _prepare_evaluation(self) -> None:
        """Build what the evaluations need, at setup (nothing by default)."""

    def _evaluate(self) -> dict[str, float]:
        """The values an evaluation every ``eval_every`` epochs adds to the metrics row."""
        return {}

    def _evaluate_start(self) -> dict[str, float] | None:
        """The evaluation before the first step of a fresh run (None: none)."""
        return None

    # --- setup ---------------------------------------------------------------------------
    def _device(self, device: str | torch.device) -> torch.device:
        dev = resolve_device(device)
        if self.dist.enabled and dev.type == "cuda":
            dev = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(dev)
        return dev

    def _check_resumable(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """Refuse a checkpoint of another model, data set or recipe (one clear line each)."""
        self._check_model(ckpt)
        if ckpt.get("dataset") != self.dataset_name or ckpt.get("classes") != self._classes():
            raise CheckpointError(
                f"'{self.path}' was trained on data set {ckpt.get('dataset')!r}, not "
                f"{self.dataset_name!r} (or on other classes); use another output folder or "
                "--no-resume"
            )
        saved = {k: v for k, v in ckpt.get("config", {}).items() if k not in RESUME_FREE}
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUME_FREE}
        diff = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in mine.items() if saved.get(k) != v]
        if diff:
            raise CheckpointError(
                f"'{self.path}' was trained with other settings: {', '.join(diff)}; resume with "
                "the same settings, or use another output folder or --no-resume"
            )
        variant = ckpt.get("variant", "cifar")
        if variant != self.info.variant:
            raise CheckpointError(
                f"'{self.path}' holds the {variant!r} model, but {self.dataset_name} trains the "
                f"{self.info.variant!r} variant (docs/model.md); use another output folder or "
                "--no-resume"
            )
        saved_holdout = HoldoutSplit.from_description(ckpt.get("holdout"))
        if saved_holdout != self.holdout:
            raise CheckpointError(
                f"'{self.path}' was trained holding out {saved_holdout or 'nothing'}, this run "
                f"holds out {self.holdout or 'nothing'}: resume with the same validation split, "
                "or use another output folder or --no-resume"
            )
        world = int(ckpt.get("world_size", 1))
        if world != self.dist.world_size:
            raise CheckpointError(
                f"'{self.path}' was trained by {world} process(es), this run has "
                f"{self.dist.world_size}: resume with the same number so batches stay the same"
            )
        return ckpt

    @property
    def complete(self) -> bool:
        return self.start_epoch >= self.config.epochs

    def _setup(self) -> None:
        cfg = self.config
        if self.dist.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        torch.manual_seed(cfg.seed)
        self.model = self._build_model().to(self.device)
        self.data = TrainBatches(
            self.info,
            self.data_root,
            cfg,
            self.dist,
            self.device,
            time_steps=self._time_steps(),
            progress=self.progress,
            holdout=self.holdout,
        )
        self._prepare_evaluation()
        self.steps_per_epoch = self.data.steps_per_epoch
        # fused kernels on CUDA; the multi-tensor path on the CPU (about 2x faster than a loop)
        cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            fused=True if cuda else None,
            foreach=None if cuda else True,
        )
        spe = self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cfg.lr_at(step / spe) / cfg.lr
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.arch_rng = random.Random(cfg.seed)
        self.mixup_rng = random.Random(cfg.seed + 1)
        if self._resume_state is not None:
            self._restore(self._resume_state)
            self._resume_state = None
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=self.find_unused_parameters
            )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        assert self.model is not None
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        self.arch_rng.setstate(_as_state(rng["arch"]))
        self.mixup_rng.setstate(_as_state(rng["mixup"]))
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = list(ckpt.get("history", []))

    # --- training ------------------------------------------------------------------------
    def _train_step(self, epoch: int, archs: list[Architecture]) -> tuple[torch.Tensor, ...]:
        cfg = self.config
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        mix = cfg.mixup_on(epoch)
        lam = self.mixup_rng.betavariate(cfg.mixup, cfg.mixup) if mix else 1.0
        batch: tuple[torch.Tensor, torch.Tensor] | None = None
        for i, arch in enumerate(archs):
            # static data: the sandwich's subnets share one batch; event data: one batch per T
            if batch is None or self.data.info.event_based:
                batch = self.data.next_batch(arch.time_steps)
            x, y = batch
            if mix:
                targets = _smooth_one_hot(y, self.info.num_classes, cfg.label_smoothing)
                targets = lam * targets + (1 - lam) * targets.flip(0)
                inputs = lam * x + (1 - lam) * x.flip(0)
                labels = y if lam >= 0.5 else y.flip(0)
            else:
                inputs, labels = x, y
            last = i == len(archs) - 1
            sync = (
                self.net.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            )
            with sync:
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                    logits = self._forward(inputs, arch)
                if mix:
                    loss = soft_target_loss(logits, targets)
                else:
                    loss = F.cross_entropy(
                        logits.float(), labels, label_smoothing=cfg.label_smoothing
                    )
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach() * labels.shape[0]
            correct += (logits.detach().argmax(-1) == labels).sum()
            seen += labels.shape[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum, correct, torch.tensor(seen)

    def run(self) -> Path:
        """Train the remaining epochs; returns the checkpoint path."""
        if self.complete:
            return self.path
        self._setup()
        assert self.model is not None
        if self.start_epoch == 0 and self.start_evaluation is None and self.dist.is_main:
            self.start_evaluation = self._evaluate_start()
            self.model.train()
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_metrics()
        bar = TrainingProgress(
            self.config.epochs, self.steps_per_epoch, self.start_epoch, self.progress
        )
        with bar:
            for epoch in range(self.start_epoch, self.config.epochs):
                self._run_epoch(epoch, bar)
        return self.path

    def _run_epoch(self, epoch: int, bar: TrainingProgress) -> None:
        assert self.model is not None
        self.model.train()
        self.data.start_epoch(epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            s_loss, s_correct, s_seen = self._train_step(epoch, self.architectures())
            loss_sum += s_loss
            correct += s_correct
            seen += int(s_seen)
            if self.step_callback is not None:
                self.step_callback(epoch, step)
            if bar.enabled and ((step + 1) % LOG_INTERVAL == 0 or step + 1 == self.steps_per_epoch):
                rate = (step + 1) * self.config.batch_size / (time.perf_counter() - start)
                bar.update(epoch, step + 1, float(loss_sum) / seen, float(correct) / seen, rate)
        seconds = time.perf_counter() - start
        totals = torch.stack(
            [loss_sum.double(), correct.double(), loss_sum.new_tensor(seen).double()]
        )
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
            sync_replicas(self.model)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / totals[2]),
            "train_acc": float(totals[1] / totals[2]),
            "images_per_s": self.steps_per_epoch * self.config.batch_size / seconds,
            "seconds": seconds,
            "steps": self.steps_per_epoch,
        }
        if self.dist.is_main:
            every = self.config.eval_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == self.config.epochs):
                row.update(self._evaluate())
                self.model.train()
        self.history.append(row)
        if self.dist.is_main:
            self._save(epoch + 1)
            self._write_metrics()
            bar.epoch_done(row)
        if self.dist.enabled:
            torch.distributed.barrier()

    # --- files ---------------------------------------------------------------------------
    def _save(self, epoch: int) -> None:
        assert self.model is not None
        rng: dict[str, Any] = {
            "arch": self.arch_rng.getstate(),
            "mixup": self.mixup_rng.getstate(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        payload = {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            **self._describe(),
            "dataset": self.dataset_name,
            "classes": self._classes(),
            "epoch": epoch,
            "epochs": self.config.epochs,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "history": self.history,
            "torch_version": str(torch.__version__),
            "holdout": self._holdout_record(),
        }
        if self.start_evaluation is not None:
            payload["start"] = self.start_evaluation
        save_checkpoint(payload, self.path)

    def _classes(self) -> list[str] | None:
        """A folder's class names, which its checkpoint records (None: a named data set)."""
        return list(self.info.classes) if isinstance(self.info, FolderInfo) else None

    def _holdout_record(self) -> dict[str, Any] | None:
        """The validation split kept out of training (None: trained on the whole split)."""
        return None if self.holdout is None else self.holdout.describe(self.data.full_size)

    def _write_metrics(self) -> None:
        """Rewrite the CSV from the history the checkpoint holds (consistent after a kill)."""
        path = self.out_dir / METRICS_NAME
        columns = ["epoch", "lr", "train_loss", "train_acc", "images_per_s", "seconds", "steps"]
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, path)


def _as_state(state: Any) -> Any:
    """``random.Random.setstate`` wants tuples; a checkpoint may hand back lists."""
    if isinstance(state, list):
        return tuple(_as_state(s) for s in state)
    if isinstance(state, tuple):
        return tuple(_as_state(s) for s in state)
    return state


# --------------------------------------------------------------------------- the supernet
class SupernetTrainer(Trainer):
    """Trains one supernet of ``space`` into ``out_dir / "supernet.pt"``; :func:`train_supernet`
    is the usual entry point. ``eval_every`` evaluates the largest and the smallest subnet."""

    kind = SUPERNET_KIND
    checkpoint_name = CHECKPOINT_NAME
    find_unused_parameters = True  # a subnet shorter than the supernet skips blocks

    def __init__(self, *, space: SearchSpace, **kwargs: Any):
        self.space = space
        super().__init__(**kwargs)

    def _build_model(self) -> nn.Module:
        return SuperSpikformer.for_data(self.space, self.info)

    def _time_steps(self) -> Sequence[int]:
        return self.space.choices["time_steps"]

    def architectures(self) -> list[Architecture]:
        """This step's architectures: one random draw, or largest + smallest + random."""
        arch = self.space.sample(self.arch_rng)
        if self.config.sandwich:
            return [self.space.largest(), self.space.smallest(), arch]
        return [arch]

    def _forward(self, inputs: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.net(inputs, arch)

    def _describe(self) -> dict[str, Any]:
        assert self.model is not None
        return {
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "num_classes": self.info.num_classes,
            "in_channels": self.info.in_channels,
            "img_size": self.info.img_size,
            "variant": self.model.variant,
        }

    def _check_model(self, ckpt: dict[str, Any]) -> None:
        check_space(ckpt, self.space, self.path)

    def _prepare_evaluation(self) -> None:
        """The evaluator of ``eval_every``, its data loaded once, at setup."""
        self.evaluator = None
        if not (self.config.eval_every and self.dist.is_main):
            return
        from autospikformer.training.evaluate import SubnetEvaluator

        extremes = (self.space.largest(), self.space.smallest())
        self.evaluator = SubnetEvaluator(
            self.model,
            dataset=self.info,
            data_root=self.data_root,
            calib_batches=4,
            batch_size=min(self.config.batch_size, 128),
            device=self.device,
            seed=self.config.seed,
            time_steps=sorted({a.time_steps for a in extremes}),
            progress=self.progress,
            holdout=self.holdout,  # calibration never sees the validation part either
        )

    def _evaluate(self) -> dict[str, float]:
        assert self.evaluator is not None
        evaluator = self.evaluator
        return {
            "test_acc_largest": evaluator.evaluate(self.space.largest(), energy=False).accuracy,
            "test_acc_smallest": evaluator.evaluate(self.space.smallest(), energy=False).accuracy,
        }


def train_supernet(
    *,
    space: SearchSpace,
    dataset: str | DatasetInfo,
    data_root: str | Path | None,
    out_dir: str | Path,
    config: TrainConfig,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    holdout: HoldoutSplit | None = None,
) -> Path:
    """Train a supernet of ``space`` on ``dataset``; returns ``out_dir / "supernet.pt"``.

    With ``resume`` an existing checkpoint in ``out_dir`` is continued exactly (a finished one
    returns at once); it must match the space, the data set, the settings and the ``holdout``
    (the validation part of the training split that it never trains on).
    """
    trainer = SupernetTrainer(
        space=space,
        dataset=dataset,
        data_root=data_root,
        out_dir=out_dir,
        config=config,
        device=device,
        resume=resume,
        progress=progress,
        holdout=holdout,
    )
    return trainer.run()


# --------------------------------------------------------------------------- a standalone model
class StandaloneTrainer(Trainer):
    """Trains one standalone Spikformer of ``arch`` into ``out_dir / "model.pt"``.

    ``initial()`` returns the weights to start from (a state dict: a subnet's inherited weights);
    None starts from the seeded initialisation (from scratch). It is called for a fresh run only
    (a resume restores the checkpoint). ``origin`` (JSON-safe) says where the start came from;
    it is written into the checkpoint and a resume must agree with it. ``evaluate(model)``
    (rank 0 only) runs before the first step (:attr:`start_evaluation`, kept in the checkpoint's
    ``start``) and every ``eval_every`` epochs. ``metadata`` adds entries to the checkpoint
    (the study and trial it belongs to).
    """

    kind = SPIKFORMER_KIND
    checkpoint_name = MODEL_CHECKPOINT_NAME

    def __init__(
        self,
        *,
        arch: Architecture,
        initial: Callable[[], dict[str, torch.Tensor]] | None = None,
        origin: dict[str, Any] | None = None,
        evaluate: Evaluate | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        self.arch = arch
        self.initial = initial
        self.origin = dict(origin or {"start": "scratch" if initial is None else "given"})
        self.evaluate = evaluate
        self.metadata = dict(metadata or {})
        super().__init__(**kwargs)

    def _build_model(self) -> nn.Module:
        model = Spikformer.for_data(self.arch, self.info)  # the seeded initialisation
        if self.initial is not None and self._resume_state is None:
            model.load_state_dict(self.initial())
        return model

    def _time_steps(self) -> Sequence[int]:
        return [self.arch.time_steps]

    def architectures(self) -> list[Architecture]:
        return [self.arch]

    def _forward(self, inputs: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.net(inputs)

    def _describe(self) -> dict[str, Any]:
        assert self.model is not None
        return {**self.model.config(), "origin": self.origin, **self.metadata}

    def _check_model(self, ckpt: dict[str, Any]) -> None:
        held = ckpt.get("architecture")
        if held != self.arch.to_dict():
            shown = Architecture.from_dict(held) if isinstance(held, dict) else held
            raise CheckpointError(
                f"'{self.path}' holds {shown}, not {self.arch}; use another output folder or "
                "--no-resume"
            )
        if ckpt.get("origin") != self.origin:
            raise CheckpointError(
                f"'{self.path}' was started from {ckpt.get('origin')}, this run starts from "
                f"{self.origin}; use another output folder or --no-resume"
            )

    def _evaluate(self) -> dict[str, float]:
        assert self.model is not None
        return {} if self.evaluate is None else self.evaluate(self.model)

    def _evaluate_start(self) -> dict[str, float] | None:
        return None if self.evaluate is None else self._evaluate()
