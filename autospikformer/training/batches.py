"""The training batches of a run: one loader per T, built before the first step, kept to the end.

Event data (CIFAR10-DVS, DVS128): frames depend on T, so the training split is opened once at
setup at every T of the space (one event cache read once, ``data/frames.py``) and each T has one
loader for the whole run; a step takes its batch from the loader of its architecture's T (an
exhausted pass restarts with a new seeded shuffle). Static data has one loader. An epoch is
``len(train split) // batch_size`` steps whatever T is drawn.

Each pass's order comes from :class:`EpochBatches`, a batch sampler reseeded from
``(seed, epoch, pass)`` before the pass, so loader workers live as long as the loader. With
augmentation every sample index comes with its own seed, and the sample is drawn with torch's RNG
set from it: the augmentation then depends on the seed, the epoch and the position alone, the same
with any number of loader workers and after a resume.

A ``holdout`` (:class:`~autospikformer.data.split.HoldoutSplit`) removes the validation part of
the training split before anything else (``train_samples`` then draws from what is left).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from autospikformer.data import loading
from autospikformer.data.base import DatasetInfo, dataset_info
from autospikformer.data.split import HoldoutSplit
from autospikformer.training.config import TrainConfig
from autospikformer.training.distributed import DistInfo


def _epoch_seed(seed: int, epoch: int, extra: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7_919 + extra * 104_729) % (2**63 - 1)


class EpochBatches(Sampler[list[Any]]):
    """The batches of one pass: a shuffle drawn from ``seed`` (set before each pass), this rank's
    shard of it, full batches only; with ``sample_seeds`` each index is an ``(index, seed)`` pair.

    The order is the one torch draws from the same seed: ``RandomSampler`` in a ``DataLoader``
    with its own generator (one process), ``DistributedSampler`` (several), so runs made before
    this sampler existed keep their batches.
    """

    def __init__(
        self, *, size: int, batch_size: int, rank: int = 0, world_size: int = 1,
        sample_seeds: bool = False,
    ) -> None:  # fmt: skip
        if batch_size < 1 or size < 0 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler shape: size={size}, batch_size={batch_size}, "
                             f"rank={rank}, world_size={world_size}")  # fmt: skip
        self.size = size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.sample_seeds = sample_seeds
        self.seed = 0

    def __len__(self) -> int:
        return (self.size // self.world_size) // self.batch_size

    def __iter__(self) -> Iterator[list[Any]]:
        generator = torch.Generator()
        if self.world_size == 1:
            generator.manual_seed(self.seed)
            # a DataLoader draws its workers' base seed from its generator before shuffling
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order = torch.randperm(self.size, generator=generator)
        else:
            generator.manual_seed(self.seed % 2**31)
            per_rank = self.size // self.world_size
            order = torch.randperm(self.size, generator=generator)[: per_rank * self.world_size]
            order = order[self.rank :: self.world_size]
        picked: list[Any] = order.tolist()
        if self.sample_seeds:
            seeds = torch.randint(0, 2**62, (len(picked),), generator=generator).tolist()
            picked = list(zip(picked, seeds, strict=True))
        size = self.batch_size
        for start in range(0, len(self) * size, size):
            yield picked[start : start + size]


class SeededSamples(Dataset):
    """``dataset[index]`` drawn with torch's global RNG seeded from the ``(index, seed)`` key,
    and the RNG's previous state restored (the trainer's own stream is untouched)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class TrainBatches:
    """Training batches: one data set and one loader per T (event data) or one (static data),
    all built here, before the first step."""

    def __init__(
        self,
        dataset: str | DatasetInfo,
        data_root: str | Path | None,
        config: TrainConfig,
        dist: DistInfo,
        device: torch.device | str,
        *,
        time_steps: Sequence[int] = (),
        progress: bool = False,
        holdout: HoldoutSplit | None = None,
    ):
        self.info = dataset_info(dataset)
        self.name = self.info.name
        self.holdout = holdout
        self.config = config
        self.dist = dist
        self.device = torch.device(device)
        if config.batch_size % dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is the global batch: it must divide evenly "
                f"over {dist.world_size} processes"
            )
        self.rank_batch = config.batch_size // dist.world_size
        augment = config.augment and self.name != "digits"
        if self.info.event_based:
            if not time_steps:
                raise ValueError(f"{self.name} is event data: pass the space's time steps")
            sets: dict[int | None, Any] = dict(
                loading.build_frames(
                    self.info, data_root, train=True, augment=augment,
                    time_steps=sorted(set(time_steps)), progress=progress,
                )
            )  # fmt: skip
        else:
            sets = {None: loading.build_dataset(self.info, data_root, train=True, augment=augment)}
        self.full_size = len(next(iter(sets.values())))  # the whole split, before the holdout
        if holdout is not None:
            kept = holdout.indices(self.full_size)[0].tolist()
            sets = {k: Subset(ds, kept) for k, ds in sets.items()}
        if config.train_samples is not None:
            sets = {
                k: loading.subset(ds, config.train_samples, config.seed) for k, ds in sets.items()
            }
        size = len(next(iter(sets.values())))
        self.steps_per_epoch = (size // dist.world_size) // self.rank_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training split has {size} samples: too few for one batch of "
                f"{config.batch_size} (lower batch_size or raise train_samples)"
            )
        workers = math.ceil(config.workers / len(sets)) if config.workers else 0
        self.sets = sets
        self.loaders = {key: self._loader(ds, size, augment, workers) for key, ds in sets.items()}
        self._iters: dict[int | None, Iterator[Any]] = {}
        self._restarts: dict[int | None, int] = {}
        self._epoch = 0

    def dataset(self, time_steps: int | None) -> Any:
        """The training set a loader reads (event data: at ``time_steps`` frames; static: any)."""
        return self.sets[time_steps if self.info.event_based else None]

    def _loader(self, dataset: Any, size: int, augment: bool, workers: int) -> DataLoader:
        sampler = EpochBatches(
            size=size,
            batch_size=self.rank_batch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            sample_seeds=augment,
        )
        return DataLoader(
            SeededSamples(dataset) if augment else dataset,
            batch_sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its base-seed draw leaves torch's global RNG alone
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
                loader = self.loaders[key]
                stream = 0 if key is None else key
                loader.batch_sampler.seed = _epoch_seed(
                    self.config.seed, self._epoch, 1000 * restart + stream
                )
                self._iters[key] = iter(loader)
            try:
                x, y = next(self._iters[key])
                break
            except StopIteration:
                del self._iters[key]
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
