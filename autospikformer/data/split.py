"""The validation part of a training split: fixed by (size, fraction, seed), the same everywhere.

Under ``search.eval_split = "val"`` (SPEC section 5) candidates are ranked on a held-out part of
the training split that the supernet never trains on and BN recalibration never sees. The part
is a pure function of the split's size, the fraction and the seed, drawn with NumPy's legacy
``RandomState`` (whose stream NumPy keeps stable), so every worker, every machine and every
resumed run holds out exactly the same images; its fingerprint (a digest of the indices) is
recorded in the study and in the supernet checkpoint so that a mismatch is caught, not hidden.
No torch here: a study file is checked without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Keeps the split's random stream apart from the evaluation subsets drawn with the same seed.
_SPLIT_STREAM = 104_729


@dataclass(frozen=True)
class HoldoutSplit:
    """``fraction`` of a training split, drawn with ``seed``, held out for validation."""

    fraction: float
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 < float(self.fraction) < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction!r}")

    def indices(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(training indices, validation indices) of a split of ``size`` samples, both sorted,
        disjoint and together ``range(size)``; the validation part has ``round(fraction x
        size)`` samples, at least 1 and at most ``size - 1``."""
        if size < 2:
            raise ValueError(f"cannot hold out part of a split of {size} samples")
        count = min(max(round(self.fraction * size), 1), size - 1)
        order = np.random.RandomState((self.seed * 1_000_003 + _SPLIT_STREAM) % 2**32).permutation(
            size
        )
        return np.sort(order[count:]), np.sort(order[:count])

    def fingerprint(self, size: int) -> str:
        """A digest of the validation indices (16 hex digits): equal means the same split."""
        _, val = self.indices(size)
        return hashlib.sha256(val.astype("<i8").tobytes()).hexdigest()[:16]

    def describe(self, size: int) -> dict[str, Any]:
        """What a study and a checkpoint store about the split (JSON-safe)."""
        _, val = self.indices(size)
        return {
            "fraction": float(self.fraction),
            "seed": int(self.seed),
            "size": int(size),
            "val_size": len(val),
            "fingerprint": self.fingerprint(size),
        }

    @classmethod
    def from_description(cls, described: dict[str, Any] | None) -> HoldoutSplit | None:
        if not described:
            return None
        return cls(fraction=float(described["fraction"]), seed=int(described["seed"]))
