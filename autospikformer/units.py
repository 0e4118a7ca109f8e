"""How numbers are shown to people: accuracy in percent, energy in one scaled unit per view.

Files (CSV, JSON, the storage, the dashboard) keep the raw values: accuracy as a fraction in
[0, 1] and energy in mJ per image, the unit in the column name (``energy_mj``). What a person
reads (terminal tables, summary lines, plots) shows accuracy in % and energy in the one unit of
mJ, µJ and nJ in which the view's typical value reads best, named in the header or axis title:
a digits subnet costs about 0.5 µJ, a CIFAR Spikformer about 1 mJ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyUnit:
    """A display unit of energy per image: its name and how many of it make one mJ."""

    name: str
    per_mj: float

    def scale(self, mj: float) -> float:
        return mj * self.per_mj

    def format(self, mj: float | None, digits: int = 4) -> str:
        """``mj`` in this unit, ``digits`` significant figures, without the unit ('-' if none)."""
        if mj is None or not math.isfinite(mj):
            return "-"
        return f"{self.scale(mj):.{digits}g}"


MJ = EnergyUnit("mJ", 1.0)
UJ = EnergyUnit("µJ", 1e3)
NJ = EnergyUnit("nJ", 1e6)
UNITS = (MJ, UJ, NJ)


def energy_unit(values_mj: Iterable[float | None]) -> EnergyUnit:
    """The largest unit in which the median of the finite ``values_mj`` is at least 0.1.

    mJ for an empty view; the same unit for a whole table, so its rows compare at a glance.
    """
    finite = sorted(v for v in values_mj if v is not None and math.isfinite(v) and v > 0)
    if not finite:
        return MJ
    typical = finite[len(finite) // 2]
    for unit in UNITS:
        if unit.scale(typical) >= 0.1:
            return unit
    return UNITS[-1]


def energy_text(mj: float | None, digits: int = 4) -> str:
    """One energy with its own unit, e.g. ``0.2159 µJ`` or ``1.181 mJ`` (summary lines)."""
    if mj is None or not math.isfinite(mj):
        return "-"
    unit = energy_unit([mj])
    return f"{unit.format(mj, digits)} {unit.name}"


def percent(fraction: float | None, digits: int = 2) -> str:
    """A fraction in [0, 1] as a percentage without the sign: ``0.9833 -> '98.33'``."""
    if fraction is None or not math.isfinite(fraction):
        return "-"
    return f"{100 * fraction:.{digits}f}"
