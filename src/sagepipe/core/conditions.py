"""Conditions for ConditionStep, in the forms the SageMaker definition uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sagepipe.core.expressions import PipelineValue, freeze_list, to_expr
from sagepipe.core.json_types import JSON
from sagepipe.errors import PipelineError
from sagepipe.records import record


class Condition:
    """Base of every condition."""

    def to_request(self) -> dict[str, JSON]:
        """The condition's definition JSON."""
        raise NotImplementedError


@record
class ConditionComparison(Condition):
    """``left <op> right``; either side may be a primitive or an expression."""

    left: PipelineValue
    right: PipelineValue
    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        to_expr(self.left)
        to_expr(self.right)

    def to_request(self) -> dict[str, JSON]:
        return {
            "Type": self.TYPE,
            "LeftValue": to_expr(self.left),
            "RightValue": to_expr(self.right),
        }


@record
class ConditionEquals(ConditionComparison):
    """``left == right``."""

    TYPE: ClassVar[str] = "Equals"


@record
class ConditionGreaterThan(ConditionComparison):
    """``left > right``."""

    TYPE: ClassVar[str] = "GreaterThan"


@record
class ConditionGreaterThanOrEqualTo(ConditionComparison):
    """``left >= right``."""

    TYPE: ClassVar[str] = "GreaterThanOrEqualTo"


@record
class ConditionLessThan(ConditionComparison):
    """``left < right``."""

    TYPE: ClassVar[str] = "LessThan"


@record
class ConditionLessThanOrEqualTo(ConditionComparison):
    """``left <= right``."""

    TYPE: ClassVar[str] = "LessThanOrEqualTo"


@record
class ConditionIn(Condition):
    """``value in in_values``."""

    value: PipelineValue
    in_values: Sequence[PipelineValue]

    def __post_init__(self) -> None:
        freeze_list(self, "in_values")
        if not self.in_values:
            raise PipelineError("ConditionIn needs at least one value in in_values")

    def to_request(self) -> dict[str, JSON]:
        return {
            "Type": "In",
            "QueryValue": to_expr(self.value),
            "Values": [to_expr(v) for v in self.in_values],
        }


@record
class ConditionNot(Condition):
    """The negation of ``expression``."""

    expression: Condition

    def to_request(self) -> dict[str, JSON]:
        return {"Type": "Not", "Condition": self.expression.to_request()}


@record
class ConditionOr(Condition):
    """True when any of ``conditions`` is."""

    conditions: Sequence[Condition]

    def __post_init__(self) -> None:
        freeze_list(self, "conditions")
        if not self.conditions:
            raise PipelineError("ConditionOr needs at least one condition")

    def to_request(self) -> dict[str, JSON]:
        return {"Type": "Or", "Conditions": [c.to_request() for c in self.conditions]}
