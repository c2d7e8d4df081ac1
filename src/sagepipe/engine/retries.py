"""Step retry policies, run locally with SageMaker's semantics.

Every failed attempt gets a fault kind. The kinds a RetryPolicy can name are the platform's
faults, mapped to what can go wrong on this machine (README, "Rerun and debug"):

- ``SageMaker.JOB_INTERNAL_ERROR``: the step's twin of a container died of a cause outside the
  step: its process was killed by SIGKILL that sagepipe did not send (the machine's OOM killer,
  ``kill -9``), or its sandbox could not be set up.
- ``SageMaker.CAPACITY_ERROR``: this machine could not start the step's process (fork or exec
  failed with EAGAIN or ENOMEM).
- ``Step.SERVICE_FAULT`` / ``Step.THROTTLING``: the object store failed, could not be reached,
  or throttled while the step's inputs were staged or its outputs published.
- ``SageMaker.RESOURCE_LIMIT``: an account quota; there is none locally, so it never occurs.

The step's own failures are never retried, as on SageMaker: ``AlgorithmError`` (its command
exited non-zero) and ``ClientError`` (a wrong input or argument, out of its instance's memory,
over MaxRuntimeInSeconds, a link in an output).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import field

from sagepipe.definition.retry_policies import RetryPolicy
from sagepipe.engine.context import StepOutcome
from sagepipe.errors import ExecutionError, SagepipeError, StorageError
from sagepipe.records import record

JOB_INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"
CAPACITY_ERROR = "SageMaker.CAPACITY_ERROR"
SERVICE_FAULT = "Step.SERVICE_FAULT"
THROTTLING = "Step.THROTTLING"
ALGORITHM_ERROR = "AlgorithmError"
CLIENT_ERROR = "ClientError"
INTERNAL_ERROR = "InternalError"  # a fault in sagepipe itself: never retried
KILLED_EXIT_CODES = (-9, 128 + 9)  # SIGKILL: Popen's -9, or a shell's or bwrap's 137
_THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
    }
)
_POLL_S = 0.2  # how often a backoff sleep looks at the execution failing elsewhere


class LaunchFault(ExecutionError):
    """The step's process could not be started; ``fault`` says which platform fault it is."""

    def __init__(self, fault: str, message: str) -> None:
        super().__init__(message)
        self.fault = fault


def error_fault(exc: BaseException) -> str:
    """The fault kind of an exception raised while a step ran."""
    if isinstance(exc, LaunchFault):
        return exc.fault
    if isinstance(exc, StorageError):
        return store_fault(exc) or CLIENT_ERROR
    if isinstance(exc, SagepipeError):
        return CLIENT_ERROR
    return INTERNAL_ERROR


def store_fault(exc: BaseException) -> str | None:
    """SERVICE_FAULT or THROTTLING when a botocore error behind ``exc`` is transient."""
    from botocore import exceptions as bx

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, bx.ClientError):
            error = cause.response.get("Error", {})
            status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if str(error.get("Code", "")) in _THROTTLING_CODES:
                return THROTTLING
            return SERVICE_FAULT if status >= 500 else None
        if isinstance(
            cause,
            bx.EndpointConnectionError
            | bx.ConnectionClosedError
            | bx.ReadTimeoutError
            | bx.ConnectTimeoutError,
        ):
            return SERVICE_FAULT
        cause = cause.__cause__
    return None


def job_fault(outcome: StepOutcome, returncode: int | None, timed_out: bool) -> str:
    """The fault kind of a failed outcome, given how the step's last process ended."""
    if returncode is None or timed_out:
        return CLIENT_ERROR
    if returncode in KILLED_EXIT_CODES:
        return JOB_INTERNAL_ERROR
    if returncode != 0 and not (outcome.failure_reason or "").startswith("ClientError"):
        return ALGORITHM_ERROR
    return CLIENT_ERROR


def mark_fault(outcome: StepOutcome, fault: str) -> StepOutcome:
    """A failed outcome with its fault kind recorded (``_fault`` in its metadata), and its
    reason in SageMaker's words for a job killed from outside."""
    if outcome.status != "Failed":
        return outcome
    outcome.metadata["_fault"] = fault
    reason = outcome.failure_reason or ""
    if fault == JOB_INTERNAL_ERROR and not reason.startswith("InternalServerError"):
        outcome.failure_reason = (
            f"InternalServerError: the step's process was killed (SIGKILL) from outside the step; "
            f"{reason}"
        )
    return outcome


@record(frozen=False)
class Attempts:
    """Runs a step's attempts until one ends other than Failed or no policy allows another.

    ``attempt(n)`` runs attempt ``n`` and returns its outcome and fault kind. Between attempts
    it sleeps the policy's backoff, waking at once when the execution stops (``stopping``) and
    within a fraction of a second when another step fails (``failing``): then no new attempt
    starts and the last failure stands.
    """

    policies: tuple[RetryPolicy, ...]
    stopping: threading.Event
    failing: threading.Event
    write: Callable[[str], None]
    record: Callable[[int], None]  # stores the attempt number about to run
    first: int = 1
    clock: Callable[[], float] = time.monotonic
    done: dict[int, int] = field(default_factory=dict)  # retries used, per policy

    def run(self, attempt: Callable[[int], tuple[StepOutcome, str]]) -> tuple[StepOutcome, str]:
        """The final outcome and the fault kind of the last attempt."""
        started = self.clock()
        number = self.first
        while True:
            outcome, fault = attempt(number)
            if outcome.status != "Failed":
                return outcome, fault
            chosen = self._policy(fault, self.clock() - started)
            if chosen is None:
                return outcome, fault
            index, policy = chosen
            delay = policy.delay(self.done.get(index, 0))
            self.write(
                f"attempt {number} failed with {fault} ({outcome.failure_reason}); "
                f"retrying in {delay:g}s"
            )
            if not self._sleep(delay):
                if self.stopping.is_set():
                    self.write("stopped while waiting to retry")
                    return StepOutcome("Stopped", failure_reason="Stopped by user"), fault
                self.write("not retried: another step failed meanwhile")
                return outcome, fault
            self.done[index] = self.done.get(index, 0) + 1
            number += 1
            self.record(number)
            self.write(f"attempt {number} {policy.describe_limit()} after {delay:g}s")

    def _policy(self, fault: str, elapsed: float) -> tuple[int, RetryPolicy] | None:
        """The first policy naming ``fault``; it decides alone, as in SageMaker."""
        for index, policy in enumerate(self.policies):
            if fault in policy.exception_types:
                if policy.allows(self.done.get(index, 0), elapsed):
                    return index, policy
                return None
        return None

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the execution stops or fails elsewhere."""
        deadline = self.clock() + seconds
        while True:
            if self.failing.is_set():
                return False
            left = deadline - self.clock()
            if left <= 0:
                return True
            if self.stopping.wait(min(left, _POLL_S)):
                return False


__all__ = [
    "ALGORITHM_ERROR",
    "CAPACITY_ERROR",
    "CLIENT_ERROR",
    "INTERNAL_ERROR",
    "JOB_INTERNAL_ERROR",
    "SERVICE_FAULT",
    "THROTTLING",
    "Attempts",
    "LaunchFault",
    "error_fault",
    "job_fault",
    "mark_fault",
    "store_fault",
]
