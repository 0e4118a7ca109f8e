"""The ``autospik`` typer app: one sub-command group per module of this package.

Command modules import torch and optuna inside their functions so that ``autospik --help`` is fast.
"""

from __future__ import annotations

import typer

from autospikformer.cli import analyze, energy, study, subnet, supernet
from autospikformer.cli.common import App

app = App(
    name="autospik",
    help="Auto-Spikformer: spiking-transformer architecture search with an accuracy/energy Pareto front.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(study.app, name="study")
app.add_typer(supernet.app, name="supernet")
app.add_typer(subnet.app, name="subnet")
app.command("energy")(energy.energy)
app.add_typer(analyze.app, name="analyze")


def _version(value: bool) -> None:
    if value:
        import importlib.metadata

        from autospikformer import __version__

        versions = {
            name: importlib.metadata.version(name) for name in ("torch", "spikingjelly", "optuna")
        }
        shown = ", ".join(f"{name} {v}" for name, v in versions.items())
        print(f"autospik {__version__} ({shown})")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version of autospik and of torch, spikingjelly and optuna, and exit.",
    ),
) -> None:
    """Auto-Spikformer: spiking-transformer architecture search with an accuracy/energy Pareto
    front."""
