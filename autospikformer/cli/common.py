"""What the CLI commands share: the console, one-line errors, and the options every command has.

Every command group is an :class:`App`, whose commands run under :func:`guard` as a whole: any
project error, file-system error, storage error or device-memory error a command meets is
printed as one ``error:`` line with a non-zero exit (:func:`autospikformer.errors.error_line`),
so no command needs its own ``try``; a traceback means a bug.
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from autospikformer.errors import AutospikError, error_line
from autospikformer.study.storage import DEFAULT_RUNS_DIR, DEFAULT_STORAGE

console = Console()
if not console.is_terminal:  # a log file: one line per message, not wrapped at 80 columns
    console.soft_wrap = True
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


class Format(enum.StrEnum):
    """How a listing is printed: a table for people, CSV or JSON for scripts."""

    table = "table"
    csv = "csv"
    json = "json"


FORMAT = typer.Option(
    Format.table,
    "--format",
    "-f",
    help="table (for people: accuracy in %, energy in a scaled unit), or csv / json for "
    "scripts (raw values: accuracy as a fraction in [0, 1], energy in mJ per image).",
)


def print_table(table: Any) -> None:
    """A rich table at its natural width, also when the output is a pipe (not cut at 80)."""
    from rich.measure import Measurement

    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update_width(10_000)
    Console(width=Measurement.get(console, wide, table).maximum).print(table)


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (anything else as text), for ``json.dumps``."""
    return value.item() if hasattr(value, "item") else str(value)


def emit(frame: Any, fmt: Format, table: Callable[[], Any]) -> None:
    """Print ``frame`` (raw values) as CSV or JSON, or the rich table ``table()`` builds."""
    if fmt is Format.csv:
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt is Format.json:  # every digit of a float (pandas' to_json keeps 15 at most)
        import json

        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        sys.stdout.write(json.dumps(records, indent=2, default=_plain) + "\n")
    else:
        print_table(table())


class CommandError(AutospikError):
    """A command-line value that cannot be used (the message names the option)."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit non-zero (the message escaped: it
    may name a user's folder such as ``train/[unlabelled]``)."""
    from rich.markup import escape

    line = escape(" ".join(str(message).split()))
    err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def guard(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func``; bad input or a failing environment becomes one ``error:`` line."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        fail(line)


def guarded(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` run under :func:`guard` (typer still reads ``func``'s own signature)."""

    if getattr(func, "__guarded__", False):
        return func

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> T:
        return guard(func, *args, **kwargs)

    command.__guarded__ = True  # type: ignore[attr-defined]
    return command


def _flag_without_type(display: Callable[..., str | None]) -> Callable[..., str | None]:
    """typer 0.29 prints ``<bool>`` beside every on/off flag in ``--help``; a flag takes no value."""

    @functools.wraps(display)
    def shown(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else display(self, ctx)

    return shown


typer.core.TyperOption.display_type_rich = _flag_without_type(  # type: ignore[method-assign]
    typer.core.TyperOption.display_type_rich
)


def help_text(doc: str | None) -> str | None:
    """A docstring as ``--help`` text: each paragraph one line, so that rich wraps it at the
    terminal's width (the source's line breaks would otherwise break lines mid-sentence)."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


class App(typer.Typer):
    """A typer app whose every command runs under :func:`guard`, also the commands of the
    groups added to it (even groups built as a plain ``typer.Typer``), with its docstring as
    :func:`help_text`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(func: Callable[..., T]) -> Callable[..., T]:
            options = dict(kwargs)
            options.setdefault("help", help_text(func.__doc__))
            super(App, self).command(*args, **options)(guarded(func))
            return func

        return decorator

    def add_typer(self, typer_instance: typer.Typer, *args: Any, **kwargs: Any) -> None:
        _guard_commands(typer_instance)
        super().add_typer(typer_instance, *args, **kwargs)


def _guard_commands(group: typer.Typer) -> None:
    for info in group.registered_commands:
        if info.callback is not None:
            if info.help is None:
                info.help = help_text(info.callback.__doc__)
            info.callback = guarded(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _guard_commands(sub.typer_instance)


def output_folder(path: Path, option: str = "--out") -> Path:
    """``path`` as a folder to write into, created if missing; a one-line error otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path}: a file is in the way (give a folder)")
    _make_folder(path, f"{option} {path}")
    return path


def output_file(path: Path, option: str = "--out") -> Path:
    """``path`` as a file to (over)write, its folder created if missing; a one-line error
    otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder (give a file name)")
    _make_folder(path.parent, f"{option} {path}")
    return path


def _make_folder(folder: Path, label: str) -> None:
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise CommandError(f"{label}: '{blocker}' is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f"{label}: cannot create folder '{folder}' ({exc.strerror}); choose a writable place"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{label}: folder '{folder}' is not writable; choose a writable place")


THREADS = typer.Option(
    None,
    "--threads",
    help="CPU threads for torch (default: torch's choice, or OMP_NUM_THREADS; spawned search "
    "workers split the cores). Idle threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set), "
    "so a busy CPU does not stall them.",
)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads in this process (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        fail(f"--threads: {threads} is not allowed (allowed: an integer >= 1)")
    from autospikformer.threads import set_torch_threads

    set_torch_threads(threads)
