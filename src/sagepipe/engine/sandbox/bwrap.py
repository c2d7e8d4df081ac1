"""bubblewrap: each step in a fresh root, like a container.

The step sees the system runtime read-only (``/usr``, ``/lib*``, ``/bin``, ``/sbin`` and a few
files of ``/etc``), its runtime's folders read-only, the workspace at ``/opt/ml``, a private
``/tmp`` and its own ``/proc`` and ``/dev``; nothing else of the machine. It runs in its own
user, PID, IPC, UTS (and, where possible, cgroup) namespaces with no capabilities and a new
session. bwrap's init is PID 1 of the step: when the step's first process exits, the kernel
kills every process left in the namespace.

Network: ``EnableNetworkIsolation`` gives the step its own network namespace with loopback
only. Otherwise the step gets its own namespace too, connected to the outside through
slirp4netns with the host's loopback unreachable; where slirp4netns cannot run, the step
shares the host's network (said once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO

from sagepipe.engine.sandbox.base import (
    CONTAINER_ROOT,
    PROGRAMS,
    PROGRAMS_MOUNT,
    LaunchSpec,
    also_watch,
    popen,
)
from sagepipe.engine.sandbox.limits import Limits
from sagepipe.errors import ConfigError

log = logging.getLogger(__name__)
NAMESPACES = [
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
]
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The parts of /etc that programs need to resolve names, users, certificates and time.
ETC_FILES = (
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "mime.types",
    "os-release",
)
HOSTNAME = "algo-1"
BASH = "/bin/bash"
SLIRP_TIMEOUT_S = 10.0
# --die-with-parent holds when the engine runs as root. For an ordinary user, entering the user
# namespace clears the parent-death signal of the sandbox's init (in a session of its own), so
# bwrap dies with the engine but its init lives on: a watchdog, told the init's PID as soon as
# bwrap reports it, kills it instead. (--die-with-parent also makes the init end the namespace
# when the step's first process exits, rather than wait for every process: it always stays.)
WATCHDOG_NEEDED = os.geteuid() != 0
# Without a watchdog, bwrap's own parent-death signal is set only once it has made the
# namespaces: an engine killed in the moment before would leave bwrap and the step running.
# setpriv sets it before bwrap starts (it survives the exec), so no such moment remains.
SETPRIV = shutil.which("setpriv")


def _dies_with_engine(argv: list[str]) -> list[str]:
    """``argv`` killed when the engine dies, from its first instruction on (where setpriv is)."""
    if WATCHDOG_NEEDED or SETPRIV is None or shutil.which(argv[0]) is None:
        return argv  # a missing bwrap: Popen says so itself, as it says for any program
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def system_binds(etc: Path) -> list[str]:
    """bwrap arguments for the system runtime: read-only, symlinks kept as symlinks."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return [*args, "--ro-bind", str(etc), "/etc"]


def minimal_etc(dest: Path) -> Path:
    """Copy the few files of /etc that programs need into ``dest`` (one bind, not twenty)."""
    dest.mkdir()
    for name in ETC_FILES:
        src = Path("/etc") / name
        with contextlib.suppress(OSError):
            if src.is_dir():
                shutil.copytree(
                    src,
                    dest / name,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("private"),  # TLS private keys stay out
                )
            elif src.exists():
                shutil.copyfile(src, dest / name)
    return dest


def slirp_resolv_conf() -> str:
    """resolv.conf for a step behind slirp4netns: its DNS forwarder, the host's search list."""
    lines = ["nameserver 10.0.2.3"]
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            if line.startswith(("search", "domain", "options")):
                lines.append(line)
    return "\n".join(lines) + "\n"


def network_helper() -> str | None:
    """slirp4netns when it can run here (it needs /dev/net/tun), else None."""
    slirp = shutil.which("slirp4netns")
    if slirp and os.access("/dev/net/tun", os.R_OK | os.W_OK) and os.access(BASH, os.X_OK):
        return slirp
    return None


