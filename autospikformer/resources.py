"""Where the shipped study and search-space files live (source checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path


def studies_dir() -> Path:
    """The ``studies/`` folder: beside the package in a checkout, inside it in a wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_studies", package.parent / "studies"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "the autospikformer presets folder 'studies/' is missing; reinstall the package"
    )


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets: ``kind`` is 'spaces' or 'studies'."""
    folder = studies_dir() / "spaces" if kind == "spaces" else studies_dir()
    return sorted(p.stem for p in folder.glob("*.toml"))
