"""What a step runner receives, and what it gives back."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagepipe.config import Settings
from sagepipe.definition import StepDef
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.evaluation import Scope
from sagepipe.engine.history import History
from sagepipe.engine.sandbox import Sandbox
from sagepipe.records import record
from sagepipe.storage import ObjectStore

if TYPE_CHECKING:
    from sagepipe.engine.publishing import Publication

ACCOUNT = "000000000000"


@record
class ExecutionInfo:
    """Identity of the running execution."""

    id: str
    arn: str
    pipeline: str
    pipeline_arn: str
    region: str

    def arn_for(self, kind: str, name: str) -> str:
        """A local ARN of the SageMaker shape for a job or model resource."""
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"


class StepLog:
    """A step's log: a file that ``sagepipe logs --follow`` can tail, and a live listener."""

    def __init__(self, path: Path, step: str, listener: Callable[[str, str], None] | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.step = step
        self._listener = listener
        self._fh = path.open("a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        """Append one line (without its newline)."""
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
        if self._listener is not None:
            self._listener(self.step, line)

    def close(self) -> str:
        """Close the file and return the whole log text."""
        with self._lock:
            self._fh.close()
        return self.path.read_text(encoding="utf-8", errors="replace")


@record(frozen=False)
class Processes:
    """Running step processes, so that a stop can reach every process group."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[subprocess.Popen[bytes], threading.Event] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)


@record(frozen=False)
class StepContext:
    """Everything a runner may use; nothing global."""

    step: StepDef
    arguments: dict[str, Any]
    scope: Scope
    execution: ExecutionInfo
    job_name: str
    workspace: Path
    store: ObjectStore
    sandbox: Sandbox
    images: StepEnvironments
    log: StepLog
    history: History
    settings: Settings
    processes: Processes
    warm: Any = None  # a prewarm.Warm started for this step, or None
    publication: Publication | None = None  # outputs staged, committed at once
    # How the step's last process ended (jobs.JobResult): its exit code tells the fault kind.
    job_result: Any = None


@record(frozen=False)
class StepOutcome:
    """What a runner reports: final status, Describe*-shaped properties, Metadata."""

    status: str
    properties: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None
    branch: str | None = None
