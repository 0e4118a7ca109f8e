"""``python -m autospikformer.cli`` (and ``torchrun ... -m autospikformer.cli``) runs the CLI."""

from autospikformer.cli.app import app

app()
