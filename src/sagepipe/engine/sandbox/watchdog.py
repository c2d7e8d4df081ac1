"""Kills a step's process group when the engine that started it dies (the process sandbox).

bwrap has ``--die-with-parent``; the process sandbox has no namespace to collapse, so this
small program, run as a file next to each step, holds the read end of a pipe whose write end
only the engine holds. End of file without a word means the engine is gone: the step's whole
process group is killed. It exits on its own once the step's first process has ended.

Standard library only: it runs as ``python -I -S watchdog.py PGID``, never imported.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

POLL_S = 0.5


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] != b"Z"


def watch(pgid: int, fd: int = 0) -> None:
    """Kill process group ``pgid`` when ``fd`` reaches end of file; return when it is over."""
    while _alive(pgid):
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 1):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
            return


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the engine's to handle
    watch(int(sys.argv[1]))
