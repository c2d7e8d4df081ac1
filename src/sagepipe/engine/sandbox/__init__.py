"""Launch a step's command in a local twin of its container (DESIGN.md §4.1).

``BwrapSandbox`` builds a fresh root and namespaces per step with bubblewrap;
``ProcessSandbox`` is the fallback where namespaces are unavailable. ``choose_sandbox`` picks
one; ``sandbox_report`` says which guarantees hold on this machine (``sagepipe doctor``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from sagepipe.engine.sandbox.base import (
    CONTAINER_ROOT,
    PROGRAMS,
    LaunchSpec,
    Sandbox,
    runtime_paths,
)
from sagepipe.engine.sandbox.bwrap import NAMESPACES, BwrapSandbox, network_helper
from sagepipe.engine.sandbox.limits import Limits, limits_for, out_of_memory_reason
from sagepipe.engine.sandbox.process import ProcessSandbox, rewrite
from sagepipe.errors import ConfigError
from sagepipe.records import record

log = logging.getLogger(__name__)
_PROBE = ("--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true")


class BwrapProbe:
    """Whether bubblewrap can create the step namespaces here (containers often forbid it),
    asked when made and answered by ``works``: the probe runs while the caller does more."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._answer: bool | None = None
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [path, *NAMESPACES, "--unshare-net", "--cap-drop", "ALL", *_PROBE],
                stdout=subprocess.PIPE,  # read to the end: it wakes the waiter at the exit
                stderr=subprocess.PIPE,  # (Popen.wait(timeout) would poll, sleeping)
            )
        except OSError:
            self._proc, self._answer = None, False

    def works(self, timeout: float = 10) -> bool:
        """The answer (waits for the probe; False when it does not end within ``timeout``)."""
        if self._answer is None:
            assert self._proc is not None
            try:
                self._proc.communicate(timeout=timeout)
                self._answer = self._proc.returncode == 0
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.communicate()
                self._answer = False
        return self._answer


def bwrap_works(path: str) -> bool:
    """Whether bubblewrap can create the step namespaces here (containers often forbid it)."""
    return BwrapProbe(path).works()


def probe_sandbox(kind: str) -> BwrapProbe | None:
    """For ``choose_sandbox(kind, probe)``: bubblewrap's probe, started now when it will be
    needed. Call ``works()`` on it in the end even when the choice is not made (it reaps)."""
    bwrap = shutil.which("bwrap")
    return BwrapProbe(bwrap) if kind != "process" and bwrap else None


def choose_sandbox(kind: str, probe: BwrapProbe | None = None) -> Sandbox:
    """``auto`` picks bwrap when it works here, else the process sandbox (``probe``: from
    ``probe_sandbox(kind)``, started earlier)."""
    bwrap = shutil.which("bwrap")
    if kind == "process":
        return ProcessSandbox()
    if probe is None or probe.path != bwrap:
        if probe is not None:
            probe.works()  # reaped; its answer is for another file
        probe = None if bwrap is None else BwrapProbe(bwrap)
    if bwrap and probe is not None and probe.works():
        return BwrapSandbox(bwrap)
    if kind == "bwrap":
        raise ConfigError(
            "sandbox 'bwrap' requested but bubblewrap is missing or cannot create namespaces "
            "here; install it (apt-get install bubblewrap) or use --sandbox process"
        )
    log.warning("bubblewrap not available; using the process sandbox (steps are not isolated)")
    return ProcessSandbox()


@record
class Guarantee:
    """One property of a step's sandbox and whether it holds here."""

    name: str
    holds: bool
    detail: str


@record
class SandboxReport:
    """Which sandbox ``kind`` gives on this machine, and what it guarantees."""

    sandbox: str
    user: str
    guarantees: list[Guarantee]


def sandbox_report(kind: str = "auto") -> SandboxReport:
    """What a step can see and use here; ConfigError when ``kind`` cannot work."""
    sandbox = choose_sandbox(kind)
    user = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    root = ", not enforced for root" if os.geteuid() == 0 else ""
    what = f"memory (RLIMIT_AS) and processes (RLIMIT_NPROC{root}) from the instance type"
    if isinstance(sandbox, BwrapSandbox):
        limits = Guarantee(
            "limits", True, f"rlimits set before the step runs: {what}; vCPUs not enforced"
        )
    else:
        prlimit = shutil.which("prlimit")
        limits = Guarantee(
            "limits",
            prlimit is not None,
            f"rlimits through prlimit: {what}; vCPUs not enforced"
            if prlimit
            else "prlimit is missing (util-linux): no memory or process limits",
        )
    if isinstance(sandbox, BwrapSandbox):
        slirp = network_helper()
        guarantees = [
            Guarantee("fresh root", True, "system runtime and the step's runtime read-only"),
            Guarantee("namespaces", True, "user, pid, ipc, uts, cgroup (where possible)"),
            Guarantee("no capabilities", True, "--cap-drop ALL, new session"),
            Guarantee("no survivors", True, "every process dies with the step's first"),
            Guarantee("isolated network", True, "EnableNetworkIsolation: loopback only"),
            Guarantee(
                "network without host loopback",
                slirp is not None,
                "slirp4netns --disable-host-loopback"
                if slirp
                else "slirp4netns missing or /dev/net/tun not usable: steps share this "
                "machine's network",
            ),
            limits,
        ]
    else:
        guarantees = [
            Guarantee("fresh root", False, "the step sees this machine's files"),
            Guarantee("namespaces", False, "none"),
            Guarantee("no capabilities", False, "the step has the engine's user"),
            Guarantee("no survivors", False, "only the step's process group is stopped"),
            Guarantee("isolated network", False, "not enforced"),
            Guarantee("network without host loopback", False, "not enforced"),
            limits,
        ]
    guarantees.append(Guarantee("private inputs", True, "inputs are copies of the store's"))
    guarantees.append(Guarantee("safe publishing", True, "regular files only, copied"))
    return SandboxReport(sandbox.name, user, guarantees)


__all__ = [
    "CONTAINER_ROOT",
    "PROGRAMS",
    "BwrapProbe",
    "BwrapSandbox",
    "Guarantee",
    "LaunchSpec",
    "Limits",
    "ProcessSandbox",
    "Sandbox",
    "SandboxReport",
    "bwrap_works",
    "choose_sandbox",
    "limits_for",
    "out_of_memory_reason",
    "probe_sandbox",
    "rewrite",
    "runtime_paths",
    "sandbox_report",
]
