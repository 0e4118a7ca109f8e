"""The energy models: what one image's inference costs, from per-layer counts and input rates.

Both models price the same measurement (per layer: dense MACs and neurons per image and time
step, the measured input rate; the time steps T), so a study can search against either and a
finished study can be re-priced under the other without evaluating anything again:

- ``"sop-45nm"`` (SPEC section 4, the paper's rule and the default) prices arithmetic only: one
  accumulate per synaptic operation (``SOPs = rate * T * MACs``) at ``e_ac``; the first conv of a
  static image once, as dense MACs at ``e_mac``.
- ``"memory-45nm"`` (SPEC section 4b) adds per layer, from the same rates: one weight read per
  synaptic operation, a read and a write of every neuron's membrane potential at every step, and
  the neuron update itself (leak-and-integrate, one MAC, and the threshold compare, one AC).
  Every memory access reads or writes one word of ``word_bits`` from an SRAM bank of ``sram_kb``.

Each model also prices the *dense ANN equivalent* of the same layers (every MAC at ``e_mac``,
T = 1, the same memory model), so that the SNN/ANN energy ratio is one number.

Constants are data: a study file's ``[energy]`` table (:meth:`EnergyModel.from_table`) names the
model and overrides any constant; every key or value carries its unit (``e_mac_pj = 4.6`` or
``e_mac = "4.6 pJ"``). ``docs/energy.md`` gives every default and its source. This module needs
neither torch nor pandas: the search side validates study files with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autospikformer.errors import AutospikError

MODEL_NAMES = ("sop-45nm", "memory-45nm")
DEFAULT_MODEL = "sop-45nm"

# 45 nm CMOS, Horowitz (ISSCC 2014): fp32 add 0.9 pJ, fp32 multiply 3.7 pJ; a MAC is both.
E_MAC_PJ = 4.6
E_AC_PJ = 0.9
WORD_BITS = 32  # fp32 weights and membrane potentials
SRAM_KB = 32.0  # the SRAM bank each layer's weights and potentials are read from
# One 64-bit SRAM access by the SRAM's size in KB (Horowitz 2014: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB
# 100 pJ); a word of ``word_bits`` costs ``word_bits / 64`` of it.
SRAM_ACCESS_PJ: dict[float, float] = {8.0: 10.0, 32.0: 20.0, 1024.0: 100.0}
ACCESS_BITS = 64
PJ_TO_MJ = 1e-9

# Units a key suffix or a value string may carry, with the factor to the canonical unit.
_ENERGY_UNITS = {"fj": 1e-3, "pj": 1.0, "nj": 1e3}  # -> pJ
_SIZE_UNITS = {"kb": 1.0, "kib": 1.0, "mb": 1024.0, "mib": 1024.0}  # -> KB
_BIT_UNITS = {"bit": 1.0, "bits": 1.0}
_KINDS = {  # units, canonical unit, allowed units, what the quantity is
    "energy": (_ENERGY_UNITS, "pJ", "fJ, pJ, nJ", "an energy"),
    "size": (_SIZE_UNITS, "KB", "KB, MB", "a size"),
    "bits": (_BIT_UNITS, "bits", "bits", "a number of bits"),
}
_KEY = re.compile(r"(?P<base>e_mac|e_ac|word|sram|sram_(?P<size>\d+(?:\.\d+)?)(?P<su>kb|mb))"
                  r"(?:_(?P<unit>[a-z]+))?")  # fmt: skip
_VALUE = re.compile(r"\s*(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)\s*(?P<unit>[a-z]+)\s*")
_ALLOWED_KEYS = "model, e_mac_pj, e_ac_pj, word_bits, sram_kb, sram_<size>_pj (e.g. sram_32kb_pj)"


class EnergyError(AutospikError, ValueError):
    """An energy model or constant that cannot be used; the message names the key."""


def size_label(kb: float) -> str:
    """``8 -> '8kb'``, ``1024 -> '1mb'``: the size part of an ``sram_<size>_pj`` key."""
    if kb >= 1024 and (kb / 1024) == round(kb / 1024, 6):
        return f"{kb / 1024:g}mb"
    return f"{kb:g}kb"


def size_text(kb: float) -> str:
    """``8 -> '8 KB'``, ``1024 -> '1 MB'``: an SRAM size for messages."""
    label = size_label(kb)
    return f"{label[:-2]} {label[-2:].upper()}"


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EnergyError(f"{where}: {value!r} is not allowed (allowed: a number >= 0)")
    if value < 0:
        raise EnergyError(f"{where}: {value!r} is not allowed (allowed: a number >= 0)")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class EnergyConstants:
    """The numbers the energy models price with (defaults: 45 nm CMOS, Horowitz 2014).

    ``sram_access_pj`` maps an SRAM size (KB) to the energy of one 64-bit access (pJ);
    ``sram_kb`` must be one of its sizes. Every value must be >= 0 (sizes > 0).
    """

    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ
    word_bits: int = WORD_BITS
    sram_kb: float = SRAM_KB
    sram_access_pj: Mapping[float, float] = field(default_factory=lambda: dict(SRAM_ACCESS_PJ))

    def __post_init__(self) -> None:
        for name in ("e_mac_pj", "e_ac_pj"):
            object.__setattr__(self, name, _number(f"EnergyConstants.{name}", getattr(self, name)))
        bits = self.word_bits
        whole = (
            isinstance(bits, (int, float))
            and not isinstance(bits, bool)
            and math.isfinite(bits)
            and bits == int(bits)
        )
        if not whole or bits < 1:
            raise EnergyError(
                f"EnergyConstants.word_bits: {bits!r} is not allowed (allowed: an integer >= 1)"
            )
        object.__setattr__(self, "word_bits", int(bits))
        if not isinstance(self.sram_access_pj, Mapping) or not self.sram_access_pj:
            raise EnergyError(
                "EnergyConstants.sram_access_pj: expected sizes (KB) -> pJ per 64-bit access, "
                f"got {self.sram_access_pj!r}"
            )
        table = {}
        for size, pj in self.sram_access_pj.items():
            kb = _number("EnergyConstants.sram_access_pj size", size)
            if kb <= 0:
                raise EnergyError(f"EnergyConstants.sram_access_pj: size {size!r} must be > 0")
            table[kb] = _number(f"EnergyConstants.sram_access_pj[{size!r}]", pj)
        object.__setattr__(self, "sram_access_pj", dict(sorted(table.items())))
        kb = _number("EnergyConstants.sram_kb", self.sram_kb)
        if kb not in table:
            listed = ", ".join(size_text(s) for s in table)
            raise EnergyError(
                f"energy.sram_kb: {size_text(kb)} has no access energy (listed sizes: {listed}; "
                f"add sram_{size_label(kb)}_pj = <pJ per 64-bit access>)"
            )
        object.__setattr__(self, "sram_kb", kb)

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    @property
    def word_access_pj(self) -> float:
        """Energy of reading or writing one word from the assumed SRAM bank."""
        return self.sram_access_pj[self.sram_kb] * self.word_bits / ACCESS_BITS

    def to_dict(self) -> dict[str, float]:
        """Flat ``{name: number}``, units in the names; a valid ``[energy]`` table itself."""
        out: dict[str, float] = {
            "e_mac_pj": self.e_mac_pj,
            "e_ac_pj": self.e_ac_pj,
            "word_bits": self.word_bits,
            "sram_kb": self.sram_kb,
        }
        for kb, pj in self.sram_access_pj.items():
            out[f"sram_{size_label(kb)}_pj"] = pj
        return out


def _parse_key(key: str) -> tuple[str, str, float | None, str | None]:
    """``(base, kind, sram size in KB or None, unit suffix or None)`` of one constant's key."""
    match = _KEY.fullmatch(key.lower())
    if match is None:
        raise EnergyError(f"energy.{key}: unknown constant (allowed: {_ALLOWED_KEYS})")
    base, unit = match["base"], match["unit"]
    size = None
    if match["size"] is not None:
        size = float(match["size"]) * _SIZE_UNITS[match["su"]]
        if size <= 0:
            raise EnergyError(f"energy.{key}: the SRAM size must be > 0")
    kind = {"e_mac": "energy", "e_ac": "energy", "word": "bits", "sram": "size"}.get(base, "energy")
    return base, kind, size, unit


