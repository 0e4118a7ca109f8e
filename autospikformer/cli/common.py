"""What the CLI commands share: the console, one-line errors, and the options every command has."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from autospikformer.study.storage import DEFAULT_RUNS_DIR, DEFAULT_STORAGE

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

STORAGE = typer.Option(
    DEFAULT_STORAGE,
    "--storage",
    "-s",
    help="Optuna RDB storage URL (SQLite file, or e.g. postgresql+psycopg2://user:pw@host/db).",
)
RUNS_DIR = typer.Option(
    Path(DEFAULT_RUNS_DIR),
    "--runs-dir",
    help="Folder for per-study outputs: <runs-dir>/<study>/supernet.pt, export/.",
)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guard(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` and turn any :class:`~autospikformer.errors.AutospikError` into one line."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from autospikformer.errors import AutospikError

    try:
        return func(*args, **kwargs)
    except AutospikError as exc:
        fail(" ".join(str(exc).split()))


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        fail(f"--threads: {threads} is not allowed (allowed: an integer >= 1)")
    import torch

    torch.set_num_threads(threads)
