"""One candidate of the search: a Spikformer's shape plus its neurons' inner parameters."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

PER_BLOCK_FIELDS = ("mlp_ratio", "num_heads", "threshold", "tau")
GLOBAL_FIELDS = ("depth", "embed_dim", "time_steps")
FIELDS = ("depth", "embed_dim", "mlp_ratio", "num_heads", "threshold", "tau", "time_steps")

_NUMBERS = r"[\d.,e+-]+"  # comma lists of floats as repr writes them (1.25, 3.3333333, 1e-07)
_COMPACT = re.compile(
    r"^d(?P<depth>\d+)-e(?P<embed_dim>\d+)-t(?P<time_steps>\d+)"
    rf":r(?P<mlp_ratio>{_NUMBERS}):h(?P<num_heads>[\d,]+)"
    rf":th(?P<threshold>{_NUMBERS}):tau(?P<tau>{_NUMBERS})$"
)


def format_number(value: float) -> str:
    """The shortest text that reads back as exactly ``value`` (3.0 -> '3', 1.25 -> '1.25',
    10/3 -> '3.3333333333333335'): Python's ``repr`` without a trailing ``.0``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Architecture:
    """A subnet: depth, embed dim, per-block MLP ratio / heads / LIF threshold / LIF tau, time steps.

    The per-block fields are tuples of length ``depth``. Values are plain ints and floats so that
    an architecture is hashable, JSON-safe and usable as an Optuna categorical choice.
    """

    depth: int
    embed_dim: int
    mlp_ratio: tuple[float, ...]
    num_heads: tuple[int, ...]
    threshold: tuple[float, ...]
    tau: tuple[float, ...]
    time_steps: int

    def __post_init__(self) -> None:
        for name in GLOBAL_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Architecture.{name} must be a positive integer, got {value!r}")
        for name in PER_BLOCK_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                raise ValueError(f"Architecture.{name} must be a list with one value per block")
            cast = int if name == "num_heads" else float
            items = tuple(cast(v) for v in value)
            if len(items) != self.depth:
                raise ValueError(
                    f"Architecture.{name} has {len(items)} values but depth is {self.depth}"
                )
            if any(v <= 0 for v in items):
                raise ValueError(f"Architecture.{name} values must be positive, got {items}")
            if name == "tau" and any(v <= 1 for v in items):
                raise ValueError(
                    f"Architecture.tau values must be > 1 (LIF time constants), got {items}"
                )
            object.__setattr__(self, name, items)
        for i, heads in enumerate(self.num_heads):
            if self.embed_dim % heads:
                raise ValueError(
                    f"Architecture.num_heads[{i}]={heads} does not divide embed_dim={self.embed_dim}"
                )

    # --- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        missing = [f for f in FIELDS if f not in data]
        unknown = [k for k in data if k not in FIELDS]
        if missing or unknown:
            raise ValueError(
                f"architecture dict: missing fields {missing}, unknown fields {unknown}; "
                f"expected exactly {list(FIELDS)}"
            )
        return cls(**{f: data[f] for f in FIELDS})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        """Compact form for tables and the CLI, e.g. ``d2-e48-t4:r3,4:h4,4:th1,1.2:tau2,3``."""
        join = ",".join
        return (
            f"d{self.depth}-e{self.embed_dim}-t{self.time_steps}"
            f":r{join(format_number(v) for v in self.mlp_ratio)}"
            f":h{join(str(v) for v in self.num_heads)}"
            f":th{join(format_number(v) for v in self.threshold)}"
            f":tau{join(format_number(v) for v in self.tau)}"
        )

    @classmethod
    def parse(cls, text: str) -> Architecture:
        """Read the compact form of ``str(arch)`` or a JSON object."""
        text = text.strip()
        if text.startswith("{"):
            return cls.from_json(text)
        match = _COMPACT.match(text)
        if not match:
            raise ValueError(
                f"cannot read architecture {text!r}: expected JSON or the compact form "
                "'d2-e48-t4:r3,4:h4,4:th1,1.2:tau2,3'"
            )
        parts = match.groupdict()
        return cls(
            depth=int(parts["depth"]),
            embed_dim=int(parts["embed_dim"]),
            time_steps=int(parts["time_steps"]),
            mlp_ratio=tuple(float(v) for v in parts["mlp_ratio"].split(",")),
            num_heads=tuple(int(v) for v in parts["num_heads"].split(",")),
            threshold=tuple(float(v) for v in parts["threshold"].split(",")),
            tau=tuple(float(v) for v in parts["tau"].split(",")),
        )

    # --- derived sizes ----------------------------------------------------------------------
    def mlp_hidden(self, block: int) -> int:
        """Hidden width of block ``block``'s MLP: ``round(mlp_ratio * embed_dim)``."""
        return round(self.mlp_ratio[block] * self.embed_dim)

    @classmethod
    def uniform(
        cls,
        *,
        depth: int,
        embed_dim: int,
        mlp_ratio: float,
        num_heads: int,
        threshold: float = 1.0,
        tau: float = 2.0,
        time_steps: int = 4,
    ) -> Architecture:
        """Every block alike, e.g. ``Architecture.uniform(depth=4, embed_dim=384, mlp_ratio=4, num_heads=12)``."""
        return cls(
            depth=depth,
            embed_dim=embed_dim,
            mlp_ratio=(float(mlp_ratio),) * depth,
            num_heads=(int(num_heads),) * depth,
            threshold=(float(threshold),) * depth,
            tau=(float(tau),) * depth,
            time_steps=time_steps,
        )


def spikformer_4_384(time_steps: int = 4) -> Architecture:
    """The hand-designed Spikformer-4-384 of Zhou et al. (threshold 1.0, tau 2.0)."""
    return Architecture.uniform(
        depth=4, embed_dim=384, mlp_ratio=4.0, num_heads=12, time_steps=time_steps
    )


def spikformer_2_256(time_steps: int = 16) -> Architecture:
    """The hand-designed DVS Spikformer-2-256 of Zhou et al. (16 heads, threshold 1.0, tau 2.0)."""
    return Architecture.uniform(
        depth=2, embed_dim=256, mlp_ratio=4.0, num_heads=16, time_steps=time_steps
    )


#: The hand-designed Spikformers a study marks as its baseline, in order of preference: the CIFAR
#: model and the DVS model.
BASELINES: dict[str, Architecture] = {
    "Spikformer-4-384": spikformer_4_384(),
    "Spikformer-2-256": spikformer_2_256(),
}
