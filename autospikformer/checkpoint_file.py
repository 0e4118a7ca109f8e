"""Checkpoint files that survive a kill and refuse to load when damaged.

A checkpoint is an ordinary ``torch.save`` dict (``torch.load`` reads it), written atomically: the
bytes go to a temporary file in the same folder, are flushed and fsynced, and ``os.replace``
swaps the file in, so a kill during a write leaves the previous checkpoint intact. The dict
carries a SHA-256 ``checksum`` over its content: a truncated file fails to unpickle, and a file
whose tensor bytes were altered (which ``torch.load`` reads without complaint) fails the checksum.
Both give one :class:`CheckpointError` that names the file and says what to do. Every file of
tensors the project writes (supernets, standalone models, trained subnets) goes through
:func:`save_checkpoint`; :mod:`autospikformer.checkpoint` turns them back into models.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from autospikformer.errors import AutospikError
from autospikformer.processes import alive

CHECKSUM_KEY = "checksum"
FORMAT_VERSION = 1


class CheckpointError(AutospikError, ValueError):
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


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{socket.gethostname()}."


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the partial files that writers of ``path`` killed mid-write left beside it.

    A temporary file is named after its writer (``.<name>.<pid>@<host>.<random>.tmp``): one of
    this host whose process is gone is removed, one of a live process or another host is kept
    (a shared folder). Files without a writer's name (older versions) go after an hour.
    Returns the removed paths.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)@(.+)\.)?[A-Za-z0-9_]+\.tmp")
    host = socket.gethostname()
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid, writer_host = match.group(1), match.group(2)
        if pid is None:
            stale = False
            with contextlib.suppress(OSError):
                stale = time.time() - candidate.stat().st_mtime > 3600
            if not stale:
                continue
        elif writer_host != host or alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``payload`` (plus its checksum) to ``path`` atomically; returns the path.

    Partial files of earlier writers killed mid-write are removed first
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    data = dict(payload)
    data.pop(CHECKSUM_KEY, None)
    data[CHECKSUM_KEY] = content_checksum(data)
    fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
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


_ADVICE = "delete it to start over, or restore a copy"
_WHERE = (
    "checkpoints are the .pt files 'autospik supernet train' and 'autospik subnet export' write"
)


def _not_an_archive(path: Path, head: bytes) -> str:
    """Why a file that is not a zip archive is not a checkpoint, in one line."""
    if head.startswith(b"PK\x03\x04"):  # the start of a zip archive without its end
        return (
            f"checkpoint '{path}' is corrupted or truncated (an incomplete torch zip archive); "
            f"{_ADVICE}"
        )
    if not head:
        return f"checkpoint '{path}' is corrupted or truncated (empty: 0 bytes); {_ADVICE}"
    try:
        head.decode("utf-8")
        text = b"\x00" not in head
    except UnicodeDecodeError:
        text = False
    if text:
        kind = {".toml": "TOML", ".json": "JSON", ".csv": "CSV"}.get(path.suffix.lower(), "text")
        return f"'{path}' is a {kind} file, not a checkpoint ({_WHERE})"
    return f"'{path}' is not a checkpoint (not a torch zip archive; {_WHERE})"


def read_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Unpickle a checkpoint file (tensors and plain data only), without verifying it.

    Raises :class:`CheckpointError` for a missing, truncated or foreign file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file ({_WHERE})")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise CheckpointError(f"checkpoint '{path}' cannot be read: {exc.strerror}") from None
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no index
        raise CheckpointError(_not_an_archive(path, head))
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
            f"({type(exc).__name__}: {reason}); {_ADVICE}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"'{path}' is not an autospikformer checkpoint (not a dict)")
    return data


def verify_checkpoint(data: dict[str, Any], path: str | Path, *, kind: str | None = None) -> None:
    """Refuse checkpoint content without a checksum, with a wrong one, or of another ``kind``."""
    if CHECKSUM_KEY not in data:
        raise CheckpointError(
            f"'{path}' is not an autospikformer checkpoint (no '{CHECKSUM_KEY}' entry)"
        )
    if content_checksum(data) != data[CHECKSUM_KEY]:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupted: its content does not match its checksum; {_ADVICE}"
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(
            f"'{path}' holds a {data.get('kind', 'unknown')!r} checkpoint, expected {kind!r}"
        )


def load_checkpoint(
    path: str | Path, *, kind: str | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` for a missing, truncated, altered or foreign file, or one of
    another ``kind`` (e.g. a standalone model where a supernet is expected).
    """
    data = read_checkpoint(path, map_location=map_location)
    verify_checkpoint(data, path, kind=kind)
    return data
