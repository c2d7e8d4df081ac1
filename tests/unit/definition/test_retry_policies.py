"""RetryPolicies: SageMaker's defaults and limits, one line per mistake."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sagepipe import SageMakerJobStepRetryPolicy, StepRetryPolicy
from sagepipe.definition.retry_policies import RetryPolicy, retry_policies
from sagepipe.errors import DefinitionError


def test_defaults_are_sagemakers() -> None:
    (policy,) = retry_policies("s", ({"ExceptionType": ["Step.THROTTLING"]},))
    assert policy == RetryPolicy(frozenset({"Step.THROTTLING"}), 1, 2.0, 5, None)
    assert [policy.delay(n) for n in range(4)] == [1, 2, 4, 8]
    assert policy.allows(4, 1e9) and not policy.allows(5, 0)
    assert policy.describe_limit() == "of 6"


def test_expire_after_min_bounds_retries_by_time() -> None:
    entry = {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "ExpireAfterMin": 2}
    (policy,) = retry_policies("s", (entry,))
    assert policy.allows(100, 119.9) and not policy.allows(0, 120)
    (never,) = retry_policies("s", ({**entry, "ExpireAfterMin": 0},))
    assert not never.allows(0, 0)
    (none,) = retry_policies("s", ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 0},))
    assert not none.allows(0, 0)


def test_the_authoring_api_round_trips() -> None:
    requests = (
        StepRetryPolicy(("SERVICE_FAULT",), max_attempts=3, interval_seconds=10).to_request(),
        SageMakerJobStepRetryPolicy(("RESOURCE_LIMIT",), expire_after_mins=120).to_request(),
    )
    first, second = retry_policies("s", requests)
    assert (first.max_attempts, first.interval_seconds) == (3, 10)
    assert (second.expire_after_min, second.max_attempts) == (120, None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"ExceptionType": []}, "ExceptionType must be a non-empty list"),
        (
            {"ExceptionType": ["SageMaker.JOB_CAPACITY_ERROR"]},
            "SageMaker.JOB_CAPACITY_ERROR unknown",
        ),
        ({"MaxAttempts": 21}, "MaxAttempts is 21; SageMaker allows at most 20"),
        ({"MaxAttempts": -1}, "MaxAttempts must be a non-negative integer"),
        ({"MaxAttempts": 2.5}, "MaxAttempts must be a non-negative integer"),
        ({"MaxAttempts": True}, "MaxAttempts must be a non-negative integer"),
        ({"IntervalSeconds": 43201}, "IntervalSeconds is 43201; SageMaker allows at most 43200"),
        ({"ExpireAfterMin": 14401}, "at most 14400"),
        ({"BackoffRate": "2"}, "BackoffRate must be a non-negative number"),
        ({"BackoffRate": float("nan")}, "BackoffRate must be a non-negative number, not nan"),
        ({"BackoffRate": float("inf")}, "BackoffRate must be a non-negative number, not inf"),
        ({"IntervalSeconds": float("nan")}, "IntervalSeconds must be a non-negative number"),
        ({"MaxAttempts": 1, "ExpireAfterMin": 1}, "give MaxAttempts or ExpireAfterMin, not both"),
    ],
)
def test_mistakes_name_the_step_and_field(entry: dict[str, Any], message: str) -> None:
    full = {"ExceptionType": ["Step.SERVICE_FAULT"], **entry}
    with pytest.raises(DefinitionError, match="step 'prep': RetryPolicies\\[0\\]") as info:
        retry_policies("prep", (full,))
    assert message in str(info.value)


def test_a_huge_backoff_waits_without_end_instead_of_overflowing() -> None:
    """1e308 ** 2 overflows a float: the wait is endless (a stop still ends it), not a crash."""
    (policy,) = retry_policies(
        "s", ({"ExceptionType": ["Step.THROTTLING"], "BackoffRate": 1e308, "MaxAttempts": 20},)
    )
    assert policy.delay(1) == 1e308
    assert policy.delay(2) == math.inf
    assert policy.delay(19) == math.inf
    no_wait = retry_policies(
        "s", ({"ExceptionType": ["Step.THROTTLING"], "BackoffRate": 1e308, "IntervalSeconds": 0},)
    )[0]
    assert no_wait.delay(4) == 0.0
