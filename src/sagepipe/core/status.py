"""Execution and step statuses, spelled as DescribePipelineExecution and ListPipelineExecutionSteps
spell them.

Both enums are ``str``-valued, so a status compares equal to its text and is stored in JSON and
SQLite unchanged: ``StepStatus.SUCCEEDED == "Succeeded"``.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """``PipelineExecutionStatus``."""

    EXECUTING = "Executing"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    SUCCEEDED = "Succeeded"


class StepStatus(StrEnum):
    """``StepStatus`` of one step of an execution."""

    STARTING = "Starting"
    EXECUTING = "Executing"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    SUCCEEDED = "Succeeded"
    # sagepipe's own: a step that cannot run locally, or one downstream of it, under
    # ``run --skip-unsupported``. SageMaker never reports it.
    NOT_RUN = "NotRun"


# The statuses an execution or a step never leaves. The texts are the same for both enums (only a
# step is ever NotRun).
TERMINAL: frozenset[str] = frozenset({"Succeeded", "Failed", "Stopped", "NotRun"})


def is_terminal(status: str) -> bool:
    """Whether an execution or step in ``status`` has finished (Succeeded, Failed, Stopped, NotRun)."""
    return status in TERMINAL


__all__ = ["TERMINAL", "ExecutionStatus", "StepStatus", "is_terminal"]
