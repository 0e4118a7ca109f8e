"""The trial engine's store of SPS features: what SPS computed for one (E, T), kept compactly.

SPS (the four conv stages and the relative position branch) depends only on the embed dim E and
the time steps T, so its outputs for the calibration batches (train mode) and the evaluation
batches (eval mode) serve every subnet with that pair (SPEC section 10). Its outputs are spike
counts, 0, 1 or 2 per element (a stage-4 spike plus a position-branch spike), so each is held in
2 bits, four to a byte, on the evaluator's device: 16 times less than float32.

:class:`FeatureCache` keeps the pairs of one evaluator under a byte budget and evicts the least
recently used pair past it; :func:`default_budget` is a quarter of the device's memory (RAM on
the CPU, the GPU's memory on CUDA), shared by the workers on that device. One pair costs
``images x T x N x E / 4`` bytes (N = 64 tokens): CIFAR at 10,000 evaluation images, E = 384,
T = 4 is 246 MB, plus 25 MB for 8 x 128 calibration images; CIFAR10-DVS's 1,000 test
recordings at E = 256, T = 16 are 66 MB, DVS128 Gesture's 288 are 19 MB (``docs/training.md``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from autospikformer.energy.meter import EmbedRows

#: Bits per stored element: spike counts 0..3.
CODE_BITS = 2
_PER_BYTE = 8 // CODE_BITS
_SHIFTS = tuple(range(0, 8, CODE_BITS))
_BUDGET_SHARE = 4  # the default budget: a quarter of the device's memory


class PackedCounts:
    """A tensor of spike counts 0..3 in 2 bits each (four to a uint8), on its device.

    ``unpack()`` gives back the tensor exactly: same shape, same dtype, contiguous.
    """

    __slots__ = ("codes", "dtype", "shape")

    def __init__(self, values: torch.Tensor) -> None:
        codes = values.to(torch.uint8)
        if not torch.equal(codes.to(values.dtype), values) or bool((codes > 3).any()):
            raise ValueError("PackedCounts holds whole counts 0..3 only (got other values)")
        flat = codes.reshape(-1)
        pad = (-flat.numel()) % _PER_BYTE
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        quads = flat.view(-1, _PER_BYTE)
        packed = quads[:, 0].clone()
        for i, shift in enumerate(_SHIFTS[1:], start=1):
            packed |= quads[:, i] << shift
        self.codes = packed
        self.shape = tuple(values.shape)
        self.dtype = values.dtype

    @property
    def nbytes(self) -> int:
        return self.codes.numel()

    def unpack(self) -> torch.Tensor:
        shifts = torch.tensor(_SHIFTS, dtype=torch.uint8, device=self.codes.device)
        codes = (self.codes.unsqueeze(-1) >> shifts) & 3
        numel = 1
        for size in self.shape:
            numel *= size
        return codes.reshape(-1)[:numel].view(self.shape).to(self.dtype)


@dataclass
class EmbedFeatures:
    """One (E, T) pair's SPS work on the evaluator's fixed batches.

    ``calib``: the train-mode outputs of each calibration batch (None without recalibration);
    ``evaluation``: the eval-mode outputs of each evaluation batch, SPS's BN statistics
    recalibrated on the calibration batches (or the supernet's own without recalibration);
    ``energy``: SPS's rows of the energy report of the evaluation pass; ``versions``: the SPS
    weights' versions when computed (a changed weight makes the pair stale); ``statistics``:
    without recalibration, the SPS BN statistics the evaluation outputs were computed with.
    """

    calib: list[PackedCounts] | None
    evaluation: list[PackedCounts]
    energy: EmbedRows
    versions: tuple[int, ...]
    statistics: list[torch.Tensor] | None = None

    @property
    def nbytes(self) -> int:
        stored = [*(self.calib or []), *self.evaluation]
        stats = sum(t.numel() * t.element_size() for t in self.statistics or [])
        return sum(p.nbytes for p in stored) + stats


class FeatureCache:
    """The (E, T) pairs of one evaluator, least recently used evicted past ``budget`` bytes.

    A pair larger than the whole budget is not kept (its trial still uses it).
    """

    def __init__(self, *, budget: int) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValueError(f"budget: {budget!r} is not allowed (allowed: bytes >= 0)")
        self.budget = budget
        self._pairs: OrderedDict[Hashable, EmbedFeatures] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._pairs

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self._pairs.values())

    def get(self, key: Hashable) -> EmbedFeatures | None:
        """The pair ``key`` (now the most recently used), or None (counted as a miss)."""
        features = self._pairs.get(key)
        if features is None:
            self.misses += 1
            return None
        self.hits += 1
        self._pairs.move_to_end(key)
        return features

    def put(self, key: Hashable, features: EmbedFeatures) -> bool:
        """Keep ``features`` under ``key``, evicting the least recently used pairs until the
        budget holds; returns whether it was kept."""
        self._pairs.pop(key, None)
        size = features.nbytes
        if size > self.budget:
            return False
        while self._pairs and self.nbytes + size > self.budget:
            self._pairs.popitem(last=False)
            self.evictions += 1
        self._pairs[key] = features
        return True

    def drop(self, key: Hashable) -> None:
        self._pairs.pop(key, None)

    def clear(self) -> None:
        self._pairs.clear()


def device_memory(device: torch.device) -> int:
    """The device's memory in bytes: the GPU's on CUDA, the machine's RAM elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume 8 GiB
        return 8 * 2**30


def default_budget(device: torch.device, *, sharing: int = 1) -> int:
    """A quarter of ``device``'s memory, split among the ``sharing`` workers that use it."""
    return device_memory(device) // _BUDGET_SHARE // max(1, sharing)
