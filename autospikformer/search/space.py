"""Search spaces as data: TOML files of discrete choice lists, validated on load."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autospikformer.errors import AutospikError
from autospikformer.resources import preset_names, read_toml, studies_dir
from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture

SECTIONS: dict[str, tuple[str, ...]] = {
    "transformer": ("embed_dim", "mlp_ratio", "num_heads", "depth"),
    "neuron": ("threshold", "tau", "time_steps"),
}
INTEGER_FIELDS = ("embed_dim", "num_heads", "depth", "time_steps")
FIELD_ORDER = ("depth", "embed_dim", "mlp_ratio", "num_heads", "threshold", "tau", "time_steps")


class SearchSpaceError(AutospikError, ValueError):
    """A search-space file or dict that cannot be used; the message names the field."""


def _grid(field: str, spec: Any) -> tuple[float | int, ...]:
    """Expand a choice list or a ``{min, max, step}`` table into sorted, rounded choices."""
    integer = field in INTEGER_FIELDS
    if isinstance(spec, dict):
        keys = set(spec)
        if keys != {"min", "max", "step"}:
            raise SearchSpaceError(
                f"{field}: a range needs exactly the keys min, max, step (got {sorted(keys)})"
            )
        lo, hi, step = spec["min"], spec["max"], spec["step"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi, step)):
            raise SearchSpaceError(f"{field}: min, max and step must be numbers")
        if step <= 0 or hi < lo:
            raise SearchSpaceError(f"{field}: need step > 0 and max >= min (got {spec})")
        count = (hi - lo) / step
        if abs(count - round(count)) > 1e-6:
            raise SearchSpaceError(f"{field}: step {step} does not divide max - min = {hi - lo}")
        values: list[Any] = [lo + i * step for i in range(round(count) + 1)]
    elif isinstance(spec, list):
        values = list(spec)
    else:
        raise SearchSpaceError(
            f"{field}: expected a list of choices or a {{min, max, step}} table, got {spec!r}"
        )
    if not values:
        raise SearchSpaceError(f"{field}: the choice list is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise SearchSpaceError(f"{field}: choices must be positive numbers, got {v!r}")
        if integer and float(v) != int(v):
            raise SearchSpaceError(f"{field}: choices must be integers, got {v!r}")
        if field == "tau" and v <= 1:
            raise SearchSpaceError(
                f"tau: choices must be > 1 (a LIF membrane time constant; the membrane keeps "
                f"1 - 1/tau of itself each step), got {v!r}"
            )
    cast = (lambda v: int(v)) if integer else (lambda v: round(float(v), 6))
    out = tuple(sorted({cast(v) for v in values}))
    if len(out) != len(values):
        raise SearchSpaceError(f"{field}: the choice list has duplicates: {values}")
    return out


@dataclass(frozen=True)
class SearchSpace:
    """Discrete choices for every architecture field; per-block fields choose per block.

    ``choices`` maps each field of :class:`Architecture` to its sorted tuple of allowed values.
    """

    name: str
    choices: dict[str, tuple[float | int, ...]]
    description: str = ""

    # --- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | Path) -> SearchSpace:
        """A preset name (``"S_T1+S_S"``, ``"digits"``) or the path of a TOML file."""
        path, data = read_toml(
            name_or_path,
            studies_dir() / "spaces",
            error=SearchSpaceError,
            unknown=f"unknown search space {str(name_or_path)!r}; presets: "
            f"{', '.join(preset_names('spaces'))}, or give the path of a .toml file",
            kind="search-space",
        )
        data.setdefault("name", path.stem)
        try:
            return cls.from_dict(data)
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """Build from the TOML layout: ``name``, ``description``, ``[transformer]``, ``[neuron]``."""
        allowed = {"name", "description", *SECTIONS}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SearchSpaceError(f"unknown keys {unknown}; allowed: {sorted(allowed)}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SearchSpaceError("name: a non-empty string is required")
        choices: dict[str, tuple[float | int, ...]] = {}
        for section, fields in SECTIONS.items():
            table = data.get(section)
            if not isinstance(table, dict):
                raise SearchSpaceError(f"[{section}]: table missing (fields: {', '.join(fields)})")
            extra = sorted(set(table) - set(fields))
            if extra:
                raise SearchSpaceError(
                    f"[{section}]: unknown fields {extra}; allowed: {list(fields)}"
                )
            for field in fields:
                if field not in table:
                    raise SearchSpaceError(f"[{section}].{field}: missing")
                choices[field] = _grid(field, table[field])
        for heads in choices["num_heads"]:
            for dim in choices["embed_dim"]:
                if dim % heads:
                    raise SearchSpaceError(
                        f"num_heads: {heads} heads do not divide embed_dim {dim}"
                    )
        return cls(name=name, choices=choices, description=str(data.get("description", "")))

    def to_dict(self) -> dict[str, Any]:
        """The TOML layout with explicit choice lists (JSON-safe; ``from_dict`` reads it back)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for section, fields in SECTIONS.items():
            out[section] = {f: list(self.choices[f]) for f in fields}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """Short hash of the choices alone (not the name): checkpoints record it."""
        body = json.dumps({f: list(self.choices[f]) for f in FIELD_ORDER}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    # --- queries --------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Architecture:
        """Uniform over each field's choices (depth first, then one draw per block)."""
        c = self.choices
        depth = int(rng.choice(c["depth"]))
        return Architecture(
            depth=depth,
            embed_dim=int(rng.choice(c["embed_dim"])),
            mlp_ratio=tuple(rng.choice(c["mlp_ratio"]) for _ in range(depth)),
            num_heads=tuple(rng.choice(c["num_heads"]) for _ in range(depth)),
            threshold=tuple(rng.choice(c["threshold"]) for _ in range(depth)),
            tau=tuple(rng.choice(c["tau"]) for _ in range(depth)),
            time_steps=int(rng.choice(c["time_steps"])),
        )

    def violations(self, arch: Architecture) -> list[str]:
        """Each field of ``arch`` off this space's grid, as 'field=value (allowed: ...)'."""
        problems = []
        for field in FIELD_ORDER:
            allowed = self.choices[field]
            value = getattr(arch, field)
            values = value if field in PER_BLOCK_FIELDS else (value,)
            bad = [v for v in values if not any(math.isclose(v, a, abs_tol=1e-6) for a in allowed)]
            if bad:
                problems.append(f"{field}={bad[0]} (allowed: {', '.join(map(str, allowed))})")
        return problems

    def contains(self, arch: Architecture) -> bool:
        return not self.violations(arch)

    def check(self, arch: Architecture) -> None:
        """Raise a one-line error naming the first field of ``arch`` outside this space."""
        problems = self.violations(arch)
        if problems:
            raise SearchSpaceError(
                f"architecture {arch} is not in space {self.name!r}: {problems[0]}"
            )

    def _extreme(self, pick: Any) -> Architecture:
        c = self.choices
        depth = int(pick(c["depth"]))
        return Architecture(
            depth=depth,
            embed_dim=int(pick(c["embed_dim"])),
            mlp_ratio=(pick(c["mlp_ratio"]),) * depth,
            num_heads=(pick(c["num_heads"]),) * depth,
            threshold=(pick(c["threshold"]),) * depth,
            tau=(pick(c["tau"]),) * depth,
            time_steps=int(pick(c["time_steps"])),
        )

    def largest(self) -> Architecture:
        """Every field at its largest value (the supernet's full shape, most time steps)."""
        return self._extreme(max)

    def smallest(self) -> Architecture:
        """Every field at its smallest value."""
        return self._extreme(min)

    def count(self) -> int:
        """Number of distinct architectures: sum over depths of the per-block product."""
        c = self.choices
        per_block = len(c["mlp_ratio"]) * len(c["num_heads"]) * len(c["threshold"]) * len(c["tau"])
        shared = len(c["embed_dim"]) * len(c["time_steps"])
        return shared * sum(per_block**d for d in c["depth"])

    @property
    def max_depth(self) -> int:
        return int(max(self.choices["depth"]))

    @property
    def max_embed_dim(self) -> int:
        return int(max(self.choices["embed_dim"]))

    @property
    def max_mlp_hidden(self) -> int:
        return round(max(self.choices["mlp_ratio"]) * self.max_embed_dim)
