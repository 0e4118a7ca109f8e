"""Which process is doing what: a label that names a process on its machine, and whether a
process named so on this machine is still alive.

A trial records the label of the process that evaluates it, so a worker that starts on the same
machine can tell a trial whose process was killed (SIGKILL, out of memory, a lost terminal) from
one that another live worker is evaluating, and re-queue it at once instead of after the
heartbeat grace period. Processes in different PID namespaces (containers that share the host's
name) never count as the same machine: the label then names the namespace too.
"""

from __future__ import annotations

import os
import socket

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
