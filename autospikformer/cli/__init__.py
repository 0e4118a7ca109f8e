"""The ``autospik`` command line: the typer app (``app``) and one module per command group.

OpenMP's passive wait policy is set here, before any command imports torch
(:mod:`autospikformer.threads`): every command, a ``torchrun`` of the CLI and the search workers
it spawns wait for work without spinning.
"""

from autospikformer.threads import passive_waits

passive_waits()
