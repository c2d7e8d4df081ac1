"""An engine is told alive by its PID and its start time, so a reused PID is not mistaken."""

from __future__ import annotations

import subprocess
import sys

from sagepipe.engine.liveness import is_alive, start_time, this_process


def test_this_process_is_alive() -> None:
    pid, started = this_process()
    assert started > 0
    assert is_alive(pid, started)


def test_the_same_pid_with_another_start_time_is_not_the_engine() -> None:
    pid, started = this_process()
    assert not is_alive(pid, started + 1)


def test_an_exited_process_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = start_time(proc.pid)
    proc.wait()
    assert started is None or not is_alive(proc.pid, started)
    assert start_time(proc.pid) is None
