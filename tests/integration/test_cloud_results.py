"""`sagepipe executions result --backend sagemaker`: a function step's return value, read
from its training job's S3OutputPath as the SDK's ``execution.result(step)`` reads it.

The training jobs and the bucket live on a moto server; moto lacks
ListPipelineExecutionSteps, served from a recording validated by botocore's Stubber.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sagepipe.cli.main import run_cli
from sagepipe.cloud.client import Clients
from sagepipe.definition.function_payloads import metadata_json
from tests.integration.test_cloud import ROLE, hybrid, moto_env, recording, s3, sm

__all__ = ["moto_env"]  # the fixture, shared with test_cloud.py

ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/fn-chain/execution/e1"
RESULTS = "s3://fn-results/FnChain/e1/Summarise/results"
BOOTSTRAP = "/opt/ml/input/data/sagemaker_remote_function_bootstrap/job_driver.sh"


def _job(client: Any, name: str, entrypoint: list[str] | None, output: str) -> None:
    algorithm: dict[str, Any] = {"TrainingImage": "fn-runtime:py311", "TrainingInputMode": "File"}
    if entrypoint is not None:  # a @step function's job: the SDK's bootstrap and its arguments
        algorithm["ContainerEntrypoint"] = entrypoint
        algorithm["ContainerArguments"] = ["--s3_base_uri", "s3://fn-results/FnChain"]
    client.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification=algorithm,
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": output},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )


@pytest.fixture
def served(moto_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Stubber, bytes]:
    """A function step's result in the bucket, its job on moto, and the steps recording
    served for as many calls as a test makes."""
    client = sm(moto_env)
    _job(client, "fn-summarise", ["/bin/bash", BOOTSTRAP], RESULTS)
    _job(client, "fn-report", ["/bin/bash", BOOTSTRAP], RESULTS.replace("Summarise", "Report"))
    payload = pickle.dumps({"total": 45, "count": 10})
    bucket = s3(moto_env)
    bucket.create_bucket(Bucket="fn-results")
    key = RESULTS.removeprefix("s3://fn-results/")
    bucket.put_object(Bucket="fn-results", Key=f"{key}/payload.pkl", Body=payload)
    bucket.put_object(
        Bucket="fn-results", Key=f"{key}/metadata.json", Body=metadata_json(payload, "3.11")
    )
    fake, stubber = hybrid(client)
    steps = recording(
        "list_pipeline_execution_steps_functions",
        execution_arn=ARN,
        job="fn-summarise",
        failed_job="fn-report",
    )
    for _ in range(4):
        stubber.add_response(
            "list_pipeline_execution_steps",
            steps,
            {"PipelineExecutionArn": ARN, "SortOrder": "Descending"},
        )
    logs = boto3.client("logs", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    clients = Clients(fake, logs, "us-east-1")
    monkeypatch.setattr(Clients, "from_settings", classmethod(lambda cls, s: clients))
    return stubber, payload


def test_the_return_value_is_read_from_the_jobs_output_path(
    served: tuple[Stubber, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stubber, payload = served
    out = tmp_path / "summary.pkl"
    with stubber:
        argv = ["executions", "result", ARN, "Summarise", "--backend", "sagemaker"]
        assert run_cli([*argv, "-o", str(out)]) == 0
    assert out.read_bytes() == payload  # the pickle as the job wrote it, checked, unopened
    assert "saved the return value of Summarise" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("Report", "step 'Report' failed: AlgorithmError: ValueError('no numbers to report')"),
        ("Prepare", "step 'Prepare' is not a @step function"),
        ("Nope", "the execution ran no step 'Nope'; its steps: Prepare, Report, Summarise"),
    ],
)
def test_steps_without_a_return_value_say_why(
    served: tuple[Stubber, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    step: str,
    expected: str,
) -> None:
    stubber, _ = served
    with stubber:
        argv = ["executions", "result", ARN, step, "--backend", "sagemaker"]
        assert run_cli([*argv, "-o", str(tmp_path / "x.pkl")]) == 1
    assert expected in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.pkl").exists()


def test_a_changed_result_is_refused(
    served: tuple[Stubber, bytes],
    moto_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stubber, _ = served
    key = RESULTS.removeprefix("s3://fn-results/")
    s3(moto_env).put_object(Bucket="fn-results", Key=f"{key}/payload.pkl", Body=b"not it")
    with stubber:
        argv = ["executions", "result", ARN, "Summarise", "--backend", "sagemaker"]
        assert run_cli([*argv, "-o", str(tmp_path / "x.pkl")]) == 1
    assert "fails its integrity check" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.pkl").exists()
