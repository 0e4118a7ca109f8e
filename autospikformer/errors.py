"""The one base of every error the project raises for bad input or an unusable resource.

Each part has its own subclass (``DataError``, ``StudyError``, ``CheckpointError``, ...) whose
message is one line that names what is wrong and what to do; the CLI prints any of them as one
``error:`` line and exits non-zero, and prints a traceback only for a real bug.

:func:`error_line` is that rule in one place: besides the project's own errors it turns the
failures of the machine a command runs on (the file system, the database behind a storage, the
device's memory) into one line, so that no command shows a traceback for them.
"""

from __future__ import annotations

import difflib
import errno
import sys
from collections.abc import Iterable


class AutospikError(Exception):
    """Bad input or an unusable resource; the message is one line that says what to do."""


def did_you_mean(key: object, allowed: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the valid name nearest to a mistyped one ('' if none is)."""
    near = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _squash(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def database_error(exc: BaseException) -> BaseException | None:
    """The database driver's own error behind ``exc`` (SQLAlchemy's ``orig``, or the cause that
    Optuna's ``StorageInternalError`` hides behind its "exceeding max length" text), or None
    when ``exc`` is not a database error."""
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    optuna = sys.modules.get("optuna.exceptions")
    if optuna is not None and isinstance(exc, optuna.StorageInternalError):
        cause = exc.__cause__ or exc.__context__
        if cause is None or sqlalchemy is None or not isinstance(cause, sqlalchemy.SQLAlchemyError):
            return exc
        exc = cause
    if sqlalchemy is not None and isinstance(exc, sqlalchemy.SQLAlchemyError):
        return getattr(exc, "orig", None) or exc
    return None


def database_reason(exc: BaseException) -> str | None:
    """One line of the database's own words for ``exc`` (None: not a database error)."""
    orig = database_error(exc)
    if orig is None:
        return None
    text = str(orig).split("\n[SQL:")[0].split("(Background on this error at:")[0]
    first = next((line for line in text.splitlines() if line.strip()), "")  # drivers add advice
    reason = _squash(first, 240) or type(orig).__name__
    return f"{reason} ({type(orig).__module__.split('.')[0]}.{type(orig).__name__})"


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says that a disk (or the user's quota on it) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def error_line(exc: BaseException) -> str | None:
    """The one-line message for bad input or a failure of the environment; None for a bug.

    - an :class:`AutospikError`: its own message;
    - a file-system error (``OSError``): the path and the system's reason;
    - a database error behind a storage (SQLAlchemy, Optuna's storage errors): the database's
      own reason, with what to do for a read-only SQLite file;
    - running out of device memory (``torch.OutOfMemoryError``).
    """
    if isinstance(exc, AutospikError):
        return _squash(str(exc), 2000)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return (
            f"out of device memory ({_squash(str(exc), 160)}): lower the batch size "
            "(search.batch_size, --batch-size) or use a device with more memory"
        )
    reason = database_reason(exc)
    if reason is not None:
        if "readonly database" in reason or "read-only" in reason:
            return (
                f"the storage is read-only: {reason}; make the SQLite file and its folder "
                "writable, or pass another --storage"
            )
        return f"storage failed: {reason}"
    if isinstance(exc, OSError):
        what = exc.strerror or _squash(str(exc), 200) or type(exc).__name__
        paths = [p for p in (exc.filename, exc.filename2) if p is not None]
        where = " -> ".join(f"'{p}'" for p in paths)
        return f"{where}: {what}" if where else f"{what} ({type(exc).__name__})"
    return None
