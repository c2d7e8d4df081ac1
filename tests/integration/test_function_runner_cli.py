"""SDK-built @step pipelines through the CLI: ``run`` on the definition JSON unchanged and
``executions result``, on the local store and on an S3 store (SeaweedFS) holding the payloads
as the SDK uploads them when it builds against that endpoint."""

from __future__ import annotations

import contextlib
import pickle
import re
import shutil
from pathlib import Path

import boto3
import pytest

from tests.conftest import FIXTURES, HAS_BWRAP
from tests.integration.test_cli import sp
from tests.servers import SeaweedFS

pytestmark = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
SDK = FIXTURES / "sdk"
OBJECTS = SDK / "objects" / "sdk-fixtures"
PYPROJECT = (
    '[tool.sagepipe]\nbucket = "fn-cli"\n'
    "[tool.sagepipe.images]\n"
    '"fn-runtime" = { python = "3.11", packages = ["cloudpickle>=3", "tblib>=1.7.0,<4"] }\n'
)


def _project(tmp_path: Path, local_objects: bool = True) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    if local_objects:
        shutil.copytree(OBJECTS, root / ".sagepipe" / "s3" / "sdk-fixtures")
    return root


def _execution_id(stderr: str) -> str:
    match = re.search(r"execution (\w{12}) of", stderr)
    assert match, stderr
    return match.group(1)


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One CLI run of the v2 chain in a local-store project: (project, execution id)."""
    project = _project(tmp_path_factory.mktemp("fncli"))
    res = sp(project, "run", str(SDK / "functions_v2_chain.json"), "-p", "Loud=true")
    assert res.returncode == 0, res.stdout + res.stderr
    return project, _execution_id(res.stderr)


def test_result_prints_the_return_value(chain_run: tuple[Path, str]) -> None:
    project, exec_id = chain_run
    shown = sp(project, "executions", "result", exec_id, "Summarise")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "{'total': 9.0, 'message': 'HELLO X4'}\n"
    numbers = sp(project, "executions", "result", exec_id[:6], "MakeNumbers")
    assert numbers.stdout == "[0.0, 1.5, 3.0, 4.5]\n"


def test_result_saves_the_pickle(chain_run: tuple[Path, str], tmp_path: Path) -> None:
    project, exec_id = chain_run
    target = tmp_path / "celebrate.pkl"
    saved = sp(project, "executions", "result", exec_id, "Celebrate", "--output", str(target))
    assert saved.returncode == 0, saved.stderr
    assert pickle.loads(target.read_bytes()) == "big 9.0 (HELLO X4) from prepared"
    nowhere = sp(
        project, "executions", "result", exec_id, "Celebrate", "-o", str(tmp_path / "no/x")
    )
    assert nowhere.returncode == 1 and "No such file or directory" in nowhere.stderr


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ("Prepare", "step 'Prepare' is a Processing step, not a @step function"),
        ("CheckTotal", "step 'CheckTotal' is a Condition step, not a @step function"),
        ("Nope", "ran no step 'Nope'; its steps: Celebrate, CheckTotal, MakeNumbers"),
    ],
)
def test_result_of_a_step_without_a_return_value_is_a_clear_error(
    chain_run: tuple[Path, str], step: str, says: str
) -> None:
    project, exec_id = chain_run
    res = sp(project, "executions", "result", exec_id, step)
    assert res.returncode == 1
    assert says in " ".join(res.stderr.split()) and "Traceback" not in res.stderr


def test_result_of_a_missing_execution(tmp_path: Path) -> None:
    res = sp(_project(tmp_path), "executions", "result", "zzzzzzzzzzzz", "Summarise")
    assert res.returncode == 1 and "no local execution 'zzzzzzzzzzzz'" in res.stderr


def test_result_of_a_failed_step_shows_the_exception(tmp_path: Path) -> None:
    project = _project(tmp_path)
    res = sp(project, "run", str(SDK / "functions_v3_raise.json"))
    assert res.returncode == 1
    exec_id = _execution_id(res.stderr)
    shown = sp(project, "executions", "result", exec_id, "Refuse")
    assert shown.returncode == 1
    text = " ".join(shown.stderr.split())
    assert "step 'Refuse' failed: NegativeInputError('boom: -3 is negative')" in text
    assert f"sagepipe logs {exec_id} Refuse" in text


def _upload_as_the_sdk_does(seaweed: SeaweedFS) -> None:
    """The SDK puts the payloads on the endpoint it builds against (AWS_ENDPOINT_URL)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        aws_access_key_id=seaweed.env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=seaweed.env()["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="sdk-fixtures")
    for path in sorted(OBJECTS.glob("FnChainV3/**/*")):
        if path.is_file():
            s3.upload_file(str(path), "sdk-fixtures", str(path.relative_to(OBJECTS)))


def test_a_definition_whose_payloads_are_in_s3_runs_with_store_s3(
    seaweed: SeaweedFS, tmp_path: Path
) -> None:
    _upload_as_the_sdk_does(seaweed)
    project = _project(tmp_path, local_objects=False)
    env = {**seaweed.env(), "SAGEPIPE_BUCKET": "fn-cli-s3"}
    res = sp(project, "run", str(SDK / "functions_v3_chain.json"), "--store", "s3", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    exec_id = _execution_id(res.stderr)
    assert not (project / ".sagepipe" / "s3").exists()
    shown = sp(
        project, "executions", "result", exec_id, "Celebrate", env={**env, "SAGEPIPE_STORE": "s3"}
    )
    assert shown.stdout == "'big 9.0 (hello x4) from prepared'\n", shown.stderr
    local = sp(project, "executions", "result", exec_id, "Celebrate")
    assert local.returncode == 1 and "its return value is gone" in local.stderr


def test_a_selective_execution_of_one_function_reads_the_reference_s_returns(
    chain_run: tuple[Path, str],
) -> None:
    project, exec_id = chain_run
    res = sp(
        project,
        "run",
        str(SDK / "functions_v2_chain.json"),
        "--steps",
        "Celebrate",
        "--reference",
        exec_id,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    again = _execution_id(res.stderr)
    assert again != exec_id
    shown = sp(project, "executions", "result", again, "Celebrate")
    assert shown.stdout == "'big 9.0 (HELLO X4) from prepared'\n", shown.stderr
    summarise = sp(project, "executions", "result", again, "Summarise")
    assert summarise.stdout == "{'total': 9.0, 'message': 'HELLO X4'}\n", summarise.stderr
