"""The training batches of an epoch: a seeded shuffle per epoch, one loader per T for event data.

Event data (CIFAR10-DVS, DVS128): frames depend on T, so one data set per T is built lazily and
each T has its own loader iterator; a step takes its batch from the iterator of its
architecture's T (an exhausted iterator restarts with a new seeded shuffle). An epoch is
``len(train split) // batch_size`` steps whatever T is drawn.

A ``holdout`` (:class:`~autospikformer.data.split.HoldoutSplit`) removes the validation part of
the training split before anything else (``train_samples`` then draws from what is left).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from autospikformer.data import loading
from autospikformer.data.base import dataset_info
from autospikformer.data.split import HoldoutSplit
from autospikformer.training.config import TrainConfig
from autospikformer.training.distributed import DistInfo


def _epoch_seed(seed: int, epoch: int, extra: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7_919 + extra * 104_729) % (2**63 - 1)


class TrainBatches:
    """Training batches for one epoch; for event data one data set and iterator per T."""

    def __init__(
        self,
        dataset: str,
        data_root: str | Path | None,
        config: TrainConfig,
        dist: DistInfo,
        device: torch.device,
        holdout: HoldoutSplit | None = None,
    ):
        self.name = dataset
        self.holdout = holdout
        self.root = data_root
        self.config = config
        self.dist = dist
        self.device = device
        self.info = dataset_info(dataset)
        if config.batch_size % dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is the global batch: it must divide evenly "
                f"over {dist.world_size} processes"
            )
        self.rank_batch = config.batch_size // dist.world_size
        self._sets: dict[int | None, Any] = {}
        probe = self.dataset(None if not self.info.event_based else 1)
        per_rank = len(probe) // dist.world_size
        self.steps_per_epoch = per_rank // self.rank_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training split has {len(probe)} samples: too few for one batch of "
                f"{config.batch_size} (lower batch_size or raise train_samples)"
            )
        self._iters: dict[int | None, Iterator[Any]] = {}
        self._restarts: dict[int | None, int] = {}
        self._epoch = 0

    def dataset(self, time_steps: int | None) -> Any:
        """The training split (for event data: at ``time_steps`` frames), built once."""
        key = time_steps if self.info.event_based else None
        if key not in self._sets:
            augment = self.config.augment and self.name != "digits"
            ds = loading.build_dataset(
                self.name, self.root, train=True, augment=augment, time_steps=key
            )
            self.full_size = len(ds)  # the whole training split, before the holdout
            if self.holdout is not None:
                train_idx, _ = self.holdout.indices(len(ds))
                ds = Subset(ds, train_idx.tolist())
            if self.config.train_samples is not None:
                ds = loading.subset(ds, self.config.train_samples, self.config.seed)
            self._sets[key] = ds
        return self._sets[key]

    def _loader(self, key: int | None, restart: int) -> Any:
        ds = self.dataset(key)
        stream = 0 if key is None else key
        seed = _epoch_seed(self.config.seed, self._epoch, 1000 * restart + stream)
        pin = self.device.type == "cuda"
        if not self.dist.enabled:
            loader = loading.make_loader(
                ds, batch_size=self.rank_batch, train=True, workers=self.config.workers, seed=seed
            )
            loader.pin_memory = pin
            return loader
        sampler = DistributedSampler(
            ds,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=seed % (2**31),
            drop_last=True,
        )
        generator = torch.Generator()
        generator.manual_seed(seed + self.dist.rank)
        return DataLoader(
            ds,
            batch_size=self.rank_batch,
            sampler=sampler,
            num_workers=self.config.workers,
            drop_last=True,
            generator=generator,
            pin_memory=pin,
        )

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._iters.clear()
        self._restarts.clear()

    def next_batch(self, time_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = time_steps if self.info.event_based else None
        while True:
            if key not in self._iters:
                restart = self._restarts.get(key, 0)
                self._restarts[key] = restart + 1
                self._iters[key] = iter(self._loader(key, restart))
            try:
                x, y = next(self._iters[key])
                break
            except StopIteration:
                del self._iters[key]
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