class BwrapSandbox:
    """bubblewrap: a fresh root and its own namespaces per step."""

    name = "bwrap"
    _warned_network = False

    def __init__(self, bwrap: str, slirp4netns: str | bool | None = True) -> None:
        self.bwrap = bwrap
        self.slirp = network_helper() if slirp4netns is True else slirp4netns or None
        self._root: tuple[list[str], Path] | None = None
        self._root_lock = threading.Lock()

    def _step_root(self) -> tuple[list[str], Path]:
        """The system binds and slirp's resolv.conf, made when the first step starts (a run
        whose steps are all cache hits never copies /etc)."""
        with self._root_lock:
            if self._root is None:
                etc = Path(tempfile.mkdtemp(prefix="sagepipe-etc-"))
                weakref.finalize(self, shutil.rmtree, etc, True)
                etc.chmod(0o755)
                resolv = etc / "resolv.conf"
                resolv.write_text(slirp_resolv_conf())
                self._root = (system_binds(minimal_etc(etc / "etc")), resolv)
            return self._root

    @property
    def network_mode(self) -> str:
        """How a step without network isolation reaches the outside."""
        return "slirp4netns" if self.slirp else "host"

    def command(
        self,
        spec: LaunchSpec,
        hold: tuple[int, int] | None = None,
        handshake: tuple[int, int, int] | None = None,
    ) -> list[str]:
        """The bwrap command line for ``spec``.

        ``hold`` (bwrap's info and block fds) keeps the step from starting until its limits are
        set. ``handshake`` (bwrap's info fd, then the step's ready and go fds) makes the step's
        first process a shell that says it is ready once bwrap has set the namespaces up, waits
        until its network is connected, applies the limits and becomes the step's command.
        """
        args = [self.bwrap, *NAMESPACES, "--die-with-parent", "--new-session"]
        args += ["--cap-drop", "ALL", "--hostname", HOSTNAME]
        if not spec.network or handshake is not None:
            args.append("--unshare-net")
        system, slirp_resolv = self._step_root()
        args += system
        if handshake is not None:  # the host's resolver may be on its loopback: ask slirp's
            args += ["--ro-bind", str(slirp_resolv), "/etc/resolv.conf"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
        for folder in spec.runtime:  # after /tmp: a runtime may live under /tmp
            args += ["--ro-bind", str(folder), str(folder)]
        args += ["--ro-bind", str(PROGRAMS), PROGRAMS_MOUNT]
        args += ["--bind", str(spec.workspace), CONTAINER_ROOT, "--chdir", spec.cwd]
        argv = spec.argv
        if hold is not None:
            args += ["--info-fd", str(hold[0]), "--block-fd", str(hold[1])]
        if handshake is not None:
            info, ready, go = handshake
            args += ["--info-fd", str(info)]
            limit = ""
            if spec.limits is not None:
                limits = spec.limits
                limit = f"ulimit -v {limits.memory_bytes // 1024} -u {limits.processes}; "
            wait = (
                f"printf 1 >&{ready}; exec {ready}>&-; read -r _ <&{go}; exec {go}<&-; "
                f'{limit}exec "$@"'
            )
            argv = [BASH, "-c", wait, "bash", *argv]  # bash: dash takes one-digit fds only
        return [*args, "--", *argv]

    def launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        return self._launch(spec, stdout, stderr, stdin)

    def _launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int,
    ) -> subprocess.Popen[bytes]:
        if spec.network and self.slirp is not None:
            return self._launch_with_slirp(spec, self.slirp, stdout, stderr, stdin)
        if spec.network:
            self._warn_host_network()
        if spec.limits is None and not WATCHDOG_NEEDED:
            argv = _dies_with_engine(self.command(spec))
            return popen(argv, spec.env, None, stdout, stderr, stdin, watch=False)
        return self._launch_limited(spec, spec.limits, stdout, stderr, stdin)

    def _launch_limited(
        self,
        spec: LaunchSpec,
        limits: Limits | None,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int,
    ) -> subprocess.Popen[bytes]:
        """Start bwrap held before the step's command, set the limits on its init, release it.

        The limits are inherited by every process of the step; no extra program runs. The
        init's PID goes to the step's watchdog, where there is one.
        """
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        child_fds = (info_w, block_r)
        proc = _popen_passing(
            self.command(spec, hold=child_fds),
            spec,
            child_fds,
            (info_r, block_w),
            stdout,
            stderr,
            stdin,
        )
        try:
            with os.fdopen(info_r, "rb") as fh:
                info = fh.read()
            if info:  # nothing when bwrap failed before starting the step: it says why
                child = int(json.loads(info)["child-pid"])
                if WATCHDOG_NEEDED:
                    also_watch(proc.pid, child)
                if limits is not None:
                    set_limits(child, limits)
        except (ValueError, KeyError, OSError) as exc:
            proc.kill()
            os.close(block_w)
            raise ConfigError(f"cannot limit the step's resources: {exc}") from None
        with contextlib.suppress(OSError):  # bwrap failed: its own message says why
            os.write(block_w, b"1")
        os.close(block_w)
        return proc

    def _warn_host_network(self) -> None:
        if not BwrapSandbox._warned_network:
            BwrapSandbox._warned_network = True
            log.warning(
                "slirp4netns cannot run here (install it: apt-get install slirp4netns; it needs "
                "read-write access to /dev/net/tun, and bash): steps without network isolation "
                "share this machine's network, including services bound to 127.0.0.1"
            )

    def _launch_with_slirp(
        self,
        spec: LaunchSpec,
        slirp: str,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int,
    ) -> subprocess.Popen[bytes]:
        """Start the step waiting, connect its network namespace with slirp4netns, release it.

        The step's first process is a shell that says it is ready (bwrap has set up the
        namespaces, loopback included), waits for the go, and becomes the step's command.
        """
        info_r, info_w = os.pipe()
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        child_fds = (info_w, ready_w, go_r)
        proc = _popen_passing(
            self.command(spec, handshake=child_fds),
            spec,
            child_fds,
            (info_r, ready_r, go_w),
            stdout,
            stderr,
            stdin,
        )
        try:
            with os.fdopen(info_r, "rb") as fh:
                child = int(json.loads(fh.read())["child-pid"])
            if WATCHDOG_NEEDED:
                also_watch(proc.pid, child)
            with os.fdopen(ready_r, "rb") as fh:
                if fh.read(1) != b"1":
                    raise ConfigError("the sandbox did not start")
            helper = _start_slirp(slirp, child)
        except (ValueError, KeyError, OSError, ConfigError) as exc:
            os.close(go_w)  # the step runs without a network rather than hang
            log.warning("step network: slirp4netns did not start (%s); the step has none", exc)
            return proc
        with contextlib.suppress(OSError):
            os.write(go_w, b"1\n")
        os.close(go_w)
        threading.Thread(target=_stop_with, args=(proc, *helper), daemon=True).start()
        return proc

    def container_path(self, value: str, workspace: Path) -> str:
        return value

    def program(self, name: str) -> str:
        return f"{PROGRAMS_MOUNT}/{name}"


