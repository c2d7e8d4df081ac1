"""Kills a step's processes when the engine that started it dies.

The process sandbox has no namespace to collapse, and for an ordinary user bwrap's
``--die-with-parent`` reaches only bwrap itself: entering the user namespace clears the
parent-death signal of the sandbox's init, which sits in a session of its own. So this small
program, run as a file next to each step, holds the read end of a pipe whose write end only the
engine holds; the engine writes the PID of the sandbox's init on it as soon as bwrap reports it.
End of file means the engine is gone: the step's process group, that init (killing it ends the
whole PID namespace) and every process seen to descend from the step's first process are
killed. It also clears up after a first process that ends (or is
killed) before the rest, as a container's processes end with its main one, and then exits.

Each seen process is remembered with its start time, so a PID the system has since reused for
another process is never killed; the first process's own start time comes from the engine, so
once its PID belongs to another process the step counts as ended, and neither that process's
group nor its descendants are touched. Standard library only: it runs as
``python -I -S watchdog.py PGID [START]``, never imported.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

POLL_S = 0.5
FIRST_POLLS = 20  # the first polls come quickly: a sandbox's init appears just after the start
FIRST_POLL_S = 0.05


def _stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def _alive(pid: int, origin: bytes | None) -> bool:
    """Whether the process ``pid`` that started at ``origin`` still runs."""
    fields = _stat(pid)
    if fields is None or fields[0] == b"Z" or len(fields) < 20:
        return False
    return origin is None or fields[19] == origin


def _started(pid: int) -> bytes | None:
    """When ``pid`` started (clock ticks since boot): tells a process from a reused PID."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _descendants(root: int) -> dict[int, bytes]:
    """``root``'s descendants with their start times."""
    children: dict[int, list[tuple[int, bytes]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields is not None and len(fields) > 19:
            children.setdefault(int(fields[1]), []).append((int(name), fields[19]))
    found: dict[int, bytes] = {}
    todo = [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = started
                todo.append(pid)
    return found


def _marked(marker: str | None) -> list[int]:
    """Processes of this user with ``marker`` as a whole argument (a step's sandbox)."""
    if not marker:
        return []
    wanted = marker.encode()
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != os.getuid():
                continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if wanted in fh.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_all(
    pgid: int, seen: dict[int, bytes], origin: bytes | None = None, marker: str | None = None
) -> None:
    """SIGKILL the group, the first process's descendants and every process seen before.

    When ``pgid`` is another process's PID now, the step's group is empty (the kernel does not
    reuse a PID that still names a group) and that process's tree is not the step's.
    """
    now = _started(pgid)
    if now is None or origin is None or now == origin:
        seen = {**seen, **_descendants(pgid)}
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for pid, started in seen.items():
        if _started(pid) == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    for pid in _marked(marker):  # e.g. bwrap's init, orphaned when bwrap died with the engine
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def watch(pgid: int, fd: int = 0, origin: bytes | None = None, marker: str | None = None) -> None:
    """Kill the step of process group ``pgid`` when ``fd`` reaches end of file, then return.

    Lines read from ``fd`` name more processes to kill with the step (a sandbox's init).
    ``origin`` is the start time of the step's first process (read here when not given).
    """
    origin = origin or _started(pgid)
    seen: dict[int, bytes] = {}
    pending = b""
    polls = 0
    while True:
        polls += 1
        wait = FIRST_POLL_S if polls <= FIRST_POLLS else POLL_S
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                kill_all(pgid, seen, origin, marker)
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if line.strip().isdigit():
                    started = _started(int(line))
                    if started is not None:
                        seen[int(line)] = started
        if not _alive(pgid, origin):  # the engine lives: a retry may reuse the workspace
            kill_all(pgid, seen, origin)
            return
        seen.update(_descendants(pgid))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the engine's to handle
    start = sys.argv[2].encode() if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    watch(int(sys.argv[1]), 0, start, sys.argv[3] if len(sys.argv) > 3 else None)