def _quantity(key: str, value: Any, kind: str, unit: str | None) -> float:
    """The value of ``key`` in the canonical unit of ``kind``; the unit from the key or value."""
    units, canonical, allowed, what = _KINDS[kind]
    bare = key if unit is None else key[: -len(unit) - 1]
    if isinstance(value, (dict, list)):
        raise EnergyError(f"energy.{key}: expected {what} with its unit, got {value!r}")
    example = {"energy": '"4.6 pJ"', "size": '"32 KB"', "bits": '"32 bits"'}[kind]
    if unit is not None:
        if unit not in units:
            raise EnergyError(
                f"energy.{key}: {unit!r} is not a unit of {kind} (allowed: {allowed})"
            )
        if isinstance(value, str):
            raise EnergyError(
                f"energy.{key}: give a number, the unit is in the key (got {value!r})"
            )
        number = _number(f"energy.{key}", value)
        return number * units[unit]
    if not isinstance(value, str):
        suffix = canonical.lower()
        raise EnergyError(
            f"energy.{key}: {value!r} has no unit (write {bare}_{suffix} = {value!r} or "
            f'{bare} = "{value} {canonical}")'
        )
    match = _VALUE.fullmatch(value.lower())
    if match is None or match["unit"] not in units:
        raise EnergyError(
            f"energy.{key}: {value!r} is not {what} with its unit (allowed units: {allowed}; "
            f"e.g. {bare} = {example})"
        )
    return _number(f"energy.{key}", float(match["num"])) * units[match["unit"]]


