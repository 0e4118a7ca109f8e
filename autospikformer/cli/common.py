"""What the CLI commands share: the console, one-line errors, and the options every command has.

Every command group is an :class:`App`, whose commands run under :func:`guard` as a whole: any
project error, file-system error, storage error or device-memory error a command meets is
printed as one ``error:`` line with a non-zero exit (:func:`autospikformer.errors.error_line`),
so no command needs its own ``try``; a traceback means a bug. A command line that typer cannot
parse (``--trials 0``, ``--format xml``, an unknown option) is one ``error:`` line too, with
the allowed range or values (:func:`usage_line`).

Text reaches the terminal as written: the consoles do not read rich markup (a study named
``x[/y]`` or a path holding ``[bold]`` prints as it is), so a command that wants a style says so
with ``markup=True`` and escapes what it interpolates; help texts are escaped once, when a
command is registered.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import NoSuchOption, UsageError  # typer >= 0.26 carries its click

from autospikformer.errors import AutospikError, error_line
from autospikformer.study.storage import DEFAULT_RUNS_DIR, DEFAULT_STORAGE

console = Console(markup=False)
if not console.is_terminal:  # a log file: one line per message, not wrapped at 80 columns
    console.soft_wrap = True
err_console = Console(stderr=True, markup=False)

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
    Console(width=Measurement.get(console, wide, table).maximum, markup=False).print(table)


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


def print_error(message: str) -> None:
    """``error: message`` on one line of stderr, the message exactly as given."""
    line = escape(" ".join(str(message).split()))
    err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True, markup=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit non-zero (the message printed as
    written: it may name a user's folder such as ``train/[unlabelled]``)."""
    print_error(message)
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


# --- usage errors: typer's parsing, the project's one-line form ------------------------------
def _command_words(ctx: Any) -> str:
    """``autospik study run``: the command as the user typed it, whatever the program's name."""
    words = []
    while ctx is not None:
        if ctx.parent is not None:
            words.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["autospik", *reversed(words)])


def _allowed(param: Any) -> str | None:
    """What an option or argument accepts, from its declaration: the members of an enum, or a
    number with its range (``an integer >= 1``, ``an integer from 1 to 65535``)."""
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    kind = next((k for k in typing.get_args(kind) if k is not type(None)), kind)  # X | None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ", ".join(str(member.value) for member in kind)
    choices = getattr(getattr(param, "type", None), "choices", None)  # click's Choice
    if choices:
        return ", ".join(str(c) for c in choices)
    if kind not in (int, float):
        return None
    noun = "an integer" if kind is int else "a number"
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None and hi is not None:
        return f"{noun} from {lo} to {hi}"
    if lo is not None or hi is not None:
        return f"{noun} {'>=' if lo is not None else '<='} {lo if lo is not None else hi}"
    return noun


def _param_name(param: Any) -> str:
    longest = max(getattr(param, "opts", None) or [param.name], key=len)
    return longest if longest.startswith("-") else str(param.name).upper()


def _bad_value(exc: Any) -> tuple[bool, Any]:
    """The value typer refused (from its validation error), if it says."""
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        found = errors()
        if found and "input" in found[0]:
            return True, found[0]["input"]
    return False, None


def _shown(value: Any) -> str:
    text = str(value)
    try:
        float(text)
    except ValueError:
        return repr(text)
    return text


