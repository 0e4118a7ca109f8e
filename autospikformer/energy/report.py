"""The energy report of one architecture: the per-layer table, the totals, the ANN equivalent.

A report is one energy model applied to per-layer counts and input rates, either measured
(:class:`~autospikformer.energy.EnergyMeter`) or assumed (:func:`analytic_report`: every rate
the same). ``report.reprice(model)`` applies another model to the same rates, and
``report.measurement()`` is the compact form a trial stores so that this can happen later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from autospikformer.data.base import CIFAR10, DatasetInfo
from autospikformer.energy.counts import FIRST_CONV, count_parameters, layer_counts
from autospikformer.energy.measurement import EnergyMeasurement
from autospikformer.energy.models import EnergyModel
from autospikformer.search.architecture import Architecture

COUNT_COLUMNS = ("layer", "kind", "op", "counted", "dense_macs", "neurons")
COLUMNS = (
    "layer",
    "kind",
    "op",
    "counted",
    "dense_macs",
    "neurons",
    "input_rate",
    "ops",
    "compute_mj",
    "memory_mj",
    "energy_mj",
    "ann_mj",
)


def _clean(value: Any) -> Any:
    """JSON-safe scalar: numpy types to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class EnergyReport:
    """Per-layer table and per-image totals of one architecture's energy under one model.

    ``table`` columns (:data:`COLUMNS`): ``layer``, ``kind`` (conv | linear | matmul | head),
    ``op`` (MAC: the first conv counted once; AC otherwise), ``counted`` (``image-once`` or
    ``event-frames`` for the first conv, ``spikes`` for every other row), ``dense_macs`` and
    ``neurons`` (one image, one time step), ``input_rate`` (mean input value; NaN for a first
    conv counted once), ``ops`` (per image: SOPs, or MACs for a first conv counted once),
    ``compute_mj``, ``memory_mj`` and ``energy_mj`` (their sum) per image, and ``ann_mj``: the
    layer in the dense ANN equivalent (every MAC at E_MAC, T = 1, the same memory model).
    """

    table: pd.DataFrame
    energy_mj: float
    compute_mj: float
    memory_mj: float
    ann_energy_mj: float
    ann_compute_mj: float
    ann_memory_mj: float
    total_sops: float
    mean_firing_rate: float  # spikes / neuron-steps over every LIF output (NaN if not measured)
    num_parameters: int
    time_steps: int
    model: EnergyModel = field(default_factory=EnergyModel)
    event_data: bool = False
    images: int = 0  # images measured (0: analytic report)
    rate_override: float | None = None  # the forced input rate, if any
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ann_ratio(self) -> float:
        """This SNN's energy over its dense ANN equivalent's (below 1: the SNN is cheaper)."""
        return self.energy_mj / self.ann_energy_mj if self.ann_energy_mj else math.nan

    @property
    def first_conv_mj(self) -> float:
        return float(self.table.loc[self.table["layer"] == FIRST_CONV, "energy_mj"].sum())

    @property
    def first_conv_rule(self) -> str:
        """How the first row was counted: ``image-once`` or ``event-frames``."""
        return str(self.table["counted"].iloc[0])

    def measurement(self) -> EnergyMeasurement:
        """The counts and rates any model needs to price this measurement again."""
        return EnergyMeasurement.from_columns(
            time_steps=self.time_steps,
            event_data=self.event_data,
            images=self.images,
            dense_macs=self.table["dense_macs"],
            neurons=self.table["neurons"],
            input_rate=self.table["input_rate"],
        )

    def reprice(self, model: EnergyModel) -> EnergyReport:
        """The same measurement priced by ``model``."""
        return build_report(
            self.table,
            self.table["input_rate"].tolist(),
            time_steps=self.time_steps,
            model=model,
            event_data=self.event_data,
            mean_firing_rate=self.mean_firing_rate,
            num_parameters=self.num_parameters,
            images=self.images,
            rate_override=self.rate_override,
            extras=dict(self.extras),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the model, its constants, the totals, and one dict per layer."""
        constants = self.model.constants
        return {
            "energy_model": self.model.name,
            "constants": constants.to_dict(),
            "energy_mj": _clean(self.energy_mj),
            "compute_mj": _clean(self.compute_mj),
            "memory_mj": _clean(self.memory_mj),
            "ann_energy_mj": _clean(self.ann_energy_mj),
            "ann_compute_mj": _clean(self.ann_compute_mj),
            "ann_memory_mj": _clean(self.ann_memory_mj),
            "ann_ratio": _clean(self.ann_ratio),
            "total_sops": _clean(self.total_sops),
            "mean_firing_rate": _clean(self.mean_firing_rate),
            "num_parameters": int(self.num_parameters),
            "time_steps": int(self.time_steps),
            "event_data": bool(self.event_data),
            "first_conv": self.first_conv_rule,
            "images": int(self.images),
            "rate_override": self.rate_override,
            "e_mac_pj": constants.e_mac_pj,
            "e_ac_pj": constants.e_ac_pj,
            **{k: _clean(v) for k, v in self.extras.items()},
            "layers": [
                {k: _clean(v) for k, v in row.items()} for row in self.table.to_dict("records")
            ],
        }


def build_report(
    counts: Mapping[str, Sequence[Any]] | pd.DataFrame,
    rates: Sequence[float],
    *,
    time_steps: int,
    model: EnergyModel | None,
    event_data: bool,
    mean_firing_rate: float,
    num_parameters: int,
    images: int,
    rate_override: float | None,
    extras: dict[str, Any] | None = None,
) -> EnergyReport:
    """Price per-layer ``counts`` (columns ``layer, kind, op, counted, dense_macs, neurons``) at
    the input ``rates`` (one per row, in order) under ``model`` (None: ``sop-45nm``)."""
    model = model or EnergyModel()
    columns = {name: np.asarray(counts[name]) for name in COUNT_COLUMNS}
    once = columns["op"] == "MAC"
    rate = np.where(once, np.nan, np.asarray(rates, dtype=float))
    priced = model.price(
        dense_macs=columns["dense_macs"],
        neurons=columns["neurons"],
        input_rate=rate,
        once=once,
        time_steps=time_steps,
    )
    table = pd.DataFrame(
        {
            **columns,
            "input_rate": rate,
            "ops": priced.ops,
            "compute_mj": priced.compute_mj,
            "memory_mj": priced.memory_mj,
            "energy_mj": priced.energy_mj,
            "ann_mj": priced.ann_mj,
        },
        columns=list(COLUMNS),
    )
    totals = priced.totals()
    return EnergyReport(
        table=table,
        energy_mj=totals.energy_mj,
        compute_mj=totals.compute_mj,
        memory_mj=totals.memory_mj,
        ann_energy_mj=totals.ann_energy_mj,
        ann_compute_mj=totals.ann_compute_mj,
        ann_memory_mj=totals.ann_memory_mj,
        total_sops=float(priced.ops[~once].sum()),
        mean_firing_rate=mean_firing_rate,
        num_parameters=num_parameters,
        time_steps=time_steps,
        model=model,
        event_data=event_data,
        images=images,
        rate_override=rate_override,
        extras=extras or {},
    )


def analytic_report(
    arch: Architecture,
    *,
    rate: float,
    data: DatasetInfo = CIFAR10,
    model: EnergyModel | None = None,
) -> EnergyReport:
    """The report with every input rate set to ``rate`` (no model, no data), for inputs of
    ``data``'s shape (default: 3x32x32 images, 10 classes).

    For a static image the first conv is counted once as MACs and has no rate; for event data
    its input rate is ``rate`` too. ``rate=1`` is the upper bound for binary inputs
    (residual-stream and event counts can exceed 1).
    """
    counts = layer_counts(arch, data)
    return build_report(
        counts,
        [float(rate)] * len(counts),
        time_steps=arch.time_steps,
        model=model,
        event_data=data.event_based,
        mean_firing_rate=math.nan,
        num_parameters=count_parameters(arch, data),
        images=0,
        rate_override=float(rate),
    )


def estimate_energy_mj(
    arch: Architecture,
    *,
    rate: float,
    data: DatasetInfo = CIFAR10,
    model: EnergyModel | None = None,
) -> float:
    """Analytic energy per image (mJ) with every input rate = ``rate`` (budgets checked before
    evaluation): the same convention and model as the measured energy."""
    counts = layer_counts(arch, data)
    priced = (model or EnergyModel()).price(
        dense_macs=counts["dense_macs"],
        neurons=counts["neurons"],
        input_rate=[float(rate)] * len(counts),
        once=(counts["op"] == "MAC").to_numpy(),
        time_steps=arch.time_steps,
    )
    return priced.totals().energy_mj