def parse_constants(
    table: Mapping[str, Any], *, base: EnergyConstants | None = None
) -> EnergyConstants:
    """The constants of an ``[energy]`` table (without its ``model`` key) over ``base``.

    A key carries its unit as a suffix (``e_ac_pj = 0.9``) or its value does
    (``e_ac = "0.9 pJ"``); a missing or wrong unit, a negative value, an unknown key or a
    constant given twice is one :class:`EnergyError` naming the key.
    """
    start = base or EnergyConstants()
    values: dict[str, Any] = {
        "e_mac_pj": start.e_mac_pj,
        "e_ac_pj": start.e_ac_pj,
        "word_bits": start.word_bits,
        "sram_kb": start.sram_kb,
    }
    sram = dict(start.sram_access_pj)
    seen: dict[tuple[str, float | None], str] = {}
    for key, value in table.items():
        name, kind, size, unit = _parse_key(str(key))
        slot = (name if size is None else "sram_size", size)
        if slot in seen:
            raise EnergyError(f"energy.{key}: given twice (as {seen[slot]} and {key})")
        seen[slot] = str(key)
        number = _quantity(str(key), value, kind, unit)
        if size is not None:
            sram[size] = number
        elif name == "word":
            if number < 1 or number != int(number):
                raise EnergyError(
                    f"energy.{key}: {value!r} is not allowed (allowed: a whole number of bits >= 1)"
                )
            values["word_bits"] = int(number)
        elif name == "sram":
            if number <= 0:
                raise EnergyError(f"energy.{key}: {value!r} is not allowed (allowed: a size > 0)")
            values["sram_kb"] = number
        else:
            values[f"{name}_pj"] = number
    return EnergyConstants(**values, sram_access_pj=sram)


@dataclass(frozen=True)
class PricedLayers:
    """Per-layer results of one model (arrays, mJ per image) for the SNN and its ANN equivalent."""

    ops: np.ndarray  # SOPs per image (dense MACs for a first conv counted once)
    compute_mj: np.ndarray
    memory_mj: np.ndarray
    ann_compute_mj: np.ndarray
    ann_memory_mj: np.ndarray

    @property
    def energy_mj(self) -> np.ndarray:
        return self.compute_mj + self.memory_mj

    @property
    def ann_mj(self) -> np.ndarray:
        return self.ann_compute_mj + self.ann_memory_mj

    def totals(self) -> EnergyTotals:
        return EnergyTotals(
            energy_mj=float(self.energy_mj.sum()),
            compute_mj=float(self.compute_mj.sum()),
            memory_mj=float(self.memory_mj.sum()),
            ann_energy_mj=float(self.ann_mj.sum()),
            ann_compute_mj=float(self.ann_compute_mj.sum()),
            ann_memory_mj=float(self.ann_memory_mj.sum()),
        )


@dataclass(frozen=True)
class EnergyTotals:
    """Per-image totals of one model (mJ): the SNN, split in compute and memory, and its ANN."""

    energy_mj: float
    compute_mj: float
    memory_mj: float
    ann_energy_mj: float
    ann_compute_mj: float
    ann_memory_mj: float

    @property
    def ann_ratio(self) -> float:
        """SNN energy over the dense ANN equivalent's (below 1: the SNN is cheaper)."""
        return self.energy_mj / self.ann_energy_mj if self.ann_energy_mj else math.nan


