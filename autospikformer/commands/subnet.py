"""`autospik subnet ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="subnet commands.", no_args_is_help=True)
