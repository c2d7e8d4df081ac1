"""A step's ``RetryPolicies``, typed and checked against SageMaker's limits.

SageMaker's guide ("Retry Policy for Pipeline Steps") and the SDK fix the shape: ``ExceptionType``
(a list), ``IntervalSeconds`` (default 1, at most 43200), ``BackoffRate`` (default 2.0),
``MaxAttempts`` (retries after the first attempt, at most 20; 0 never retries) or
``ExpireAfterMin`` (at most 14400; 0 never retries), never both; neither means MaxAttempts 5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sagepipe.core.steps import JOB_EXCEPTIONS, STEP_EXCEPTIONS
from sagepipe.errors import DefinitionError
from sagepipe.records import record

EXCEPTION_TYPES = STEP_EXCEPTIONS | JOB_EXCEPTIONS
DEFAULT_INTERVAL_SECONDS = 1
DEFAULT_BACKOFF_RATE = 2.0
DEFAULT_MAX_ATTEMPTS = 5
MAX_INTERVAL_SECONDS = 43200
MAX_ATTEMPTS_CAP = 20
MAX_EXPIRE_AFTER_MIN = 14400


@record
class RetryPolicy:
    """One entry of a step's RetryPolicies."""

    exception_types: frozenset[str]
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    backoff_rate: float = DEFAULT_BACKOFF_RATE
    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS
    expire_after_min: int | None = None

    def delay(self, retries_done: int) -> float:
        """Seconds to wait before retry number ``retries_done + 1`` (inf past a float's range)."""
        interval = float(self.interval_seconds)
        if interval == 0:
            return 0.0
        try:
            return interval * self.backoff_rate**retries_done
        except OverflowError:
            return math.inf

    def allows(self, retries_done: int, elapsed_s: float) -> bool:
        """Whether another retry may start, ``retries_done`` retries and ``elapsed_s`` seconds
        after the step started."""
        if self.expire_after_min is not None:
            return elapsed_s < self.expire_after_min * 60
        return retries_done < (self.max_attempts or 0)

    def describe_limit(self) -> str:
        """The bound in words: ``of 3`` (attempts in all) or ``within 5 min``."""
        if self.expire_after_min is not None:
            return f"within {self.expire_after_min} min of the step's start"
        return f"of {(self.max_attempts or 0) + 1}"


def retry_policies(
    step: str, entries: tuple[Mapping[str, Any], ...] | None
) -> tuple[RetryPolicy, ...]:
    """The typed RetryPolicies of step ``step``.

    Raises:
        DefinitionError: one line naming the step, the field and the allowed values.
    """
    return tuple(_policy(step, i, entry) for i, entry in enumerate(entries or ()))


def _policy(step: str, index: int, entry: Mapping[str, Any]) -> RetryPolicy:
    where = f"step '{step}': RetryPolicies[{index}]"
    kinds = entry.get("ExceptionType")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise DefinitionError(f"{where}.ExceptionType must be a non-empty list of strings")
    unknown = sorted(set(kinds) - EXCEPTION_TYPES)
    if unknown:
        raise DefinitionError(
            f"{where}.ExceptionType: {', '.join(unknown)} unknown; "
            f"use {', '.join(sorted(EXCEPTION_TYPES))}"
        )
    interval = _number(
        where, entry, "IntervalSeconds", DEFAULT_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS
    )
    backoff = _number(where, entry, "BackoffRate", DEFAULT_BACKOFF_RATE, None)
    attempts, expire = entry.get("MaxAttempts"), entry.get("ExpireAfterMin")
    if attempts is not None and expire is not None:
        raise DefinitionError(f"{where}: give MaxAttempts or ExpireAfterMin, not both")
    if expire is not None:
        return RetryPolicy(
            frozenset(kinds),
            interval,
            backoff,
            None,
            int(_number(where, entry, "ExpireAfterMin", 0, MAX_EXPIRE_AFTER_MIN, integer=True)),
        )
    max_attempts = _number(
        where, entry, "MaxAttempts", DEFAULT_MAX_ATTEMPTS, MAX_ATTEMPTS_CAP, integer=True
    )
    return RetryPolicy(frozenset(kinds), interval, backoff, int(max_attempts))


def _number(
    where: str,
    entry: Mapping[str, Any],
    key: str,
    default: float,
    maximum: float | None,
    integer: bool = False,
) -> float:
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
        or not math.isfinite(value)  # JSON as Python reads it allows NaN and Infinity
        or value < 0
    ):
        kind = "integer" if integer else "number"
        raise DefinitionError(f"{where}.{key} must be a non-negative {kind}, not {value!r}")
    if maximum is not None and value > maximum:
        raise DefinitionError(f"{where}.{key} is {value}; SageMaker allows at most {maximum:g}")
    return float(value)


__all__ = ["EXCEPTION_TYPES", "RetryPolicy", "retry_policies"]
