"""Data sets read from local files: ``loading`` builds any split; ``images`` and ``events`` hold the sets."""