def set_limits(pid: int, limits: Limits) -> None:
    """Set the step's rlimits on its (held) first process: memory and process count."""
    resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.prlimit(pid, resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _start_slirp(slirp: str, pid: int) -> tuple[subprocess.Popen[bytes], int]:
    """slirp4netns for the namespace of ``pid``: started and configured, or ConfigError."""
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    argv = [
        slirp,
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        f"--ready-fd={ready_w}",
        f"--exit-fd={exit_r}",
        str(pid),
        "tap0",
    ]
    try:
        helper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(ready_w, exit_r),
            start_new_session=True,
        )
    finally:
        os.close(ready_w)
        os.close(exit_r)
    with os.fdopen(ready_r, "rb") as fh:
        ready = fh.read(1)
    if ready != b"1":
        os.close(exit_w)
        helper.kill()
        _, err = helper.communicate(timeout=SLIRP_TIMEOUT_S)
        lines = err.decode(errors="replace").strip().splitlines()
        raise ConfigError(lines[-1] if lines else f"exit code {helper.returncode}")
    assert helper.stderr is not None
    helper.stderr.close()
    return helper, exit_w


def _stop_with(proc: subprocess.Popen[bytes], helper: subprocess.Popen[bytes], exit_w: int) -> None:
    """When the step's process ends, its network helper ends too."""
    proc.wait()
    os.close(exit_w)
    try:
        helper.wait(SLIRP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
        helper.wait()


def _popen_passing(
    argv: list[str],
    spec: LaunchSpec,
    child_fds: tuple[int, ...],
    parent_fds: tuple[int, ...],
    stdout: int | IO[bytes],
    stderr: int | IO[bytes],
    stdin: int,
) -> subprocess.Popen[bytes]:
    """Start held bwrap with ``child_fds``; close them here after, and every pipe end on failure."""
    try:
        proc = popen(
            _dies_with_engine(argv),
            spec.env,
            None,
            stdout,
            stderr,
            stdin,
            pass_fds=child_fds,
            watch=WATCHDOG_NEEDED,
            marker=str(spec.workspace),
        )
    except BaseException:
        for fd in (*parent_fds, *child_fds):
            os.close(fd)
        raise
    for fd in child_fds:
        os.close(fd)
    return proc
