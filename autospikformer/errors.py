"""The one base of every error the project raises for bad input or an unusable resource.

Each part has its own subclass (``DataError``, ``StudyError``, ``CheckpointError``, ...) whose
message is one line that names what is wrong and what to do; the CLI prints any of them as one
``error:`` line and exits non-zero, and prints a traceback only for a real bug.
"""

from __future__ import annotations


class AutospikError(Exception):
    """Bad input or an unusable resource; the message is one line that says what to do."""
