"""The step watchdog, run as the engine runs it, against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from sagepipe.engine.liveness import start_time
from sagepipe.engine.sandbox.base import WATCHDOG


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process group that is no step's: a shell leading its group, with a child."""
    proc = subprocess.Popen(["sh", "-c", "sleep 120 & wait"], start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _group(pgid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                found.append(int(name))
    return found


@pytest.fixture
def watchdog() -> Iterator[Callable[[int, int], subprocess.Popen[bytes]]]:
    """Starts the watchdog as ``popen`` does, for a group and its first process's start."""
    dogs: list[subprocess.Popen[bytes]] = []

    def start(pgid: int, started: int) -> subprocess.Popen[bytes]:
        dog = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WATCHDOG), str(pgid), str(started)],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        dogs.append(dog)
        return dog

    yield start
    for dog in dogs:
        if dog.poll() is None:
            dog.kill()
        dog.wait()
        if dog.stdin is not None:
            dog.stdin.close()


def test_a_reused_pid_is_not_the_step(
    bystander: subprocess.Popen[bytes], watchdog: Callable[[int, int], subprocess.Popen[bytes]]
) -> None:
    """The step's first process ended and its PID went to another process group: the
    watchdog sees the step gone and kills nothing of the group that took the PID over."""
    started = start_time(bystander.pid)
    assert started is not None
    while len(_group(bystander.pid)) < 2:
        pass  # the shell has started its child
    dog = watchdog(bystander.pid, started - 1)  # the step started one tick earlier
    assert dog.wait(30) == 0
    assert len(_group(bystander.pid)) == 2


def test_an_engine_gone_after_reuse_kills_nothing_of_the_other_group(
    bystander: subprocess.Popen[bytes], watchdog: Callable[[int, int], subprocess.Popen[bytes]]
) -> None:
    started = start_time(bystander.pid)
    assert started is not None
    while len(_group(bystander.pid)) < 2:
        pass
    dog = watchdog(bystander.pid, started - 1)
    assert dog.stdin is not None
    dog.stdin.close()  # the engine is gone
    assert dog.wait(30) == 0
    assert len(_group(bystander.pid)) == 2


def test_the_step_it_started_with_is_killed_when_the_engine_goes(
    bystander: subprocess.Popen[bytes], watchdog: Callable[[int, int], subprocess.Popen[bytes]]
) -> None:
    started = start_time(bystander.pid)
    assert started is not None
    while len(_group(bystander.pid)) < 2:
        pass
    dog = watchdog(bystander.pid, started)
    assert dog.stdin is not None
    dog.stdin.close()
    assert dog.wait(30) == 0
    assert bystander.wait(30) == -signal.SIGKILL
    assert _group(bystander.pid) == []