def usage_line(exc: Exception) -> str:
    """A command-line parse error (typer's ``UsageError`` family) as one line in the project's
    form: ``--trials: 0 is not allowed (allowed: an integer >= 1)``, ``autospik study list: no
    such option --bogus (allowed: --storage, --format, --help)``."""
    ctx = getattr(exc, "ctx", None)
    command = _command_words(ctx) if ctx is not None else "autospik"
    hint = f"see '{command} --help'"
    param = getattr(exc, "param", None)
    message = str(exc.format_message() if hasattr(exc, "format_message") else exc)
    if type(exc).__name__ == "BadOptionUsage":
        return f"option {exc.option_name} needs a value" + (f"; {hint}" if ctx else "")
    if type(exc).__name__ == "MissingParameter" and param is not None:
        kind = "option" if str(_param_name(param)).startswith("-") else "argument"
        return f"{command}: missing {kind} {_param_name(param)}; {hint}"
    if param is not None:
        known, value = _bad_value(exc)
        allowed = _allowed(param)
        if known:
            reason = f"allowed: {allowed}" if allowed else getattr(exc, "message", message)
            return f"{_param_name(param)}: {_shown(value)} is not allowed ({reason})"
        return f"{_param_name(param)}: {getattr(exc, 'message', message)}"
    if isinstance(exc, NoSuchOption):
        near = list(getattr(exc, "possibilities", None) or [])
        if near:
            return f"{command}: no such option {exc.option_name}; did you mean {near[0]}?"
        options = (
            [o for p in ctx.command.params for o in p.opts if o.startswith("--")] if ctx else []
        )
        listed = ", ".join([*options, "--help"])
        return f"{command}: no such option {exc.option_name} (allowed: {listed})"
    text = message.rstrip(".")
    if ctx is not None and hasattr(ctx.command, "list_commands") and "command" in text:
        text += f" (commands: {', '.join(ctx.command.list_commands(ctx))})"
    return f"{command}: {text[:1].lower()}{text[1:]}; {hint}"


@contextlib.contextmanager
def _usage_errors_as_one_line() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `autospik study`: the help, as asked
            raise
        print_error(usage_line(exc))
        raise typer.Exit(exc.exit_code) from None


class OneLineUsageGroup(typer.core.TyperGroup):
    """A command group whose command lines are parsed by typer as always, and whose parse
    errors are printed as one ``error:`` line (:func:`usage_line`) instead of a box."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_errors_as_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_as_one_line():
            return super().invoke(ctx)


#: help texts already escaped (an option declared once serves many commands)
_ESCAPED: set[int] = set()


def _escape_help(func: Callable[..., Any]) -> None:
    """Escape the help of ``func``'s typer options and arguments, each once: rich would read
    ``[energy]`` in a help text as markup and drop it."""
    for parameter in inspect.signature(func).parameters.values():
        info = parameter.default
        if isinstance(info, typer.models.ParameterInfo) and id(info) not in _ESCAPED:
            _ESCAPED.add(id(info))
            if info.help:
                info.help = escape(info.help)


class App(typer.Typer):
    """A typer app whose every command runs under :func:`guard`, also the commands of the
    groups added to it (even groups built as a plain ``typer.Typer``), with its docstring as
    :func:`help_text`; help texts are escaped, and parse errors are one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", OneLineUsageGroup)
        if kwargs.get("help"):
            kwargs["help"] = escape(kwargs["help"])
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(func: Callable[..., T]) -> Callable[..., T]:
            options = dict(kwargs)
            options.setdefault("help", help_text(func.__doc__))
            if options["help"]:
                options["help"] = escape(options["help"])
            _escape_help(func)
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
                doc = help_text(info.callback.__doc__)
                info.help = escape(doc) if doc else doc
            _escape_help(info.callback)
            info.callback = guarded(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _guard_commands(sub.typer_instance)


@contextlib.contextmanager
def writing_to(option: str, path: Path) -> Iterator[None]:
    """A file-system error in the block (writing below ``path``) names the option that gave
    the path: ``--out /proc/nope: '/proc/nope': No such file or directory``."""
    try:
        yield
    except OSError as exc:
        raise CommandError(f"{option} {path}: {error_line(exc)}") from None


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


def check_listen(host: str, port: int) -> None:
    """Refuse a ``--host`` / ``--port`` a server could not listen on (a name that does not
    resolve, a port in use), before the command says it listens; the server binds as here."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CommandError(f"--host {host}: cannot be resolved ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as wsgiref's server does
        try:
            sock.bind(address)
        except OSError as exc:
            raise CommandError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); pass another "
                "--port (or --host)"
            ) from None


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
