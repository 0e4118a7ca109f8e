"""The ``autospik`` command line: the typer app (``app``) and one module per command group."""
