"""What a finished run shows: metrics and property files per step, and foreign text verbatim."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.test_cli import sp

FIT = """import os
print("epoch 1 score=0.9321", flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("m")
"""
PIPELINE = """
from sagepipe import (Estimator, MetricDefinition, Pipeline, ProcessingOutput, ProcessingStep,
                      Processor, PropertyFile, TrainingStep)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
WRITE = "import json; json.dump({'accuracy': 0.93}, open('/opt/ml/processing/report/report.json', 'w'))"
fit = TrainingStep("fit", estimator=Estimator(
    entry_point="fit.py", framework="sklearn", framework_version="1.2-1",
    metric_definitions=[MetricDefinition("val:score", "score=([0-9.]+)")]))
report = ProcessingStep(
    "report",
    processor=Processor(image_uri=IMAGE, command=("python3", "-c", WRITE)),
    outputs=[ProcessingOutput("/opt/ml/processing/report", output_name="report")],
    property_files=[PropertyFile("Report", output_name="report", path="report.json")],
)
pipeline = Pipeline("results", steps=[fit, report])
"""
UNMAPPED = """
from sagepipe import Pipeline, ProcessingStep, Processor

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
FAIL = "import sys; sys.exit('error: map it under [tool.sagepipe.images] [b]x[/b]')"
pipeline = Pipeline("unmapped", steps=[ProcessingStep(
    "odd", processor=Processor(image_uri=IMAGE, command=("python3", "-c", FAIL)))])
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "results"\n')
    (tmp_path / "fit.py").write_text(FIT)
    (tmp_path / "pipe.py").write_text(PIPELINE)
    (tmp_path / "unmapped.py").write_text(UNMAPPED)
    return tmp_path


def test_run_and_steps_show_metrics_and_property_files(tmp_path: Path) -> None:
    project = _project(tmp_path)
    res = sp(project, "run", "pipe.py", "--sandbox", "process")
    assert res.returncode == 0, res.stdout + res.stderr
    match = re.search(r"execution (\w{12}) of results", res.stderr)
    assert match, res.stderr
    shown = sp(project, "executions", "steps", match.group(1))
    assert shown.returncode == 0, shown.stderr
    for out in (res.stdout, shown.stdout):
        assert "metrics" in out and "val:score=0.9321" in out
        assert 'report/Report: {"accuracy": 0.93}' in out
        assert "model (fit): s3://results/other/models/results/" in out


def test_foreign_text_keeps_its_brackets(tmp_path: Path) -> None:
    project = _project(tmp_path)
    res = sp(project, "run", "unmapped.py", "--sandbox", "process")
    assert res.returncode == 1
    live = [line for line in res.stdout.splitlines() if line.startswith("odd : Failed")]
    assert live and "[tool.sagepipe.images]" in live[0]
    reason = [line for line in res.stdout.splitlines() if line.startswith("reason:")]
    assert reason and "[tool.sagepipe.images]" in reason[0]
    table = "".join(res.stdout.split("status:")[0].split("execution")[-1].split())
    assert "[tool.sagepipe.images]" in table.replace("│", "")
    match = re.search(r"execution (\w{12}) of unmapped", res.stderr)
    assert match
    steps = sp(project, "executions", "steps", match.group(1))
    assert "[tool.sagepipe.images]" in "".join(steps.stdout.split()).replace("│", "")
