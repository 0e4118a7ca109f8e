"""autospikformer: one-shot spiking-transformer architecture search (Auto-Spikformer).

The public names are imported lazily so that ``autospik --help`` and the search side do not pay
for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "Architecture": "autospikformer.search.architecture",
    "SearchSpace": "autospikformer.search.space",
    "SearchSpaceError": "autospikformer.search.space",
    "balanced_fitness": "autospikformer.search.fitness",
    "Spikformer": "autospikformer.model.spikformer",
    "SuperSpikformer": "autospikformer.model.supernet",
    "DSPSSampler": "autospikformer.search.dsps",
}

__all__ = [*sorted(_PUBLIC), "energy"]


def __getattr__(name: str) -> Any:
    if name == "energy":
        return importlib.import_module("autospikformer.energy")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'autospikformer' has no attribute {name!r}")
