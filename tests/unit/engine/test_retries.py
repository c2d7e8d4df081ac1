"""The attempt loop and the fault kinds, with a clock the test moves."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sagepipe.definition.retry_policies import RetryPolicy
from sagepipe.engine.context import StepOutcome
from sagepipe.engine.retries import (
    ALGORITHM_ERROR,
    CAPACITY_ERROR,
    CLIENT_ERROR,
    INTERNAL_ERROR,
    JOB_INTERNAL_ERROR,
    SERVICE_FAULT,
    THROTTLING,
    Attempts,
    LaunchFault,
    error_fault,
    job_fault,
)
from sagepipe.errors import ExecutionError, StorageError
from sagepipe.storage.aws import aws_errors


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _loop(policies: tuple[RetryPolicy, ...], clock: Clock, lines: list[str]) -> Attempts:
    stopping = threading.Event()
    attempts = Attempts(
        policies, stopping, threading.Event(), lines.append, lambda n: None, clock=clock
    )
    attempts._sleep = lambda seconds: (setattr(clock, "now", clock.now + seconds), True)[1]  # type: ignore[method-assign]
    return attempts


def test_backoff_grows_and_the_first_matching_policy_decides() -> None:
    clock, lines = Clock(), []
    policies = (
        RetryPolicy(frozenset({JOB_INTERNAL_ERROR}), 1, 3.0, 2),
        RetryPolicy(frozenset({JOB_INTERNAL_ERROR, CAPACITY_ERROR}), 1, 2.0, 10),
    )
    seen = []

    def attempt(n: int) -> tuple[StepOutcome, str]:
        seen.append((n, clock.now))
        return StepOutcome("Failed", failure_reason="gone"), JOB_INTERNAL_ERROR

    outcome, fault = _loop(policies, clock, lines).run(attempt)
    assert (outcome.status, fault) == ("Failed", JOB_INTERNAL_ERROR)
    assert seen == [(1, 0.0), (2, 1.0), (3, 4.0)]  # 1 s, then 3 s; then the first policy is spent
    assert lines[1] == "attempt 2 of 3 after 1s"


def test_own_failures_are_not_retried_and_success_ends_the_loop() -> None:
    clock, lines = Clock(), []
    policy = (RetryPolicy(frozenset({JOB_INTERNAL_ERROR}), 0, 2.0, 5),)
    results = iter([(StepOutcome("Failed"), JOB_INTERNAL_ERROR), (StepOutcome("Succeeded"), "")])
    outcome, _ = _loop(policy, clock, lines).run(lambda n: next(results))
    assert outcome.status == "Succeeded"
    outcome, fault = _loop(policy, clock, lines).run(
        lambda n: (StepOutcome("Failed"), ALGORITHM_ERROR)
    )
    assert (outcome.status, fault) == ("Failed", ALGORITHM_ERROR)


def test_expire_after_min_counts_from_the_steps_start() -> None:
    clock, lines = Clock(), []
    policy = (RetryPolicy(frozenset({THROTTLING}), 30, 2.0, None, 1),)
    seen = []

    def attempt(n: int) -> tuple[StepOutcome, str]:
        seen.append(clock.now)
        clock.now += 5
        return StepOutcome("Failed"), THROTTLING

    _loop(policy, clock, lines).run(attempt)
    assert seen == [0, 35, 100]  # the third failure is at 105 s, past 60 s: no more


def test_a_stop_wakes_the_backoff_at_once() -> None:
    stopping, failing = threading.Event(), threading.Event()
    policy = (RetryPolicy(frozenset({JOB_INTERNAL_ERROR}), 43200, 2.0, 5),)
    attempts = Attempts(policy, stopping, failing, lambda line: None, lambda n: None)
    threading.Timer(0.1, stopping.set).start()
    outcome, _ = attempts.run(lambda n: (StepOutcome("Failed"), JOB_INTERNAL_ERROR))
    assert outcome.status == "Stopped"
    failing.set()
    stopping.clear()
    outcome, _ = attempts.run(
        lambda n: (StepOutcome("Failed", failure_reason="x"), JOB_INTERNAL_ERROR)
    )
    assert (outcome.status, outcome.failure_reason) == ("Failed", "x")


def _boundary(error: Exception) -> StorageError:
    """``error`` as the storage layer's AWS boundary raises it: translated, cause chained."""
    try:
        with aws_errors("get s3://b/k"):
            raise error
    except StorageError as exc:
        assert exc.__cause__ is error
        return exc
    raise AssertionError("aws_errors did not translate")


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (LaunchFault(CAPACITY_ERROR, "CapacityError: x"), CAPACITY_ERROR),
        (ExecutionError("input 'x': only S3Input is supported locally"), CLIENT_ERROR),
        (_boundary(_client_error("SlowDown", 503)), THROTTLING),
        (_boundary(_client_error("InternalError", 500)), SERVICE_FAULT),
        (_boundary(_client_error("AccessDenied", 403)), CLIENT_ERROR),
        (_boundary(EndpointConnectionError(endpoint_url="http://x")), SERVICE_FAULT),
        (StorageError("disk full"), CLIENT_ERROR),
        (KeyError("bug"), INTERNAL_ERROR),
    ],
)
def test_error_faults(exc: BaseException, fault: str) -> None:
    assert error_fault(exc) == fault


@pytest.mark.parametrize(
    ("code", "reason", "timed_out", "fault"),
    [
        (-9, None, False, JOB_INTERNAL_ERROR),
        (137, None, False, JOB_INTERNAL_ERROR),
        (3, "ValueError: bad", False, ALGORITHM_ERROR),
        (1, "ClientError: Please use an instance type with more memory", False, CLIENT_ERROR),
        (-15, None, True, CLIENT_ERROR),
        (0, "link in output", False, CLIENT_ERROR),
        (None, "no job ran", False, CLIENT_ERROR),
    ],
)
def test_job_faults(code: int | None, reason: str | None, timed_out: bool, fault: str) -> None:
    assert job_fault(StepOutcome("Failed", failure_reason=reason), code, timed_out) == fault
