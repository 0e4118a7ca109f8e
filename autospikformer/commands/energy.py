"""`autospik energy`: the per-layer energy report of one architecture."""

from __future__ import annotations


def energy() -> None:
    """Print the per-layer energy table of an architecture."""
    raise NotImplementedError
