"""Condition and Fail steps: outcomes, branches and failure reasons."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sagepipe.definition.model import StepDef
from sagepipe.engine.control import run_condition, run_fail
from sagepipe.engine.evaluation import Scope


class Log:
    """A step log that keeps its lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def context(step: StepDef, arguments: dict[str, Any] | None = None) -> Any:
    """The part of a StepContext that condition and fail steps read."""
    scope = Scope(parameters={"Threshold": 0.8, "Label": "abc"}, execution={})
    return SimpleNamespace(step=step, scope=scope, log=Log(), arguments=arguments or {})


def condition(*conditions: dict[str, Any]) -> StepDef:
    return StepDef("Check", "Condition", {"Conditions": list(conditions)})


def gte(left: Any, right: Any) -> dict[str, Any]:
    return {"Type": "GreaterThanOrEqualTo", "LeftValue": left, "RightValue": right}


def test_all_conditions_true_takes_the_if_branch() -> None:
    ctx = context(condition(gte(0.9, {"Get": "Parameters.Threshold"}), gte(1, 1)))
    outcome = run_condition(ctx)
    assert outcome.status == "Succeeded"
    assert outcome.branch == "if"
    assert outcome.properties == {"Outcome": "True"}
    assert outcome.metadata == {"Condition": {"Outcome": "True"}}
    assert ctx.log.lines == ["conditions evaluated to True"]


def test_one_false_condition_takes_the_else_branch() -> None:
    outcome = run_condition(context(condition(gte(0.9, 0.8), gte(0.1, 0.8))))
    assert (outcome.status, outcome.branch, outcome.properties) == (
        "Succeeded",
        "else",
        {"Outcome": "False"},
    )


def test_a_string_compared_with_a_number_fails_the_step() -> None:
    ctx = context(condition(gte({"Get": "Parameters.Label"}, {"Get": "Parameters.Threshold"})))
    outcome = run_condition(ctx)
    assert outcome.status == "Failed"
    assert outcome.branch is None
    reason = outcome.failure_reason or ""
    assert reason.startswith("ClientError: Failed to evaluate condition GreaterThanOrEqualTo")
    assert "'abc' (String) with 0.8 (Float)" in reason
    assert ctx.log.lines == [reason]


def test_fail_step_fails_with_its_message() -> None:
    step = StepDef("Stop", "Fail", {"ErrorMessage": "mse too high"})
    ctx = context(step, {"ErrorMessage": "mse 12.5 above 6"})
    outcome = run_fail(ctx)
    assert outcome.status == "Failed"
    assert outcome.failure_reason == "mse 12.5 above 6"
    assert outcome.metadata == {"Fail": {"ErrorMessage": "mse 12.5 above 6"}}
