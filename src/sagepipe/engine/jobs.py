"""Run a job's process: stream its output to the step log, enforce its maximum runtime."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from sagepipe.config import Settings
from sagepipe.engine.context import Processes, StepContext
from sagepipe.engine.retries import CAPACITY_ERROR, JOB_INTERNAL_ERROR, LaunchFault
from sagepipe.engine.sandbox import LaunchSpec, Limits, runtime_paths
from sagepipe.errors import ConfigError
from sagepipe.images import Environment
from sagepipe.records import record

KILL_GRACE_S = 5.0
_ERROR_WORDS = re.compile(
    r"\b(error|cannot|can't|failed|denied|not found|no such|fatal|killed)\b", re.IGNORECASE
)


@record
class JobResult:
    """How the process ended, and its peak resident memory (KiB, sandbox included)."""

    returncode: int
    last_error: str | None
    timed_out: bool
    stopped: bool
    peak_rss_kb: int = 0


def base_env(
    environment: Environment, extra: dict[str, str], host: Mapping[str, str]
) -> dict[str, str]:
    """A minimal environment: no host credentials, the environment's ``bin`` first on PATH.

    ``host`` is the settings' view of the engine's environment (``Settings.env``); only its
    PATH, locale and time zone pass to the step.
    """
    path = host.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {
        "PATH": f"{environment.python.parent}:{path}",
        "HOME": "/tmp",
        "LANG": host.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key in ("TZ", "LC_ALL"):
        if key in host:
            env[key] = host[key]
    env.update(extra)
    return env


def job_spec(
    settings: Settings,
    argv: list[str],
    env: dict[str, str],
    workspace: Path,
    cwd: str,
    network: bool,
    environment: Environment,
    limits: Limits | None = None,
) -> LaunchSpec:
    """A step's launch: its environment's folders visible, its instance type's limits.

    An image environment shows its prefix and its base interpreter's installation; a command
    standing for an image shows that command's folders and the host interpreter's (its
    ``{python}``).
    """
    commands = [str(environment.python)]
    if environment.kind == "command":
        commands = [environment.command[0] if environment.command else "", settings.python]
    folders: list[Path] = []
    for command in commands:
        found = shutil.which(command) if command and "/" not in command else command
        for folder in runtime_paths(found or ""):
            if folder not in folders:
                folders.append(folder)
    return LaunchSpec(
        argv, env, workspace, cwd=cwd, network=network, runtime=folders, limits=limits
    )


def run_job(
    ctx: StepContext,
    spec: LaunchSpec,
    max_runtime: float | None,
    go: dict[str, Any] | None = None,
) -> JobResult:
    """Launch ``spec`` in the context's sandbox (or start the warm process with ``go``) and wait."""
    procs = ctx.processes
    if procs.stopping.is_set():  # stopped while the step staged its inputs: never start it
        result = JobResult(-signal.SIGTERM, None, False, True)
        ctx.job_result = result
        return result
    proc = ctx.warm.proc if ctx.warm is not None and go is not None else _launch(ctx, spec)
    waiter = _Waiter(proc)
    with procs.lock:
        procs.running[proc] = waiter.done
        # A stop between the check above and here found no process to stop: stop it now.
        late = procs.stopping.is_set()
    if late:
        threading.Thread(target=kill_group, args=(proc, KILL_GRACE_S, waiter.done)).start()
    errors: deque[str] = deque(maxlen=50)
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, ctx, None), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, ctx, errors), daemon=True),
    ]
    for t in readers:
        t.start()
    if ctx.warm is not None and go is not None:
        with contextlib.suppress(OSError):  # a launcher that died says why in its output
            ctx.warm.go(go)
    timed_out = False
    try:
        if not waiter.done.wait(max_runtime):
            timed_out = True
            kill_group(proc, done=waiter.done)
            waiter.done.wait()
    finally:
        with procs.lock:
            procs.running.pop(proc, None)
    for t in readers:
        t.join()
    result = JobResult(
        waiter.returncode,
        failure_cause(errors),
        timed_out,
        procs.stopping.is_set(),
        waiter.peak_rss_kb,
    )
    ctx.job_result = result
    return result


def _launch(ctx: StepContext, spec: LaunchSpec) -> subprocess.Popen[bytes]:
    """Start the step's process; a sandbox that cannot start is a platform fault."""
    try:
        return ctx.sandbox.launch(spec, subprocess.PIPE, subprocess.PIPE)
    except ConfigError as exc:
        raise LaunchFault(
            JOB_INTERNAL_ERROR, f"InternalServerError: the step's sandbox did not start: {exc}"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.ENOMEM):
            raise LaunchFault(
                CAPACITY_ERROR,
                f"CapacityError: this machine could not start the step's process: {exc.strerror}",
            ) from None
        raise LaunchFault(
            JOB_INTERNAL_ERROR, f"InternalServerError: the step's process did not start: {exc}"
        ) from None


class _Waiter:
    """Waits for the process and samples its tree's memory high-water mark meanwhile.

    wait4's ru_maxrss is no use here: a forked child starts with its parent's high-water mark,
    so every step would report at least the engine's own size. VmHWM in /proc belongs to each
    process's own address space; its sum over the tree, sampled, is the step's peak.
    """

    def __init__(self, proc: subprocess.Popen[bytes], interval: float = 0.1) -> None:
        self.proc = proc
        self.done = threading.Event()
        self.returncode = -1
        self.peak_rss_kb = 0
        self.interval = interval
        threading.Thread(target=self._wait, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _wait(self) -> None:
        self.returncode = self.proc.wait()
        self.done.set()

    def _sample(self) -> None:
        while True:
            total = sum(_hwm_kb(pid) for pid in _tree(self.proc.pid))
            self.peak_rss_kb = max(self.peak_rss_kb, total)
            if self.done.wait(self.interval):
                return


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc children lists)."""
    out, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        out.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as fh:
                frontier.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pump(stream: IO[bytes] | None, ctx: StepContext, keep: deque[str] | None) -> None:
    if stream is None:
        return
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        ctx.log.write(line)
        if keep is not None and line.strip():
            keep.append(line.rstrip())
    stream.close()


def failure_cause(lines: deque[str] | list[str]) -> str | None:
    """What went wrong, from a failed step's last error output.

    The exception line of the last Python traceback, else the first line that reads like an
    error; with the last line of output added when that is something else (a shell script's
    ``tar: Exiting with failure status`` says less than the line that made tar fail).
    """
    if not lines:
        return None
    items = list(lines)
    last = items[-1].strip()
    cause: str | None = None
    starts = [i for i, line in enumerate(items) if line.strip() == _TRACEBACK]
    if starts:
        for line in items[starts[-1] + 1 :]:
            if line and not line[0].isspace():
                cause = line.strip()
                break
    if cause is None:
        cause = next((ln.strip() for ln in items if _ERROR_WORDS.search(ln)), None)
    if cause is None or cause == last:
        return last
    return f"{cause} (last output: {last})"


_TRACEBACK = "Traceback (most recent call last):"


def kill_group(
    proc: subprocess.Popen[bytes], grace: float = KILL_GRACE_S, done: threading.Event | None = None
) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if done is not None:
        if done.wait(grace):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def stop_all(procs: Processes) -> None:
    """Stop every running job's process group."""
    procs.stopping.set()
    with procs.lock:
        running = list(procs.running.items())
    threads = [
        threading.Thread(target=kill_group, args=(p, KILL_GRACE_S, done)) for p, done in running
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
