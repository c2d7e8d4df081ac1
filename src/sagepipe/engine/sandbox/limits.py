"""A step's resources come from its instance type, capped at this machine.

Memory and process count are enforced with rlimits: cgroup v2 cannot be delegated on every
machine (this one has cgroup v1), rlimits work for any user. bwrap sets them on the sandbox
while it is held before the step's command (or in the network hand-shake's shell); the process
sandbox puts ``prlimit`` in front of the command. The memory limit is RLIMIT_AS per process;
the process limit is RLIMIT_NPROC, counted in the step's own user namespace (root is exempt). vCPUs are not enforced (rlimits have no CPU share); the step is
told its instance's count (``SM_NUM_CPUS``, ``resourceconfig.json``).
"""

from __future__ import annotations

import os
import re

from sagepipe.records import record

GIB = 1 << 30
# SageMaker's FailureReason when a job's container runs out of memory.
OUT_OF_MEMORY = (
    "ClientError: Please use an instance type with more memory, or reduce the size of job "
    "data processed on an instance."
)
PROCESS_LIMIT = 4096
# (vCPUs, GiB) of common SageMaker instance types; others follow their family's ratio.
INSTANCE_TYPES: dict[str, tuple[int, float]] = {
    "ml.t3.medium": (2, 4),
    "ml.t3.large": (2, 8),
    "ml.t3.xlarge": (4, 16),
    "ml.t3.2xlarge": (8, 32),
    "ml.m5.large": (2, 8),
    "ml.m5.xlarge": (4, 16),
    "ml.m5.2xlarge": (8, 32),
    "ml.m5.4xlarge": (16, 64),
    "ml.c5.large": (2, 4),
    "ml.c5.xlarge": (4, 8),
    "ml.c5.2xlarge": (8, 16),
    "ml.c5.4xlarge": (16, 32),
    "ml.r5.large": (2, 16),
    "ml.r5.xlarge": (4, 32),
    "ml.g4dn.xlarge": (4, 16),
    "ml.g5.xlarge": (4, 16),
    "ml.p3.2xlarge": (8, 61),
}
_GIB_PER_VCPU = {"c": 2.0, "m": 4.0, "r": 8.0, "x": 16.0, "t": 4.0, "g": 4.0, "p": 7.6}
_MEMORY_ERRORS = re.compile(
    r"\bMemoryError\b|Cannot allocate memory|std::bad_alloc|out of memory", re.IGNORECASE
)


@record
class Limits:
    """What one step may use."""

    instance_type: str
    vcpus: int
    memory_bytes: int
    processes: int = PROCESS_LIMIT

    @property
    def memory_text(self) -> str:
        """The memory limit for people: ``8 GiB``."""
        return f"{self.memory_bytes / GIB:g} GiB"


def instance_resources(instance_type: str) -> tuple[int, float] | None:
    """(vCPUs, GiB) of a SageMaker instance type; None when it is not one."""
    if instance_type in INSTANCE_TYPES:
        return INSTANCE_TYPES[instance_type]
    match = re.fullmatch(
        r"ml\.([a-z]+)(\d+)[a-z]*\.(\d*)(medium|large|xlarge|metal)", instance_type
    )
    if match is None:
        return None
    family, size, unit = match.group(1), match.group(3), match.group(4)
    vcpus = 2 if unit in ("medium", "large") else 4 * int(size or 1)
    return vcpus, vcpus * _GIB_PER_VCPU.get(family[0], 4.0)


def machine_memory() -> int:
    """Physical memory of this machine in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 1 << 62


def limits_for(instance_type: object) -> Limits | None:
    """The limits of ``instance_type`` capped at this machine; None for an unknown type."""
    found = instance_resources(str(instance_type or ""))
    if found is None:
        return None
    vcpus, gib = found
    return Limits(
        str(instance_type),
        min(vcpus, os.cpu_count() or 1),
        min(int(gib * GIB), machine_memory()),
    )


def prlimit_prefix(prlimit: str, limits: Limits) -> list[str]:
    """The ``prlimit`` command that applies ``limits`` to the command after it."""
    return [prlimit, f"--as={limits.memory_bytes}", f"--nproc={limits.processes}", "--"]


def out_of_memory_reason(limits: Limits | None, error: str | None) -> str | None:
    """SageMaker's reason when ``error`` says an allocation failed under ``limits``."""
    if limits is None or error is None or not _MEMORY_ERRORS.search(error):
        return None
    return (
        f"{OUT_OF_MEMORY} The step went over the {limits.memory_text} of {limits.instance_type}"
        f" ({error})"
    )
