"""Sub-commands of the ``autospik`` CLI, one module per concern."""
