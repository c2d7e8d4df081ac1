"""Golden definitions from the official SDK: round trip, and sagepipe compiles the same JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sagepipe import (
    CacheConfig,
    ConditionEquals,
    ConditionGreaterThan,
    ConditionGreaterThanOrEqualTo,
    ConditionIn,
    ConditionLessThan,
    ConditionLessThanOrEqualTo,
    ConditionNot,
    ConditionOr,
    ConditionStep,
    Estimator,
    ExecutionVariables,
    FailStep,
    Join,
    JsonGet,
    MetricDefinition,
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    PropertyFile,
    RegisterModel,
    SageMakerJobStepRetryPolicy,
    StepRetryPolicy,
    TrainingInput,
    TrainingStep,
)
from sagepipe.definition import compile_pipeline, load
from tests.conftest import FIXTURES

SDK = FIXTURES / "sdk"
FIXTURE_FILES = sorted(SDK.glob("*.json"))
ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_there_are_v2_and_v3_fixtures() -> None:
    names = {p.name for p in FIXTURE_FILES}
    assert {"v2_full.json", "v2_generic_training.json", "v3_full.json"} <= names


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_round_trips(path: Path) -> None:
    raw = json.loads(path.read_text())
    definition = load(path)
    assert definition.to_json() == raw
    assert load(definition.dumps()) == definition


def test_v3_keeps_keys_sagepipe_does_not_model() -> None:
    d = load(SDK / "v3_full.json")
    assert "MlflowConfig" in d.extra
    assert d.to_json()["MlflowConfig"]["MlflowExperimentName"] == "fixture"


def sagepipe_equivalent_of_v2_full() -> Pipeline:
    """The pipeline generate_v2.py builds with the SDK, written with sagepipe's API."""
    scripts = SDK / "scripts"
    input_data = ParameterString("InputData", default_value="s3://sdk-fixtures/data/raw")
    instance_type = ParameterString(
        "ProcessingInstanceType",
        default_value="ml.m5.xlarge",
        enum_values=["ml.m5.xlarge", "ml.m5.2xlarge"],
    )
    epochs = ParameterInteger("Epochs", default_value=2)
    mse_threshold = ParameterFloat("MseThreshold", default_value=1000.0)
    strict = ParameterBoolean("Strict", default_value=False)
    cache = CacheConfig(enable_caching=True, expire_after="P30D")
    retries = [
        StepRetryPolicy(
            ["SERVICE_FAULT", "THROTTLING"], interval_seconds=1, backoff_rate=2.0, max_attempts=3
        ),
        SageMakerJobStepRetryPolicy(["JOB_INTERNAL_ERROR"], interval_seconds=2, max_attempts=2),
    ]
    preprocess = ProcessingStep(
        "Preprocess",
        processor=Processor(
            framework="sklearn",
            framework_version="1.2-1",
            role=ROLE,
            instance_type=instance_type,
            env={"MODE": "fixture"},
        ),
        inputs=[ProcessingInput(input_data, "/opt/ml/processing/input/data")],
        outputs=[
            ProcessingOutput("/opt/ml/processing/train", output_name="train"),
            ProcessingOutput("/opt/ml/processing/test", output_name="test"),
        ],
        code=str(scripts / "preprocess.py"),
        cache_config=cache,
        retry_policies=retries,
    )
    train = TrainingStep(
        "Train",
        estimator=Estimator(
            entry_point="train.py",
            source_dir=str(scripts),
            framework="sklearn",
            framework_version="1.2-1",
            role=ROLE,
            output_path="s3://sdk-fixtures/models",
            hyperparameters={"epochs": epochs, "learning-rate": 0.1},
            metric_definitions=[
                MetricDefinition("train:loss", "train:loss=([0-9\\.]+)"),
                MetricDefinition("validation:accuracy", "validation:accuracy=([0-9\\.]+)"),
            ],
        ),
        inputs={
            "train": TrainingInput(
                preprocess.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
                content_type="text/csv",
            )
        },
        cache_config=cache,
    )
    report = PropertyFile("EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        "Evaluate",
        processor=Processor(image_uri=IMAGE, role=ROLE),
        inputs=[
            ProcessingInput(
                train.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"
            ),
            ProcessingInput(
                preprocess.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                "/opt/ml/processing/test",
            ),
        ],
        outputs=[ProcessingOutput("/opt/ml/processing/evaluation", output_name="evaluation")],
        code=str(scripts / "evaluate.py"),
        property_files=[report],
    )
    register = RegisterModel(
        "RegisterModel-RegisterModel",
        model_package_group_name="FixtureModels",
        model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
        image_uri=IMAGE,
        model_metrics_uri=Join(
            "/",
            (
                evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
                "evaluation.json",
            ),
        ),
    )
    fail = FailStep(
        "MseTooHigh",
        error_message=Join(
            " ", ("Execution", ExecutionVariables.PIPELINE_EXECUTION_ID, "mse above", mse_threshold)
        ),
    )
    mse = JsonGet("Evaluate", report, "regression_metrics.mse.value")
    condition = ConditionStep(
        "CheckMse",
        conditions=[
            ConditionLessThanOrEqualTo(mse, mse_threshold),
            ConditionOr(
                [
                    ConditionEquals(strict, False),
                    ConditionGreaterThan(JsonGet("Evaluate", report, "accuracy"), 0.5),
                ]
            ),
            ConditionNot(ConditionIn(instance_type, ["ml.t3.medium", "ml.c5.large"])),
            ConditionGreaterThanOrEqualTo(epochs, 1),
            ConditionLessThan(epochs, 100),
        ],
        if_steps=[register],
        else_steps=[fail],
    )
    return Pipeline(
        "SdkFullPipeline",
        steps=[preprocess, train, evaluate, condition],
        parameters=[input_data, instance_type, epochs, mse_threshold, strict],
    )


