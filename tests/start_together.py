"""Run one ``autospik`` command at a given moment, so that several processes hit a storage at once.

    python tests/start_together.py AT_EPOCH_SECONDS study create tiny.toml --storage URL

The process imports everything the command needs first (the CLI, Optuna, SQLAlchemy and the
database driver), then sleeps until ``AT_EPOCH_SECONDS`` (``time.time()``) and runs the command
in-process: N such processes started a few seconds ahead with the same moment reach the
database within a millisecond or so of each other, which a plain ``autospik`` start (a second
or more of imports, varying with the load) does not. Used by ``tests/test_concurrency.py`` and
``benchmarks/faults.py``.
"""

from __future__ import annotations

import contextlib
import sys
import time


def main() -> None:
    at, args = float(sys.argv[1]), sys.argv[2:]
    import optuna  # noqa: F401
    import sqlalchemy  # noqa: F401

    from autospikformer.cli.app import app

    with contextlib.suppress(ImportError):  # the PostgreSQL driver, where installed
        import psycopg2  # noqa: F401
    time.sleep(max(0.0, at - time.time()))
    app(args, prog_name="autospik")


if __name__ == "__main__":
    main()
