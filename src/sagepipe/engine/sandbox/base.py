"""What a step launch is made of, and what every sandbox offers."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from dataclasses import field
from pathlib import Path
from typing import IO, Protocol

from sagepipe.engine.sandbox.limits import Limits
from sagepipe.errors import ConfigError
from sagepipe.records import record

log = logging.getLogger(__name__)
CONTAINER_ROOT = "/opt/ml"
WATCHDOG = Path(__file__).with_name("watchdog.py")
# The programs that run inside a step (sagepipe/container), and where a step sees them.
PROGRAMS = Path(__file__).resolve().parents[2] / "container"
PROGRAMS_MOUNT = "/opt/sagepipe"
# Folders that are never bound whole as a step's runtime: the system runtime is bound already,
# and the others hold far more than one runtime (homes, the whole disk).
_NOT_A_RUNTIME = frozenset(
    Path(p)
    for p in ("/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/home", "/root", "/tmp")
)


@record(frozen=False)
class LaunchSpec:
    """What to run and what it may see."""

    argv: list[str]
    env: dict[str, str]
    workspace: Path
    cwd: str = CONTAINER_ROOT
    network: bool = True
    runtime: list[Path] = field(default_factory=list)
    limits: Limits | None = None


class Sandbox(Protocol):
    """Starts a step's process in its own process group."""

    name: str

    def launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start the process; the caller owns its process group."""
        ...

    def container_path(self, value: str, workspace: Path) -> str:
        """How the process sees a container path (or a string holding one)."""
        ...

    def program(self, name: str) -> str:
        """Where the step sees the sagepipe container program ``name`` (a file name)."""
        ...


def popen(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    stdout: int | IO[bytes],
    stderr: int | IO[bytes],
    stdin: int = subprocess.DEVNULL,
    pass_fds: tuple[int, ...] = (),
    watch: bool = True,
    marker: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a step's ``argv`` in a new session (its own process group), watched at once.

    The watchdog starts before anything else can happen (a held sandbox, limits, a network
    hand-shake), so an engine killed at any point after this leaves no step process behind.
    """
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot start {argv[0]!r}: {exc.strerror}") from None
    if watch:
        watch_group(proc.pid, marker)
    return proc


def runtime_paths(command: str) -> list[Path]:
    """Folders a step's runtime command needs: its prefix (a virtualenv) and the real binary's.

    ``/x/venv/bin/python`` needs ``/x/venv`` and, through its symlink, the base interpreter's
    prefix. System folders are left out: the sandbox binds the system runtime anyway.
    """
    exe = Path(command)
    if not exe.is_absolute():
        return []
    out: list[Path] = []
    for binary in _link_chain(exe):
        prefix = binary.parent.parent
        if prefix in _NOT_A_RUNTIME or prefix in out or not prefix.is_dir():
            continue
        if any(_under(prefix, p) for p in (Path("/usr"), Path("/etc"))):
            continue
        out.append(prefix)
    return out


def _link_chain(exe: Path, hops: int = 8) -> list[Path]:
    """``exe``, each symlink it goes through, and the real binary.

    A derived environment's python links to its base environment's, which links to the
    interpreter: every hop's folder must be visible for the chain to resolve in the sandbox.
    """
    chain = [exe]
    current = exe
    for _ in range(hops):
        if not current.is_symlink():
            break
        target = Path(os.readlink(current))
        current = Path(os.path.normpath(current.parent / target))
        chain.append(current)
    chain.append(exe.resolve())
    return chain


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}  # process group -> its watchdog
_WATCHDOGS_LOCK = threading.Lock()


def watch_group(pgid: int, marker: str | None = None) -> None:
    """Start the watchdog that kills process group ``pgid`` if this process dies first.

    ``marker``, an argument only this step's sandbox has on its command line (its workspace),
    also finds a sandbox process that left the group and its parent (bwrap's init).
    """
    # Read before this process reaps the child, so the PID is still the step's (a zombie too).
    started = _start_ticks(pgid) or ["-"]
    try:
        dog = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                str(WATCHDOG),
                str(pgid),
                *started,
                *([marker] if marker else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("no watchdog for step process %d: %s", pgid, exc)
        return

    with _WATCHDOGS_LOCK:
        _WATCHDOGS[pgid] = dog

    def reap() -> None:  # the watchdog ends with the step; the pipe's write end with it
        dog.wait()
        with _WATCHDOGS_LOCK:
            if _WATCHDOGS.get(pgid) is dog:
                del _WATCHDOGS[pgid]
            if dog.stdin is not None:
                dog.stdin.close()

    threading.Thread(target=reap, name=f"sagepipe-watchdog-{pgid}", daemon=True).start()


def also_watch(pgid: int, pid: int) -> None:
    """Tell the watchdog of process group ``pgid`` to kill ``pid`` too (a sandbox's init that
    sits in a session of its own)."""
    with _WATCHDOGS_LOCK:
        dog = _WATCHDOGS.get(pgid)
        if dog is None or dog.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            dog.stdin.write(f"{pid}\n".encode())
            dog.stdin.flush()


def _start_ticks(pid: int) -> list[str]:
    """``[start time]`` of process ``pid`` in clock ticks (zombies included), or ``[]``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []
    return [fields[19].decode()] if len(fields) > 19 else []
