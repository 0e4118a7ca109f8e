"""What re-pricing a measured architecture needs, in a compact JSON form a trial can store.

Per layer (in :func:`~autospikformer.energy.counts.counted_layers` order): the dense MACs and
the neurons per image and time step, and the measured input rate; with the time steps, whether
the input was event data (the first conv's convention) and how many images were measured.
Any energy model prices a record exactly as it prices the report the record came from, so a
finished study can be re-priced without evaluating anything again. Neither torch nor pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autospikformer.energy.models import EnergyError, EnergyModel, EnergyTotals, PricedLayers

RECORD_VERSION = 1


@dataclass(frozen=True)
class EnergyMeasurement:
    """Per-layer counts and rates of one measurement (``input_rate`` NaN: a first conv counted
    once as MACs)."""

    time_steps: int
    event_data: bool
    images: int
    dense_macs: tuple[int, ...]
    neurons: tuple[int, ...]
    input_rate: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.dense_macs)
        if n == 0 or len(self.neurons) != n or len(self.input_rate) != n:
            raise EnergyError(
                f"energy record: {n} MAC counts, {len(self.neurons)} neuron counts and "
                f"{len(self.input_rate)} rates (expected one of each per layer)"
            )
        if isinstance(self.time_steps, bool) or int(self.time_steps) < 1:
            raise EnergyError(f"energy record: time_steps {self.time_steps!r} is not >= 1")

    @property
    def once(self) -> list[bool]:
        """Rows counted once as dense MACs: the first conv, unless the input is event data."""
        return [i == 0 and not self.event_data for i in range(len(self.dense_macs))]

    def price(self, model: EnergyModel) -> PricedLayers:
        return model.price(
            dense_macs=self.dense_macs,
            neurons=self.neurons,
            input_rate=self.input_rate,
            once=self.once,
            time_steps=self.time_steps,
        )

    def totals(self, model: EnergyModel) -> EnergyTotals:
        """Per-image totals under ``model``."""
        return self.price(model).totals()

    # --- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Compact and exact: floats keep every digit (JSON round-trips them)."""
        return {
            "v": RECORD_VERSION,
            "T": int(self.time_steps),
            "event": bool(self.event_data),
            "images": int(self.images),
            "macs": [int(m) for m in self.dense_macs],
            "neurons": [int(n) for n in self.neurons],
            "rates": [None if math.isnan(r) else float(r) for r in self.input_rate],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnergyMeasurement:
        if not isinstance(data, Mapping) or data.get("v") != RECORD_VERSION:
            raise EnergyError(
                f"energy record: not a version-{RECORD_VERSION} record (got {str(data)[:60]!r})"
            )
        try:
            return cls(
                time_steps=int(data["T"]),
                event_data=bool(data["event"]),
                images=int(data["images"]),
                dense_macs=tuple(int(m) for m in data["macs"]),
                neurons=tuple(int(n) for n in data["neurons"]),
                input_rate=tuple(math.nan if r is None else float(r) for r in data["rates"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnergyError(f"energy record: unreadable ({exc})") from None

    @classmethod
    def from_columns(
        cls,
        *,
        time_steps: int,
        event_data: bool,
        images: int,
        dense_macs: Sequence[float],
        neurons: Sequence[float],
        input_rate: Sequence[float],
    ) -> EnergyMeasurement:
        """From the columns of a per-layer table."""
        return cls(
            time_steps=int(time_steps),
            event_data=bool(event_data),
            images=int(images),
            dense_macs=tuple(int(m) for m in dense_macs),
            neurons=tuple(int(n) for n in neurons),
            input_rate=tuple(float(r) for r in input_rate),
        )
