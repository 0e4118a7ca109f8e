"""`autospik supernet ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="supernet commands.", no_args_is_help=True)
