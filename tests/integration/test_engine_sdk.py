"""SDK-generated definitions run end to end, scripts hardcoding /opt/ml paths, under bwrap;
and a pipeline whose scripts take paths as arguments, under both sandboxes."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from sagepipe import (
    ConditionLessThanOrEqualTo,
    ConditionStep,
    Estimator,
    FailStep,
    Join,
    JsonGet,
    MetricDefinition,
    ParameterFloat,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    PropertyFile,
    RegisterModel,
    TrainingStep,
)
from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.history import History
from sagepipe.storage import LocalStore
from tests.conftest import FIXTURES, HAS_BWRAP
from tests.integration.helpers import run, seed_sdk_objects, statuses

needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@needs_bwrap
def test_sdk_v2_definition_runs_under_bwrap(settings: Settings) -> None:
    seed_sdk_objects(settings)
    definition = load(FIXTURES / "sdk" / "v2_full.json")
    execution = run(settings, definition, "bwrap", name="SdkFullPipeline")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == {
        "Preprocess": "Succeeded",
        "Train": "Succeeded",
        "Evaluate": "Succeeded",
        "CheckMse": "Succeeded",
        "RegisterModel-RegisterModel": "Succeeded",
    }
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["CheckMse"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert steps["Train"]["Metadata"]["TrainingJob"]["Arn"].startswith(
        f"arn:aws:sagemaker:us-east-1:000000000000:training-job/pipelines-{execution.execution_id}-train-"
    )
    assert "MseTooHigh" not in steps
    record = {r.name: r for r in History(settings.history_path).steps(execution.execution_id)}
    metrics = {
        m["MetricName"]: m["Value"] for m in record["Train"].properties["FinalMetricDataList"]
    }
    assert metrics == {"train:loss": 0.5, "validation:accuracy": 0.9}
    model_uri = record["Train"].properties["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri.startswith("s3://sdk-fixtures/models/pipelines-") and model_uri.endswith(
        "/output/model.tar.gz"
    )
    store = LocalStore(settings.local_store_root)
    with tarfile.open(fileobj=io.BytesIO(store.get(model_uri))) as tar:
        assert json.load(tar.extractfile("model.json"))["epochs"] == 2  # type: ignore[arg-type]
    exec_id = execution.execution_id
    out = f"s3://sdk-fixtures/SdkFullPipeline/{exec_id}/Preprocess/output/train/train.csv"
    assert store.get(out).startswith(b"a,b,y\r\n")  # csv.writer line ends
    models = History(settings.history_path).models("FixtureModels")
    assert len(models) == 1 and models[0]["model_data_url"] == model_uri
    log = store.get(f"s3://test-bucket/other/logs/SdkFullPipeline/{exec_id}/Evaluate.log").decode()
    assert "mse=" in log


@needs_bwrap
def test_sdk_v2_else_branch_fails_with_the_message(settings: Settings) -> None:
    seed_sdk_objects(settings)
    definition = load(FIXTURES / "sdk" / "v2_full.json")
    execution = run(settings, definition, "bwrap", parameters={"MseThreshold": "0.001"})
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    reason = f"Execution {execution.execution_id} mse above 0.001"
    assert desc["FailureReason"] == f"Step 'MseTooHigh' failed with message: {reason}"
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["MseTooHigh"]["Metadata"] == {"Fail": {"ErrorMessage": reason}}
    assert steps["CheckMse"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert "RegisterModel-RegisterModel" not in steps


@needs_bwrap
def test_sdk_v3_definition_runs_with_a_stand_in_driver(settings: Settings) -> None:
    """v3 ModelTrainer runs sm_drivers/sm_train.sh; the SDK's driver is not ours to ship, so a
    stand-in with the same contract (code channel, SM_* variables) takes its place."""
    seed_sdk_objects(settings)
    definition = load(FIXTURES / "sdk" / "v3_full.json")
    train_args = definition.step("Train").arguments
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in train_args["InputDataConfig"]
    }
    store = LocalStore(settings.local_store_root)
    store.put(
        channels["sm_drivers"] + "/sm_train.sh",
        b"#!/bin/bash\nset -e\ncd /opt/ml/input/data/code\npython3 train.py --epochs 3\n",
    )
    execution = run(settings, definition, "bwrap", parameters={"AccuracyThreshold": "0.5"})
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert set(statuses(execution)) == {"Preprocess", "Train", "Evaluate", "CheckAccuracy"}


def path_argument_pipeline() -> Pipeline:
    threshold = ParameterFloat("MaxMse", default_value=100.0)
    proc = Processor(image_uri=IMAGE)
    split = ProcessingStep(
        "split",
        processor=proc,
        code="split.py",
        inputs=[ProcessingInput("s3://sdk-fixtures/data/raw", "/opt/ml/processing/input/data")],
        outputs=[
            ProcessingOutput("/opt/ml/processing/train", output_name="train"),
            ProcessingOutput("/opt/ml/processing/test", output_name="test"),
        ],
        job_arguments=[
            "--input",
            "/opt/ml/processing/input/data",
            "--train",
            "/opt/ml/processing/train",
            "--test",
            "/opt/ml/processing/test",
        ],
    )
    fit = TrainingStep(
        "fit",
        estimator=Estimator(
            entry_point="fit.py",
            framework="sklearn",
            framework_version="1.2-1",
            hyperparameters={"scale": 1.0},
            metric_definitions=[
                MetricDefinition("loss", "loss#011([0-9.]+)"),
                MetricDefinition("score", "score=([0-9.]+)"),
            ],
        ),
        inputs={"train": split.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri},
    )
    report = PropertyFile("Report", output_name="report", path="report.json")
    score = ProcessingStep(
        "score",
        processor=proc,
        code="score.py",
        inputs=[
            ProcessingInput(
                fit.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"
            ),
            ProcessingInput(
                split.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                "/opt/ml/processing/test",
            ),
        ],
        outputs=[ProcessingOutput("/opt/ml/processing/report", output_name="report")],
        job_arguments=[
            "--model",
            "/opt/ml/processing/model",
            "--test",
            "/opt/ml/processing/test",
            "--out",
            "/opt/ml/processing/report",
        ],
        property_files=[report],
    )
    gate = ConditionStep(
        "gate",
        conditions=[ConditionLessThanOrEqualTo(JsonGet("score", report, "mse"), threshold)],
        if_steps=[
            RegisterModel(
                "register",
                model_package_group_name="demo",
                model_data=fit.properties.ModelArtifacts.S3ModelArtifacts,
                image_uri=IMAGE,
            )
        ],
        else_steps=[FailStep("too_bad", error_message=Join(" ", ("mse above", threshold)))],
    )
    return Pipeline("paths", steps=[split, fit, score, gate], parameters=[threshold])


@pytest.mark.parametrize("kind", ["process", pytest.param("bwrap", marks=needs_bwrap)])
def test_path_argument_pipeline_runs_in_both_sandboxes(settings: Settings, kind: str) -> None:
    seed_sdk_objects(settings)
    execution = run(settings, path_argument_pipeline(), kind)
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", execution.describe().get(
        "FailureReason"
    )
    assert statuses(execution) == {
        s: "Succeeded" for s in ("split", "fit", "score", "gate", "register")
    }
    fit = {r.name: r for r in History(settings.history_path).steps(execution.execution_id)}["fit"]
    names = {m["MetricName"] for m in fit.properties["FinalMetricDataList"]}
    assert names == {"loss", "score"}  # '#011' in an AWS regex matches a tab


@pytest.mark.parametrize("kind", ["process", pytest.param("bwrap", marks=needs_bwrap)])
def test_threshold_failure_runs_the_fail_step(settings: Settings, kind: str) -> None:
    seed_sdk_objects(settings)
    execution = run(settings, path_argument_pipeline(), kind, parameters={"MaxMse": "0.0001"})
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert desc["FailureReason"] == "Step 'too_bad' failed with message: mse above 0.0001"
