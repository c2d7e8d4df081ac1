"""Whether the process that runs an execution is still there, told by PID and start time.

A PID alone is not enough: the kernel reuses it. The start time (in clock ticks since boot,
field 22 of ``/proc/<pid>/stat``) tells a reused PID apart from the recorded process.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # a zombie has exited already
    return int(fields[19])


def this_process() -> tuple[int, int]:
    """This process's PID and start time."""
    pid = os.getpid()
    return pid, start_time(pid) or 0


def is_alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs."""
    return start_time(pid) == started
