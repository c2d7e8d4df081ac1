"""Statuses are str-valued enums with one terminal set."""

from __future__ import annotations

import json

from sagepipe.core.status import TERMINAL, ExecutionStatus, StepStatus, is_terminal


def test_statuses_are_the_service_texts() -> None:
    assert [s.value for s in ExecutionStatus] == [
        "Executing",
        "Stopping",
        "Stopped",
        "Failed",
        "Succeeded",
    ]
    assert [s.value for s in StepStatus] == [
        "Starting",
        "Executing",
        "Stopping",
        "Stopped",
        "Failed",
        "Succeeded",
        "NotRun",
    ]


def test_a_status_is_its_text_in_json_and_comparisons() -> None:
    assert StepStatus.SUCCEEDED == "Succeeded"
    assert json.dumps({"status": ExecutionStatus.FAILED}) == '{"status": "Failed"}'
    assert f"{StepStatus.STOPPED}" == "Stopped"
    assert ExecutionStatus("Executing") is ExecutionStatus.EXECUTING


def test_terminal_set() -> None:
    assert frozenset({"Succeeded", "Failed", "Stopped", "NotRun"}) == TERMINAL
    assert {s for s in ExecutionStatus if is_terminal(s)} == {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.STOPPED,
    }
    assert {s for s in StepStatus if is_terminal(s)} == {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.STOPPED,
        StepStatus.NOT_RUN,
    }
    assert not is_terminal("Executing")
    assert not is_terminal("Stopping")
