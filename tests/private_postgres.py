"""A throw-away PostgreSQL server to break on purpose: restart it, stop it, start it again.

The shared server on port 5432 must never be restarted, so the outage tests and
``benchmarks/faults.py`` start their own: ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package, which ``.ci/run`` installs) into
a temporary folder, on a free port of 127.0.0.1, with trust authentication for the role
``autospik``. ``pg_ctl`` refuses to run as root, so as root the server runs as the ``postgres``
user (``runuser``), which owns the folder. :func:`unavailable` says why no server can be
started here (tests skip with that reason).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER_USER = "postgres"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: Path(p).parts)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def unavailable() -> str | None:
    """Why a private server cannot be started on this machine, or None when it can."""
    if _bin_dir() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    if _as_root():
        if shutil.which("runuser") is None:
            return "running as root without runuser: pg_ctl refuses root"
        try:
            import pwd

            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no '{SERVER_USER}' user to run the server"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One private PostgreSQL server; :attr:`url` is its ``autospik`` database."""

    def __init__(self) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"cannot start a private PostgreSQL server: {reason}")
        self.bin = _bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="autospik-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://autospik@127.0.0.1:{self.port}/autospik"
        if _as_root():
            import pwd

            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "autospik", "--auth=trust", "-E", "UTF8")
        self.start()
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="autospik", dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE autospik")
        con.close()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if _as_root():
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-500:]} {done.stderr[-500:]}")

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        """Stop at once: open connections are terminated (``-m fast``)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> float:
        """Stop and start again (``-m fast``); returns the seconds it took."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-m", "fast", "-w", "restart")  # fmt: skip
        return time.monotonic() - started

    def running(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError):
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