@dataclass(frozen=True, kw_only=True)
class EnergyModel:
    """One energy model (``name`` in :data:`MODEL_NAMES`) with its constants."""

    name: str = DEFAULT_MODEL
    constants: EnergyConstants = field(default_factory=EnergyConstants)

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise EnergyError(
                f"energy.model: {self.name!r} is not an energy model "
                f"(allowed: {', '.join(MODEL_NAMES)})"
            )
        if not isinstance(self.constants, EnergyConstants):
            raise EnergyError(
                f"EnergyModel.constants: expected EnergyConstants, got {self.constants!r}"
            )

    @property
    def counts_memory(self) -> bool:
        return self.name == "memory-45nm"

    def with_name(self, name: str) -> EnergyModel:
        """The same constants under model ``name``."""
        return replace(self, name=name)

    # --- the formulas -------------------------------------------------------------------------
    def price(
        self,
        *,
        dense_macs: Sequence[float] | np.ndarray,
        neurons: Sequence[float] | np.ndarray,
        input_rate: Sequence[float] | np.ndarray,
        once: Sequence[bool] | np.ndarray,
        time_steps: int,
    ) -> PricedLayers:
        """Price each layer: ``once`` marks the first conv of a static image (MACs counted once).

        ``dense_macs`` and ``neurons`` are per image and time step; ``input_rate`` is the mean
        input value (ignored where ``once``). See ``docs/energy.md`` for every formula.
        """
        c = self.constants
        macs = np.asarray(dense_macs, dtype=float)
        cells = np.asarray(neurons, dtype=float)
        rate = np.asarray(input_rate, dtype=float)
        first = np.asarray(once, dtype=bool)
        steps = int(time_steps)
        ops = np.where(first, macs, np.where(first, 0.0, rate) * steps * macs)
        compute = ops * np.where(first, c.e_mac_pj, c.e_ac_pj)
        memory = np.zeros_like(macs)
        ann_compute = macs * c.e_mac_pj
        ann_memory = np.zeros_like(macs)
        if self.counts_memory:
            word = c.word_access_pj
            neuron_steps = cells * steps
            compute = compute + neuron_steps * (c.e_mac_pj + c.e_ac_pj)  # leak-integrate, fire
            memory = (ops + 2 * neuron_steps) * word  # weight reads; potential read and write
            ann_compute = ann_compute + cells * c.e_ac_pj  # the activation: one compare
            ann_memory = (macs + 2 * cells) * word  # weight reads; activation write and read
        return PricedLayers(
            ops=ops,
            compute_mj=compute * PJ_TO_MJ,
            memory_mj=memory * PJ_TO_MJ,
            ann_compute_mj=ann_compute * PJ_TO_MJ,
            ann_memory_mj=ann_memory * PJ_TO_MJ,
        )

    # --- as data ------------------------------------------------------------------------------
    def used_constants(self) -> dict[str, float]:
        """The constants this model's prices depend on (what two studies must share)."""
        c = self.constants
        used: dict[str, float] = {"e_mac_pj": c.e_mac_pj, "e_ac_pj": c.e_ac_pj}
        if self.counts_memory:
            used["word_bits"] = c.word_bits
            used["sram_kb"] = c.sram_kb
            used[f"sram_{size_label(c.sram_kb)}_pj"] = c.sram_access_pj[c.sram_kb]
        return used

    def differences(self, other: EnergyModel) -> list[str]:
        """What makes ``other`` price differently: ``model`` and/or the constants' names."""
        if self.name != other.name:
            return ["model"]
        mine, theirs = self.used_constants(), other.used_constants()
        return [k for k in {**mine, **theirs} if mine.get(k) != theirs.get(k)]

    def to_attr(self) -> dict[str, Any]:
        """The study attribute form: ``{"model": name, "constants": {name: number}}``."""
        return {"model": self.name, "constants": self.constants.to_dict()}

    @classmethod
    def from_attr(cls, data: Mapping[str, Any] | None) -> EnergyModel:
        """The model a study attribute names; None (a study without one): the default."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or "model" not in data:
            raise EnergyError(
                f"energy attribute {data!r} is not {{'model': ..., 'constants': ...}}"
            )
        return cls(name=data["model"], constants=parse_constants(dict(data.get("constants") or {})))

    def to_table(self) -> dict[str, Any]:
        """The ``[energy]`` table form: ``{"model": name, **constants}``."""
        return {"model": self.name, **self.constants.to_dict()}

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> EnergyModel:
        """An ``[energy]`` table: ``model`` (default ``"sop-45nm"``) plus any constants."""
        if table is not None and not isinstance(table, Mapping):
            raise EnergyError(f"energy: expected a table, got {table!r}")
        table = dict(table or {})
        name = table.pop("model", DEFAULT_MODEL)
        if not isinstance(name, str) or name not in MODEL_NAMES:
            raise EnergyError(
                f"energy.model: {name!r} is not an energy model (allowed: {', '.join(MODEL_NAMES)})"
            )
        return cls(name=name, constants=parse_constants(table))

    def describe(self) -> str:
        """One line for reports: the model and the constants it uses."""
        c = self.constants
        text = f"{self.name}: E_MAC {c.e_mac_pj:g} pJ, E_AC {c.e_ac_pj:g} pJ"
        if self.counts_memory:
            text += (
                f", {c.word_bits}-bit words in {size_text(c.sram_kb)} SRAM banks "
                f"({c.word_access_pj:g} pJ an access)"
            )
        return text
