"""Deploying a @step pipeline to a moto server: payloads land at content-addressed keys."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from sagepipe.cli.main import run_cli
from sagepipe.definition.payloads import read_payload
from tests.integration.test_function_cli import PIPELINE
from tests.servers import MotoServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BASE = "other/functions/fn-cli/"


@pytest.fixture
def project(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    moto_server.reset()
    for k, v in {
        **moto_server.env(),
        "SAGEPIPE_BUCKET": "fn-deploy",
        "SAGEPIPE_ROLE_ARN": ROLE,
    }.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[tool.sagepipe]\n")
    (root / "requirements.txt").write_text("numpy\n")
    (root / "app" / "sagemaker_pipeline.py").write_text(PIPELINE.format(body="0.75"))
    monkeypatch.chdir(root)
    return root


def objects(endpoint: str) -> dict[str, bytes]:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )
    out = {}
    for item in s3.list_objects_v2(Bucket="fn-deploy", Prefix=BASE).get("Contents", []):
        out[item["Key"]] = s3.get_object(Bucket="fn-deploy", Key=item["Key"])["Body"].read()
    return out


def test_deploy_uploads_payloads_once_and_an_edit_adds_only_its_step(
    project: Path, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = moto_server.env()["AWS_ENDPOINT_URL"]
    assert run_cli(["deploy"]) == 0
    assert "7 code objects uploaded, 0 already present" in capsys.readouterr().err
    first = objects(endpoint)
    folders = {k.split("/")[4] for k in first if k.startswith(BASE + "measure/")}
    assert len(folders) == 1
    digest = folders.pop()
    step = f"{BASE}measure/{digest}/"
    assert sorted(k.removeprefix(step) for k in first if k.startswith(step)) == [
        "arguments/metadata.json",
        "arguments/payload.pkl",
        "function/metadata.json",
        "function/payload.pkl",
        "pre_exec_script_and_dependencies/requirements.txt",
    ]
    function = read_payload(
        first[step + "function/payload.pkl"], first[step + "function/metadata.json"]
    )
    assert function(2.0) == 1.5
    assert first[step + "pre_exec_script_and_dependencies/requirements.txt"] == (
        b"numpy\nsagemaker>=2.256.0,<3.0.0\n"
    )
    runtime = [k for k in first if k.startswith(BASE + "sagemaker_remote_function_bootstrap/")]
    assert sorted(k.rsplit("/", 1)[1] for k in runtime) == [
        "function_bootstrap.py",
        "job_driver.sh",
    ]

    assert run_cli(["deploy"]) == 0
    assert "0 code objects uploaded, 7 already present" in capsys.readouterr().err

    (project / "app" / "sagemaker_pipeline.py").write_text(PIPELINE.format(body="0.25"))
    assert run_cli(["deploy"]) == 0
    assert "5 code objects uploaded, 2 already present" in capsys.readouterr().err
    added = set(objects(endpoint)) - set(first)
    assert len(added) == 5 and all(k.startswith(BASE + "measure/") for k in added)
    assert run_cli(["definition"]) == 0
    deployed = json.loads(capsys.readouterr().out)
    args = deployed["Steps"][-1]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert args[args.index("--func_step_s3_dir") + 1] != digest
