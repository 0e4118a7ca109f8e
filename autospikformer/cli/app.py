"""The ``autospik`` typer app: one sub-command group per module of this package.

Command modules import torch and optuna inside their functions so that ``autospik --help`` is fast.
"""

from __future__ import annotations

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
