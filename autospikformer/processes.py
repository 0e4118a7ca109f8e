"""Which process is doing what: a label that names a process on its machine, whether a process
named so on this machine is still alive, and a child that ends with the process that started it.

A trial records the label of the process that evaluates it, so a worker that starts on the same
machine can tell a trial whose process was killed (SIGKILL, out of memory, a lost terminal) from
one that another live worker is evaluating, and re-queue it at once instead of after the
heartbeat grace period; and a command counts the trials that its own workers completed. Processes
in different PID namespaces (containers that share the host's name) never count as the same
machine: the label then names the namespace too.

A worker process whose command was killed must not go on searching on its own (an orphan under
PID 1 that a rerun would count as its own): :func:`on_parent_exit` tells it when the command is
gone. Commands that write the same folder at once (two runs of one study exporting it) take
turns: :func:`folder_lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

#: The inode of Linux's initial PID namespace (``PROC_PID_INIT_INO``).
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (macOS): one namespace per machine
        return _INITIAL_PID_NAMESPACE


def machine_label() -> str:
    """This machine's name, with the PID namespace when it is not the machine's own."""
    host = socket.gethostname()
    namespace = _pid_namespace()
    return host if namespace == _INITIAL_PID_NAMESPACE else f"{host}~{namespace}"


def process_label(pid: int | None = None) -> str:
    """``machine:pid`` of this process (or of ``pid`` on this machine)."""
    return f"{machine_label()}:{os.getpid() if pid is None else pid}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def dead_here(label: object) -> bool:
    """True when ``label`` (a :func:`process_label`) names a process of this machine that is
    gone; False for a live one, one of another machine or namespace, or anything unreadable."""
    if not isinstance(label, str):
        return False
    machine, _, pid = label.rpartition(":")
    if machine != machine_label() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not alive(int(pid))


def on_parent_exit(stop: Callable[[], None]) -> bool:
    """Call ``stop`` once the process that started this one (a ``multiprocessing`` child) has
    ended, however it ended (SIGKILL and out-of-memory kills included); False when this process
    has no such parent.

    A thread waits on the parent's sentinel, a pipe that the kernel closes when the parent
    ends, so the parent is seen gone at once, on every system, and also when it ended before
    this call. ``stop`` runs in that thread: it should only ask the process to stop (the worker
    finishes its current trial, so that no evaluation is thrown away, and starts no other).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return False

    def wait() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        stop()

    threading.Thread(target=wait, name="autospik-parent-watch", daemon=True).start()
    return True


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (an existing folder) while the block runs: other
    processes of this machine that ask for the same folder wait. The lock is taken on the
    folder itself (``flock``), so no lock file is left behind, and it goes with the process
    however it ends."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
