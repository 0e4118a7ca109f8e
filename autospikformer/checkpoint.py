"""Checkpoint files that survive a kill and refuse to load when damaged.

A checkpoint is an ordinary ``torch.save`` dict (``torch.load`` reads it), written atomically: the
bytes go to a temporary file in the same folder, are flushed and fsynced, and ``os.replace``
swaps the file in, so a kill during a write leaves the previous checkpoint intact. The dict
carries a SHA-256 ``checksum`` over its content: a truncated file fails to unpickle, and a file
whose tensor bytes were altered (which ``torch.load`` reads without complaint) fails the checksum.
Both give one :class:`CheckpointError` that names the file and says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKSUM_KEY = "checksum"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message is one line and names the file."""


def _feed(digest: Any, obj: Any) -> None:
    """Hash ``obj`` recursively: type tags, dict keys in order, tensor dtype/shape/bytes."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _feed(digest, value)
    else:
        digest.update(f"S{type(obj).__name__}:{obj!r};".encode())


def content_checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 of everything in ``payload`` except its own ``checksum`` entry."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``payload`` (plus its checksum) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(payload)
    data.pop(CHECKSUM_KEY, None)
    data[CHECKSUM_KEY] = content_checksum(data)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(
    path: str | Path, *, kind: str | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` for a missing, truncated, altered or foreign file, or one of
    another ``kind`` (e.g. a standalone model where a supernet is expected).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    advice = "delete it to start over, or restore a copy"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no index
        raise CheckpointError(
            f"checkpoint '{path}' is corrupted or truncated (not a complete torch zip archive); "
            f"{advice}"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # every unpickling failure means a damaged or foreign file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "Weights only load failed" in reason:
            raise CheckpointError(
                f"'{path}' holds Python objects other than tensors and plain data: not an "
                "autospikformer checkpoint (refused for safety)"
            ) from None
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise CheckpointError(
            f"checkpoint '{path}' is corrupted or truncated and cannot be read "
            f"({type(exc).__name__}: {reason}); {advice}"
        ) from None
    if not isinstance(data, dict) or CHECKSUM_KEY not in data:
        raise CheckpointError(
            f"'{path}' is not an autospikformer checkpoint (no '{CHECKSUM_KEY}' entry)"
        )
    if content_checksum(data) != data[CHECKSUM_KEY]:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupted: its content does not match its checksum; {advice}"
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(
            f"'{path}' holds a {data.get('kind', 'unknown')!r} checkpoint, expected {kind!r}"
        )
    return data
