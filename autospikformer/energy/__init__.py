"""Energy accounting (SPEC sections 4 and 4b): what one image's inference costs, per layer.

- ``counts``: the counted layers of an architecture, their dense MACs and neurons from the shapes
  (``dense_macs``, ``layer_counts``, ``count_parameters``);
- ``models``: the energy models (``"sop-45nm"``, ``"memory-45nm"``), their constants as data
  (``EnergyModel``, ``EnergyConstants``) and their formulas;
- ``meter``: ``EnergyMeter``, the rates measured by forward hooks during an evaluation pass
  (``EmbedRows``: SPS's share of a pass, measured once per embed dim and time steps);
- ``report``: ``EnergyReport`` (the per-layer table, the totals, the dense ANN equivalent),
  ``analytic_report`` and ``estimate_energy_mj`` (every rate assumed);
- ``measurement``: ``EnergyMeasurement``, what one evaluation measured per layer, in the compact
  form a trial stores so that re-pricing needs no evaluation.

Names are imported lazily, so that the search side (study files, samplers) can use the models
without importing torch. See ``docs/energy.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "FIRST_CONV": "counts",
    "KERNEL": "counts",
    "Layer": "counts",
    "counted_layers": "counts",
    "count_parameters": "counts",
    "dense_macs": "counts",
    "layer_counts": "counts",
    "DEFAULT_MODEL": "models",
    "E_AC_PJ": "models",
    "E_MAC_PJ": "models",
    "MODEL_NAMES": "models",
    "PJ_TO_MJ": "models",
    "EnergyConstants": "models",
    "EnergyError": "models",
    "EnergyModel": "models",
    "EnergyTotals": "models",
    "EnergyMeter": "meter",
    "EmbedRows": "meter",
    "COLUMNS": "report",
    "EnergyReport": "report",
    "analytic_report": "report",
    "estimate_energy_mj": "report",
    "EnergyMeasurement": "measurement",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
