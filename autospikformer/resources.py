"""Where the shipped study and search-space files live (source checkout or installed wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


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


def read_toml(
    name_or_path: str | Path, presets: Path, *, error: type[Exception], unknown: str, kind: str
) -> tuple[Path, dict[str, Any]]:
    """Read a ``.toml`` path, or the preset ``presets/<name>.toml``; every failure is ``error``.

    ``unknown`` is the message for a name that is neither a file nor a preset; ``kind`` names
    the file in the "does not exist" message.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = presets / f"{name_or_path}.toml"
        if not path.is_file():
            raise error(unknown)
    if not path.is_file():
        raise error(f"{kind} file {str(path)!r} does not exist")
    try:
        return path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None
