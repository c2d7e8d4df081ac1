"""Condition steps end to end: JsonGet keys holding dots, values that cannot be compared."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sagepipe import (
    ConditionEquals,
    ConditionGreaterThan,
    ConditionStep,
    FailStep,
    JsonGet,
    ParameterString,
    Pipeline,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    PropertyFile,
)
from sagepipe.config import Settings
from tests.integration.helpers import run, statuses

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
REPORT = (
    "import json; json.dump({'metrics': {'a.b': {'value': 0.9}}}, "
    "open('/opt/ml/processing/evaluation/evaluation.json', 'w'))"
)


def test_json_get_reads_a_bracket_key_holding_a_dot(settings: Settings) -> None:
    report = PropertyFile("Report", "evaluation", "evaluation.json")
    evaluate = ProcessingStep(
        "Evaluate",
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", REPORT)),
        outputs=[ProcessingOutput("/opt/ml/processing/evaluation", output_name="evaluation")],
        property_files=[report],
    )
    check = ConditionStep(
        "Check",
        conditions=[ConditionGreaterThan(JsonGet("Evaluate", report, "metrics['a.b'].value"), 0.5)],
        else_steps=[FailStep("Low", error_message="value too low")],
    )
    execution = run(settings, Pipeline("dotted", steps=[evaluate, check]), "process")
    assert statuses(execution) == {"Evaluate": "Succeeded", "Check": "Succeeded"}
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}


def test_a_string_compared_with_a_number_fails_the_condition_step(settings: Settings) -> None:
    label = ParameterString("Label", default_value="abc")
    check = ConditionStep(
        "Check",
        conditions=[ConditionGreaterThan(label, 0.5)],
        else_steps=[FailStep("Low", error_message="value too low")],
    )
    execution = run(settings, Pipeline("compare", steps=[check], parameters=[label]), "process")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert desc["FailureReason"] == (
        "Step 'Check' failed with message: ClientError: Failed to evaluate condition "
        "GreaterThan: cannot compare 'abc' (String) with 0.5 (Float); GreaterThan compares numbers"
    )
    assert statuses(execution) == {"Check": "Failed"}


def test_steps_that_run_no_job_make_no_workspace(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = settings.home / "work"
    made: list[Path] = []
    mkdir = Path.mkdir

    def recording(self: Path, *args: Any, **kwargs: Any) -> None:
        if work in self.parents:
            made.append(self)
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", recording)
    label = ParameterString("Label", default_value="abc")
    check = ConditionStep(
        "Check",
        conditions=[ConditionEquals(label, "abc")],
        if_steps=[FailStep("Stop", error_message="stopped here")],
    )
    pipeline = Pipeline("no-job", steps=[check], parameters=[label])
    execution = run(settings, pipeline, "process")
    assert statuses(execution) == {"Check": "Succeeded", "Stop": "Failed"}
    assert made == []  # nothing made, so nothing to remove (a slow rmdir on some disks)
    assert not work.exists() or not any(work.iterdir())
    kept = run(replace(settings, keep_workspace=True), pipeline, "process")
    assert sorted(p.name for p in (work / kept.execution_id).iterdir()) == ["Check", "Stop"]
