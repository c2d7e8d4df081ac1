"""Launch a step's command so that it sees its workspace at ``/opt/ml``.

``BwrapSandbox`` gives each step its own mount namespace (bubblewrap): the workspace bound at
``/opt/ml``, inputs read-only, a private ``/tmp``, the rest of the filesystem read-only, the
sagepipe home hidden, and no network when the step asks for isolation. ``ProcessSandbox`` is
the fallback where bubblewrap is missing: it rewrites ``/opt/ml`` in arguments and environment.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from sagepipe.errors import ConfigError

log = logging.getLogger(__name__)
CONTAINER_ROOT = "/opt/ml"


@dataclass
class LaunchSpec:
    """What to run and what it may see."""

    argv: list[str]
    env: dict[str, str]
    workspace: Path
    cwd: str = CONTAINER_ROOT
    readonly: list[str] = field(default_factory=list)
    network: bool = True
    hide: list[Path] = field(default_factory=list)
    expose: list[Path] = field(default_factory=list)


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


def _popen(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    stdout: int | IO[bytes],
    stderr: int | IO[bytes],
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot start {argv[0]!r}: {exc.strerror}") from None


class BwrapSandbox:
    """bubblewrap: one mount namespace per step."""

    name = "bwrap"

    def __init__(self, bwrap: str) -> None:
        self.bwrap = bwrap
        opt = Path("/opt")
        self._opt_children = (
            sorted(p for p in opt.iterdir() if p.name != "ml") if opt.is_dir() else []
        )

    def command(self, spec: LaunchSpec) -> list[str]:
        """The bwrap command line for ``spec``."""
        args = [self.bwrap, "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev"]
        args += ["--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/opt"]
        for child in self._opt_children:
            args += ["--ro-bind", str(child), str(child)]
        for hidden in spec.hide:
            args += ["--tmpfs", str(hidden)]
        for needed in spec.expose:  # e.g. a virtualenv under /tmp, which the private /tmp hides
            if needed.is_dir() and (
                _under(needed, Path("/tmp")) or any(_under(needed, h) for h in spec.hide)
            ):
                args += ["--ro-bind", str(needed), str(needed)]
        args += ["--bind", str(spec.workspace), CONTAINER_ROOT]
        for path in sorted(spec.readonly, key=len):
            rel = os.path.relpath(path, CONTAINER_ROOT)
            args += ["--ro-bind", str(spec.workspace / rel), path]
        if not spec.network:
            args.append("--unshare-net")
        args += ["--chdir", spec.cwd, "--", *spec.argv]
        return args

    def launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        return _popen(self.command(spec), spec.env, None, stdout, stderr, stdin)

    def container_path(self, value: str, workspace: Path) -> str:
        return value


class ProcessSandbox:
    """No namespaces: ``/opt/ml`` in arguments and environment points at the workspace."""

    name = "process"
    _warned = False

    def container_path(self, value: str, workspace: Path) -> str:
        return rewrite(value, str(workspace))

    def launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        if not ProcessSandbox._warned:
            ProcessSandbox._warned = True
            log.warning(
                "process sandbox: /opt/ml paths are rewritten in arguments and environment only; "
                "scripts that hardcode /opt/ml paths will not find their files, inputs are not "
                "read-only and network isolation is not enforced (install bubblewrap for those)"
            )
        root = str(spec.workspace)
        argv = [rewrite(a, root) for a in spec.argv]
        env = {k: rewrite(v, root) for k, v in spec.env.items()}
        return _popen(argv, env, rewrite(spec.cwd, root), stdout, stderr, stdin)


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def runtime_paths(python: str) -> list[Path]:
    """Folders the step interpreter needs: its virtualenv (or prefix) and the real binary's."""
    exe = Path(python)
    out = [exe.parent.parent]
    real = exe.resolve()
    if real.parent.parent not in out:
        out.append(real.parent.parent)
    return out


def rewrite(value: str, root: str) -> str:
    """Replace the container root ``/opt/ml`` with ``root`` wherever it starts a path."""
    return value.replace(CONTAINER_ROOT, root)


def bwrap_works(path: str) -> bool:
    """Whether bubblewrap can create namespaces here (containers often forbid it)."""
    try:
        done = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_sandbox(kind: str) -> Sandbox:
    """``auto`` picks bwrap when it works here, else the process sandbox."""
    bwrap = shutil.which("bwrap")
    if kind == "process":
        return ProcessSandbox()
    if bwrap and bwrap_works(bwrap):
        return BwrapSandbox(bwrap)
    if kind == "bwrap":
        raise ConfigError(
            "sandbox 'bwrap' requested but bubblewrap is missing or cannot create namespaces "
            "here; install it (apt-get install bubblewrap) or use --sandbox process"
        )
    log.warning("bubblewrap not available; using the process sandbox")
    return ProcessSandbox()
