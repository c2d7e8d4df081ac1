"""``run --skip-unsupported``: steps with no local runner, and what depends on them, end NotRun.

The definitions are sagepipe-compiled processing steps with SageMaker-only steps (QualityCheck,
Lambda, EMR, a Condition reading a Lambda's output) added as the SDK writes them; each run is a
real ``sagepipe`` process or a real engine on the process sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagepipe import Pipeline, ProcessingStep, Processor
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline, load
from sagepipe.engine.execution import LocalExecution
from sagepipe.engine.factory import build_engine, upload_code
from sagepipe.engine.history import History
from sagepipe.errors import DefinitionError
from tests.integration.helpers import SCRIPTS, sandbox

EXE = str(Path(sys.executable).with_name("sagepipe"))
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PROC = Processor(image_uri=IMAGE)


def quality_check(name: str, depends_on: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "QualityCheck",
        "Arguments": {"ProcessingResources": {"ClusterConfig": {"InstanceCount": 1}}},
        "CheckType": "DATA_QUALITY",
        "DependsOn": depends_on,
        "ModelPackageGroupName": "g",
        "SkipCheck": False,
        "RegisterNewBaseline": False,
    }


def lambda_step(name: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Type": "Lambda",
        "Arguments": {},
        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:notify",
        "OutputParameters": [{"OutputName": "ok", "OutputType": "Boolean"}],
    }


def definition(settings: Settings, tmp_path: Path, fail: bool = False) -> Path:
    """prep -> check (QualityCheck) -> after; notify (Lambda) -> gate (Condition on its output)
    -> [emr (EMR) | done]; a sibling that runs (or fails) alone."""
    prep = ProcessingStep("prep", processor=PROC, code="hello.py")
    sibling = ProcessingStep("sibling", processor=PROC, code="fail.py" if fail else "hello.py")
    after = ProcessingStep("after", processor=PROC, code="hello.py")
    done = ProcessingStep("done", processor=PROC, code="hello.py")
    compiled = compile_pipeline(
        Pipeline("skips", steps=[prep, sibling, after, done]),
        bucket=settings.bucket,
        base_dir=SCRIPTS,
    )
    engine = build_engine(settings, sandbox("process"))
    upload_code(compiled, engine.store)
    data = compiled.definition.to_json()
    steps: list[dict[str, Any]] = data["Steps"]  # type: ignore[assignment]
    by_name = {s["Name"]: s for s in steps}
    by_name["after"]["DependsOn"] = ["check"]
    steps.remove(by_name["done"])
    steps.append(quality_check("check", ["prep"]))
    steps.append(lambda_step("notify"))
    steps.append(
        {
            "Name": "gate",
            "Type": "Condition",
            "Arguments": {
                "Conditions": [
                    {
                        "Type": "Equals",
                        "LeftValue": {"Get": "Steps.notify.OutputParameters['ok']"},
                        "RightValue": True,
                    }
                ],
                "IfSteps": [{"Name": "emr", "Type": "EMR", "Arguments": {"ClusterId": "j-1"}}],
                "ElseSteps": [by_name["done"]],
            },
        }
    )
    path = tmp_path / "skips.json"
    path.write_text(json.dumps(data))
    return path


def sp(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    env["SAGEPIPE_CACHE_DIR"] = os.environ["SAGEPIPE_CACHE_DIR"]
    return subprocess.run(
        [EXE, *args], cwd=project, capture_output=True, text=True, timeout=300, env=env
    )


WILL_NOT_RUN = {
    "check": "QualityCheck runs SageMaker Model Monitor's analyzer container",
    "after": "depends on 'check', which does not run locally",
    "notify": "Lambda invokes an AWS Lambda function",
    "gate": "depends on 'notify', which does not run locally",
    "emr": "EMR runs on an Amazon EMR cluster",
    "done": "depends on 'gate', which does not run locally",
}


def test_without_the_flag_the_run_lists_what_cannot_run_and_refuses(
    settings: Settings, tmp_path: Path
) -> None:
    path = definition(settings, tmp_path)
    res = sp(settings.project_root, "run", str(path), "--sandbox", "process")
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.splitlines()  # one line names each step, why, and the flag
    assert line.startswith("error: steps 'check' (QualityCheck runs SageMaker Model Monitor")
    for name in ("check", "notify", "emr"):
        assert f"'{name}' ({WILL_NOT_RUN[name]})" in line
    assert "run the other steps with `sagepipe run --skip-unsupported`" in line
    assert "prep" not in res.stdout  # nothing started
    assert History(settings.history_path).executions() == []


def test_with_the_flag_the_rest_runs_and_the_skipped_steps_read_not_run(
    settings: Settings, tmp_path: Path
) -> None:
    path = definition(settings, tmp_path)
    res = sp(settings.project_root, "run", str(path), "--sandbox", "process", "--skip-unsupported")
    assert res.returncode == 0, res.stdout + res.stderr
    said = res.stderr.splitlines()
    first_run = next(i for i, ln in enumerate(said) if ln.startswith("execution "))
    announced = [ln for ln in said[:first_run] if ln.startswith("not run: ")]
    assert len(announced) == len(WILL_NOT_RUN)  # one line each, before anything starts
    assert "status: Succeeded" in res.stdout
    history = History(settings.history_path)
    (execution,) = history.executions()
    steps = {s.name: s for s in history.steps(execution.id)}
    assert {n: s.status for n, s in steps.items()} == {
        "prep": "Succeeded",
        "sibling": "Succeeded",
        **dict.fromkeys(WILL_NOT_RUN, "NotRun"),
    }
    for name, why in WILL_NOT_RUN.items():
        assert why in (steps[name].failure_reason or ""), name
        assert steps[name].ended is not None and steps[name].cache_key is None


def test_a_failure_still_fails_the_execution(settings: Settings, tmp_path: Path) -> None:
    path = definition(settings, tmp_path, fail=True)
    res = sp(settings.project_root, "run", str(path), "--sandbox", "process", "--skip-unsupported")
    assert res.returncode == 1
    history = History(settings.history_path)
    (execution,) = history.executions()
    assert execution.status == "Failed"
    assert execution.failure_reason is not None and "'sibling'" in execution.failure_reason


def test_a_branch_not_taken_is_not_listed(settings: Settings, tmp_path: Path) -> None:
    """A Condition that runs picks the else branch: the EMR step of the if branch is not listed
    (as on SageMaker), and nothing downstream of a skipped step runs."""
    data = json.loads(definition(settings, tmp_path).read_text())
    gate = next(s for s in data["Steps"] if s["Name"] == "gate")
    gate["Arguments"]["Conditions"][0]["LeftValue"] = 1
    engine = build_engine(settings, sandbox("process"))
    with pytest.raises(DefinitionError, match="--skip-unsupported"):
        engine.prepare(load(data), "skips", {})
    run = engine.prepare(load(data), "skips", {}, skip_unsupported=True)
    execution = LocalExecution(engine, run).start()
    assert execution.wait(300) == "Succeeded"
    got = {s["StepName"]: s["StepStatus"] for s in execution.list_steps()}
    assert got == {
        "prep": "Succeeded",
        "sibling": "Succeeded",
        "check": "NotRun",
        "after": "NotRun",
        "notify": "NotRun",
        "gate": "Succeeded",
        "done": "Succeeded",
    }
    step = next(s for s in execution.list_steps() if s["StepName"] == "check")
    assert step["FailureReason"].startswith("QualityCheck runs SageMaker Model Monitor")
