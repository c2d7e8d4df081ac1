"""Selective executions and retries on SageMaker: the requests that reach the service.

StartPipelineExecution runs against a moto server (which accepts SelectiveExecutionConfig);
the request is read as botocore sends it. moto lacks RetryPipelineExecution: it is served from
a recording validated by botocore's Stubber.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sagepipe.cli.main import run_cli
from sagepipe.cloud.client import Clients
from tests.integration.test_cloud import ROLE, moto_env, recording

__all__ = ["moto_env"]  # the fixture, shared with test_cloud.py


@pytest.fixture
def sent(
    moto_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    """The deployed app, one execution of it, and every StartPipelineExecution request after."""
    monkeypatch.setenv("SAGEPIPE_ROLE_ARN", ROLE)
    assert run_cli(["deploy"]) == 0
    requests: list[dict[str, Any]] = []
    original = Clients.from_settings

    def hooked(cls: type[Clients], settings: Any) -> Clients:
        clients = original(settings)
        clients.sagemaker.meta.events.register(
            "provide-client-params.sagemaker.StartPipelineExecution",
            lambda params, **kw: requests.append(dict(params)),
        )
        return clients

    monkeypatch.setattr(Clients, "from_settings", classmethod(hooked))
    capsys.readouterr()
    return requests


def test_steps_and_from_start_a_selective_execution(
    sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["run", "--backend", "sagemaker", "--no-wait", "--from", "train"]) == 0
    first = capsys.readouterr().out.strip()
    # With no earlier execution there is no reference to name (the SDK does the same).
    assert sent[0]["SelectiveExecutionConfig"] == {
        "SelectedSteps": [
            {"StepName": s}
            for s in sorted(
                [
                    "train",
                    "evaluate",
                    "quality_gate",
                    "publish_model",
                    "quality_too_low",
                    "register_model",
                ]
            )
        ]
    }
    assert run_cli(["run", "--backend", "sagemaker", "--no-wait", "--steps", "train,evaluate"]) == 0
    second = capsys.readouterr().out.strip()
    assert sent[1]["SelectiveExecutionConfig"] == {
        "SelectedSteps": [{"StepName": "evaluate"}, {"StepName": "train"}],
        "SourcePipelineExecutionArn": first,  # the newest execution
    }
    args = ["--steps", "evaluate", "--reference", first]
    assert run_cli(["run", "--backend", "sagemaker", "--no-wait", *args]) == 0
    assert sent[2]["SelectiveExecutionConfig"]["SourcePipelineExecutionArn"] == first
    assert second != first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "trian"], "no step 'trian' (did you mean train?)"),
        (["--steps", "read_data,train"], "lies between the selected steps"),
        (["--from", "train", "--reference", "abc123"], "on SageMaker give the execution's ARN"),
    ],
)
def test_bad_selections_never_reach_sagemaker(
    sent: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run_cli(["run", "--backend", "sagemaker", "--no-wait", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert sent == []


@pytest.mark.usefixtures("moto_env")
def test_retry_calls_retry_pipeline_execution(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/penguins-training/execution/abc"
    stubbed = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(stubbed)
    stubber.add_response(
        "retry_pipeline_execution",
        recording("retry_pipeline_execution", execution_arn=arn),
        {"PipelineExecutionArn": arn},
    )
    clients = Clients(stubbed, boto3.client("logs", region_name="us-east-1"), "us-east-1")
    monkeypatch.setattr(Clients, "from_settings", classmethod(lambda cls, s: clients))
    with stubber:
        assert run_cli(["executions", "retry", arn, "--backend", "sagemaker"]) == 0
    assert capsys.readouterr().out.strip() == arn
    stubber.assert_no_pending_responses()
