"""The SageMaker backend against a moto server: deploy, start, inspect, dry-run cache
predictions, log following, and one-line errors. Operations moto lacks are served from
recordings validated by botocore's Stubber."""

from __future__ import annotations

import json
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sagepipe.cli.main import run_cli
from sagepipe.cloud import executions as ex
from sagepipe.cloud.client import Clients
from sagepipe.config import Settings
from sagepipe.errors import SageMakerError
from sagepipe.storage.aws import translate_aws_error
from tests.conftest import FIXTURES, ROOT
from tests.servers import MotoServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
RECORDINGS = FIXTURES / "recordings"


@pytest.fixture
def moto_env(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    moto_server.reset()
    env = {**moto_server.env(), "SAGEPIPE_BUCKET": "deploy-bucket"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    project = tmp_path / "proj"
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "pyproject.toml").write_text("[tool.sagepipe]\n")
    monkeypatch.chdir(project)
    return env


def sm(env: dict[str, str]) -> Any:
    return boto3.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")


def s3(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )


def test_deploy_start_describe(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEPIPE_ROLE_ARN", ROLE)  # the role is part of the definition
    assert run_cli(["definition"]) == 0
    printed = capsys.readouterr().out
    assert run_cli(["deploy", "--tag", "team=ml"]) == 0
    out, err = capsys.readouterr()
    arn = out.strip()
    assert arn.endswith(":pipeline/penguins-training")
    assert "7 code objects uploaded, 0 already present" in err
    stored = sm(moto_env).describe_pipeline(PipelineName="penguins-training")["PipelineDefinition"]
    assert stored == printed  # byte for byte what `sagepipe definition` prints and the engine runs
    keys = [o["Key"] for o in s3(moto_env).list_objects_v2(Bucket="deploy-bucket")["Contents"]]
    code = [k for k in keys if k.startswith("app/penguins-training/code/")]
    assert len(code) == 7 and all(len(k.split("/")[3]) == 64 for k in code)
    assert run_cli(["deploy"]) == 0
    assert "0 code objects uploaded, 7 already present" in capsys.readouterr().err
    assert (
        run_cli(["run", "--backend", "sagemaker", "--no-wait", "-p", "QualityThreshold=0.5"]) == 0
    )
    execution = capsys.readouterr().out.strip()
    assert "/execution/" in execution
    assert run_cli(["executions", "describe", execution, "--backend", "sagemaker"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["PipelineExecutionArn"] == execution
    assert run_cli(["executions", "list", "--backend", "sagemaker"]) == 0
    assert execution in capsys.readouterr().out
    params = sm(moto_env).list_pipeline_parameters_for_execution(PipelineExecutionArn=execution)[
        "PipelineParameters"
    ]
    assert {"Name": "QualityThreshold", "Value": "0.5"} in params


def test_dry_run_predicts_cache_hits_and_misses(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["deploy", "--dry-run"]) == 1  # no role: the dry run says so
    out = " ".join(capsys.readouterr().out.split())
    assert "--role is required" in out
    assert "would be created" in out and "no previous successful execution" in out
    monkeypatch.setenv("SAGEPIPE_ROLE_ARN", ROLE)
    assert run_cli(["deploy"]) == 0
    assert run_cli(["run", "--backend", "sagemaker", "--no-wait"]) == 0  # moto: Succeeded at once
    capsys.readouterr()
    assert run_cli(["deploy", "--dry-run"]) == 0
    table = capsys.readouterr().out
    for step in ("read_data", "clean_data", "prepare_data", "normalize_data", "train", "evaluate"):
        assert f"{step}" in table
    predicted = table.split("predicted cache results")[1]
    assert predicted.count("│ hit ") == 7 and "miss" not in predicted
    assert "warning" not in predicted
    # New data at the same URI: SageMaker would still serve read_data from its cache.
    time.sleep(1.1)  # S3 keeps LastModified to the second
    data = "other/data/raw/penguins.csv"
    s3(moto_env).put_object(Bucket="deploy-bucket", Key=data, Body=b"species\nAdelie\n")
    assert run_cli(["deploy", "--dry-run"]) == 0
    warned = " ".join(capsys.readouterr().out.split("predicted cache results")[1].split())
    assert (
        "warning: SageMaker would serve read_data from its cache although its input data "
        f"changed after the last successful execution started: s3://deploy-bucket/{data}"
    ) in warned
    assert warned.count("warning:") == 1  # the other steps read read_data's outputs
    script = Path("app/src/normalize_data.py")
    script.write_text(script.read_text() + "\n# edited\n")
    assert run_cli(["deploy", "--dry-run"]) == 0
    table = capsys.readouterr().out.split("predicted cache results")[1]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") >= 3}
    for step in ("read_data", "clean_data", "prepare_data"):
        assert "hit" in rows[step], rows[step]
    assert "changed: script normalize_data.py changed" in rows["normalize_data"]
    assert "upstream step normalize_data will run" in rows["train"]
    assert "miss" in rows["evaluate"]


def test_dry_run_reports_service_limits(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())
    data["Steps"][0]["CacheConfig"]["ExpireAfter"] = "30 days"
    cond = data["Steps"][3]
    cond["RetryPolicies"] = [
        {
            "ExceptionType": ["SageMaker.CAPACITY_ERROR"],
            "MaxAttempts": 2,
            "IntervalSeconds": 1,
            "BackoffRate": 2.0,
        }
    ]
    path = Path("under_score.json")
    path.write_text(json.dumps(data))
    role = "arn:aws:iam::123456789012:role/Pipelines"
    assert run_cli(["deploy", str(path), "--dry-run", "--role", role]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "pipeline name 'under_score'" in out
    assert "ExpireAfter '30 days' is not an ISO 8601 duration" in out
    assert "retry on SageMaker.CAPACITY_ERROR only applies to job steps, not Condition" in out


def hybrid(moto_client: Any) -> tuple[Any, Stubber]:
    """moto for what it implements; a Stubber-validated recording for the rest."""
    stubbed = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(stubbed)

    class Hybrid:
        def __getattr__(self, name: str) -> Any:
            if name in ("list_pipeline_execution_steps", "stop_pipeline_execution"):
                return getattr(stubbed, name)
            return getattr(moto_client, name)

    return Hybrid(), stubber


def recording(name: str, **fill: str) -> dict[str, Any]:
    text = (RECORDINGS / f"{name}.json").read_text()
    for key, value in fill.items():
        text = text.replace("{" + key + "}", value)
    data = json.loads(text)
    for step in data.get("PipelineExecutionSteps", []):
        for key in ("StartTime", "EndTime"):
            step[key] = datetime.fromisoformat(step[key].replace("Z", "+00:00"))
    return data


def test_watch_follows_steps_and_job_logs(moto_env: dict[str, str]) -> None:
    client = sm(moto_env)
    definition = (FIXTURES / "sdk" / "v3_full.json").read_text()
    client.create_pipeline(PipelineName="watched", PipelineDefinition=definition, RoleArn=ROLE)
    arn = client.start_pipeline_execution(PipelineName="watched")["PipelineExecutionArn"]
    logs = boto3.client("logs", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    job = "pipelines-abc-train-x1"
    now = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1700000000"
    )
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=f"{job}/algo-1-1700000000",
        logEvents=[
            {"timestamp": now, "message": "epoch=0 loss=0.5"},
            {"timestamp": now + 1000, "message": "validation:accuracy=0.93"},
        ],
    )
    fake, stubber = hybrid(client)
    steps = recording("list_pipeline_execution_steps", execution_arn=arn, job=job)
    stubber.add_response(
        "list_pipeline_execution_steps",
        steps,
        {"PipelineExecutionArn": arn, "SortOrder": "Descending"},
    )
    stubber.add_response(
        "stop_pipeline_execution",
        recording("stop_pipeline_execution", execution_arn=arn),
        {"PipelineExecutionArn": arn},
    )
    clients = Clients(fake, logs, "us-east-1")
    lines: list[tuple[str, str]] = []
    statuses: list[tuple[str, str]] = []
    with stubber:
        desc = ex.watch(
            clients,
            arn,
            lambda s, line: lines.append((s, line)),
            lambda s, st: statuses.append((s, st)),
            sleep=lambda _: None,
        )
        ex.stop(clients, arn)
    assert desc["PipelineExecutionStatus"] == "Succeeded"
    assert statuses == [
        ("Preprocess", "Failed"),
        ("Train", "Succeeded"),
        ("CheckAccuracy", "Succeeded"),
    ]
    assert lines == [("Train", "epoch=0 loss=0.5"), ("Train", "validation:accuracy=0.93")]
    stubber.assert_no_pending_responses()


def test_recordings_are_valid_service_shapes() -> None:
    stubbed = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(stubbed)
    bad = recording("list_pipeline_execution_steps", execution_arn="arn", job="j")
    bad["PipelineExecutionSteps"][0]["StepStatus"] = 42
    with pytest.raises(Exception, match="StepStatus"):
        stubber.add_response("list_pipeline_execution_steps", bad)


def _client_error(code: str, message: str, op: str = "CreatePipeline") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _client_error(
                "ExpiredTokenException", "The security token included in the request is expired"
            ),
            "session token has expired",
        ),
        (
            _client_error(
                "AccessDeniedException",
                "User: x is not authorized to perform: sagemaker:CreatePipeline",
            ),
            "access denied",
        ),
        (_client_error("AccessDenied", "Access Denied", "PutObject"), "access denied"),
        (
            _client_error("ValidationException", "Could not assume role arn:aws:iam::1:role/x"),
            "SageMaker cannot use the role",
        ),
        (
            _client_error(
                "ResourceLimitExceeded", "The account-level service limit for pipelines is 100"
            ),
            "resource limit exceeded",
        ),
        (
            _client_error("ResourceNotFound", "Pipeline 'p' does not exist."),
            "deploy it with 'sagepipe deploy'",
        ),
        (
            _client_error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid",
            ),
            "rejected the credentials",
        ),
    ],
)
def test_recorded_service_errors_become_one_line(error: ClientError, expected: str) -> None:
    message = str(translate_aws_error(error, "create pipeline p", "sagemaker"))
    assert expected in message
    assert "\n" not in message and "Traceback" not in message


