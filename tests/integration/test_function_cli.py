"""A pipeline file with @step functions, through the CLI: stable definitions, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXE = str(Path(sys.executable).parent / "sagepipe")

PIPELINE = """
from sagepipe import ConditionGreaterThan, ConditionStep, FailStep, ParameterFloat, Pipeline, step

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:3.11"


@step(name="measure", instance_type="ml.m5.large", image_uri=IMAGE, dependencies="requirements.txt")
def measure(scale: float) -> float:
    return {body} * scale


def get_pipeline(bucket: str, region: str):
    scale = ParameterFloat("Scale", default_value=1.0)
    value = measure(scale)
    gate = ConditionStep(
        "gate",
        conditions=[ConditionGreaterThan(left=value, right=0.5)],
        if_steps=[],
        else_steps=[FailStep("low", error_message="too low")],
    )
    return Pipeline("fn-cli", steps=[gate], parameters=[scale])
"""


def sp(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    clean.update(env or {})
    return subprocess.run(
        [EXE, *args], cwd=project, env=clean, capture_output=True, text=True, timeout=300
    )


def project(tmp_path: Path, body: str = "0.75") -> Path:
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "fn-bucket"\n')
    (root / "requirements.txt").write_text("numpy\n")
    (root / "app" / "sagemaker_pipeline.py").write_text(PIPELINE.format(body=body))
    return root


def definition(root: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = sp(root, "definition", env=env)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_the_definition_of_an_unchanged_file_is_the_same_in_every_process(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = definition(root, {"PYTHONHASHSEED": "1"})
    second = definition(root, {"PYTHONHASHSEED": "2"})
    assert first == second
    steps = {s["Name"]: s for s in first["Steps"]}
    assert steps["measure"]["DisplayName"] == "sagemaker_pipeline.measure"
    args = steps["measure"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert args[:2] == ["--s3_base_uri", "s3://fn-bucket/other/functions/fn-cli"]
    assert args[-2:] == ["--serialize_output_to_json", "true"]
    assert steps["gate"]["DependsOn"] == ["measure"]
    # The region of the settings reaches the job.
    other = definition(root, {"AWS_REGION": "eu-west-1"})
    measure = {s["Name"]: s for s in other["Steps"]}["measure"]["Arguments"]
    assert measure["Environment"] == {"AWS_DEFAULT_REGION": "eu-west-1"}
    assert measure["AlgorithmSpecification"]["ContainerArguments"][3] == "eu-west-1"


def test_an_edited_function_gets_new_payload_uris(tmp_path: Path) -> None:
    before = definition(project(tmp_path))
    after = definition(project(tmp_path, body="0.25"))
    args = [
        {s["Name"]: s for s in d["Steps"]}["measure"]["Arguments"]["AlgorithmSpecification"][
            "ContainerArguments"
        ]
        for d in (before, after)
    ]
    at = args[0].index("--func_step_s3_dir") + 1
    assert args[0][at] != args[1][at]
    assert {s["Name"]: s for s in before["Steps"]}["gate"] == {
        s["Name"]: s for s in after["Steps"]
    }["gate"]


def test_a_missing_dependencies_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "requirements.txt").unlink()
    out = sp(root, "definition")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "function step 'measure': dependencies file 'requirements.txt' not found" in out.stderr