# Intentional differences, normalized away before comparing:
# 1. code lives at s3://<bucket>/app/<pipeline>/code/<sha256>/<file> (the SDK: <pipeline>/code/<its hash>/);
# 2. default processing outputs live under other/outputs/<pipeline>/<exec>/<step>/<output>
#    (the SDK: <pipeline>/<exec>/<step>/output/<output>).
_CODE = re.compile(r"^(\"?)s3://sdk-fixtures/(?:app/)?SdkFullPipeline/code/[0-9a-f]{64}/(.+)$")


def normalize(value: Any) -> Any:
    if isinstance(value, str):
        return _CODE.sub(r"\1<code>/\2", value)
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        join = value.get("Std:Join")
        if isinstance(join, dict) and join.get("Values", [None])[0] == "s3:/":
            vals = [v for v in join["Values"] if v not in ("output", "other/outputs")]
            return {"Std:Join": {"On": join["On"], "Values": normalize(vals)}}
        return {k: normalize(v) for k, v in value.items()}
    return value


def test_sagepipe_compiles_what_the_sdk_emits() -> None:
    compiled = compile_pipeline(sagepipe_equivalent_of_v2_full(), bucket="sdk-fixtures")
    ours = compiled.definition.to_json()
    sdk = json.loads((SDK / "v2_full.json").read_text())
    assert normalize(ours) == normalize(sdk)
    # The differences are exactly the intentional ones.
    assert ours != sdk
    uris = {u.uri.rsplit("/", 1)[-1] for u in compiled.uploads}
    assert uris == {"preprocess.py", "evaluate.py", "sourcedir.tar.gz"}
    assert all(
        u.uri.startswith("s3://sdk-fixtures/app/SdkFullPipeline/code/") for u in compiled.uploads
    )


def test_compiling_is_deterministic_and_content_addressed(tmp_path: Path) -> None:
    first = compile_pipeline(sagepipe_equivalent_of_v2_full(), bucket="sdk-fixtures")
    second = compile_pipeline(sagepipe_equivalent_of_v2_full(), bucket="sdk-fixtures")
    assert first.definition.dumps() == second.definition.dumps()
    assert [u.uri for u in first.uploads] == [u.uri for u in second.uploads]
    for upload in first.uploads:
        assert upload.sha256 in upload.uri


def test_loaded_definition_equals_compiled_model() -> None:
    compiled = compile_pipeline(sagepipe_equivalent_of_v2_full(), bucket="sdk-fixtures")
    assert load(compiled.definition.dumps()) == compiled.definition


RUNNABLE = [p for p in FIXTURE_FILES if "mismatch" not in p.name]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_validate_passes_every_sdk_fixture(
    path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sagepipe.cli.main import run_cli

    # validate also checks that each step can run here: the generic fixture's own image is mapped
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sagepipe.images]\n"my-trainer" = "{python}"\n"fn-runtime" = "{python}"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", str(path)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_validate_lists_a_function_pickled_on_another_python(
    version: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagepipe.cli.main import run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli(["validate", str(SDK / f"functions_{version}_mismatch.json")]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "cannot run here: step 'OnPython310': the function was pickled on Python 3.11 but image "
        "sagemaker-base-python-310:1.0 has Python 3.10 (SageMaker fails this job)"
    ) in out