def test_no_credentials_and_wrong_region_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clients = Clients.from_settings(
        Settings.from_env(
            cwd=tmp_path,
            environ={
                "AWS_REGION": "us-east-1",
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        )
    )
    with pytest.raises(SageMakerError, match="no AWS credentials found"):
        ex.list_executions(clients, "p")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_REGION", "xx-nowhere-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = run_cli(["executions", "list", "--backend", "sagemaker", "--pipeline", "p"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach" in err and "AWS_REGION" in err
    assert len(err.strip().splitlines()) == 1


def test_large_definition_goes_through_s3(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((FIXTURES / "sdk" / "v2_generic_training.json").read_text())
    data["Metadata"] = {"notes": "x" * 150_000}  # over the 100 KB inline limit
    path = Path("big-pipeline.json")
    path.write_text(json.dumps(data))
    assert run_cli(["deploy", str(path), "--role", ROLE]) == 0
    err = capsys.readouterr().err
    location = err.split("definition: ")[1].split()[0]
    assert location.startswith("s3://deploy-bucket/app/big-pipeline/definitions/")
    key = location.removeprefix("s3://deploy-bucket/")
    body = s3(moto_env).get_object(Bucket="deploy-bucket", Key=key)["Body"].read().decode()
    assert run_cli(["definition", str(path)]) == 0
    assert body == capsys.readouterr().out  # the text `sagepipe definition` prints
    # moto keeps an S3-loaded definition as a Python repr, so only its presence is checked here
    assert sm(moto_env).describe_pipeline(PipelineName="big-pipeline")["PipelineDefinition"]


def _app_pipeline() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_pipeline", Path("app/sagemaker_pipeline.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_pipeline()


def test_upsert_writes_the_given_role_into_every_job_step(moto_env: dict[str, str]) -> None:
    from sagepipe.definition.compile import DEFAULT_ROLE

    arn = _app_pipeline().upsert(role_arn=ROLE)  # no SAGEPIPE_ROLE_ARN in the environment
    assert arn.endswith(":pipeline/penguins-training")
    stored = sm(moto_env).describe_pipeline(PipelineName="penguins-training")
    definition = json.loads(stored["PipelineDefinition"])
    roles = {
        s["Arguments"].get("RoleArn") for s in definition["Steps"] if s["Type"] == "Processing"
    }
    assert roles == {ROLE}
    assert DEFAULT_ROLE not in stored["PipelineDefinition"]
    assert stored["RoleArn"] == ROLE


def test_a_placeholder_role_never_reaches_sagemaker(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["definition", "-o", "local.json"]) == 0  # compiled without a role
    capsys.readouterr()
    assert run_cli(["deploy", "local.json", "--role", ROLE]) == 1
    err = capsys.readouterr().err
    assert "placeholder role" in err and len(err.strip().splitlines()) == 1
    assert sm(moto_env).list_pipelines()["PipelineSummaries"] == []


def test_definition_takes_deploys_bucket_and_role(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--bucket", "other-bucket", "--role", ROLE]
    assert run_cli(["definition", *options]) == 0
    printed = capsys.readouterr().out
    assert "s3://other-bucket/app/penguins-training/code/" in printed and ROLE in printed
    assert run_cli(["deploy", *options]) == 0
    stored = sm(moto_env).describe_pipeline(PipelineName="penguins-training")["PipelineDefinition"]
    assert stored == printed


def test_dry_run_does_not_hide_access_denied(moto_env: dict[str, str]) -> None:
    from sagepipe.cloud.deploy import predict_next
    from sagepipe.definition import load

    stubbed = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(stubbed)
    stubber.add_client_error(
        "list_pipeline_executions", "AccessDeniedException", "not authorized", 400
    )
    definition = load((FIXTURES / "sdk" / "v2_full.json").read_text())
    with stubber, pytest.raises(SageMakerError, match="access denied"):
        predict_next(Clients(stubbed, None, "us-east-1"), "p", definition, {})


def test_a_missing_aws_profile_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "nope")
    for args in (
        ["executions", "list", "--backend", "sagemaker", "--pipeline", "p"],
        ["bucket", "ls", "--store", "s3"],
    ):
        assert run_cli(args) == 1
        err = capsys.readouterr().err
        assert "AWS profile 'nope'" in err and len(err.strip().splitlines()) == 1, err


def test_executions_steps_and_logs_on_sagemaker(
    moto_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = sm(moto_env)
    definition = (FIXTURES / "sdk" / "v3_full.json").read_text()
    client.create_pipeline(PipelineName="inspected", PipelineDefinition=definition, RoleArn=ROLE)
    arn = client.start_pipeline_execution(PipelineName="inspected")["PipelineExecutionArn"]
    job = "pipelines-abc-train-x1"
    logs = boto3.client("logs", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    group, stream = "/aws/sagemaker/TrainingJobs", f"{job}/algo-1-1700000000"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "[epoch 1] loss=0.5"}],
    )
    fake, stubber = hybrid(client)
    steps = recording("list_pipeline_execution_steps", execution_arn=arn, job=job)
    expected = {"PipelineExecutionArn": arn, "SortOrder": "Descending"}
    for _ in range(2):
        stubber.add_response("list_pipeline_execution_steps", steps, expected)
    clients = Clients(fake, logs, "us-east-1")
    monkeypatch.setattr(Clients, "from_settings", classmethod(lambda cls, s: clients))
    monkeypatch.setattr(
        ex,
        "training_job",
        lambda c, step: (
            {"FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": 0.93}]}
            if step["StepName"] == "Train"
            else None
        ),
    )
    with stubber:
        assert run_cli(["executions", "steps", arn, "--backend", "sagemaker"]) == 0
        table = capsys.readouterr().out
        assert "validation:accuracy=0.93" in table and "target column 'species'" in table
        assert run_cli(["executions", "logs", arn, "Train", "--backend", "sagemaker"]) == 0
        assert capsys.readouterr().out.strip() == "Train | [epoch 1] loss=0.5"
    stubber.assert_no_pending_responses()
