"""@step function pipelines built by the official SDK (v2 and v3) run unchanged, end to end.

The definitions and the payloads the SDK uploaded while building them are committed fixtures
(tests/fixtures/sdk/generate_functions.py); each test seeds a store with the objects and runs
a definition through the engine, under bubblewrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest

from sagepipe import (
    ConditionGreaterThan,
    ConditionStep,
    FailStep,
    ParameterInteger,
    Pipeline,
)
from sagepipe import step as sagepipe_step
from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.function_results import function_result
from sagepipe.engine.history import History
from sagepipe.errors import DefinitionError
from sagepipe.storage import LocalStore
from tests.conftest import FIXTURES, HAS_BWRAP
from tests.integration.helpers import run, seed_sdk_objects, statuses
from tests.unprivileged import rerun_as_ordinary_user

pytestmark = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
SDK = FIXTURES / "sdk"
BUCKET = "sdk-fixtures"
# The fixtures' own image (the SDK has no default image for the client's Python 3.11).
IMAGES = (
    '[tool.sagepipe]\nbucket = "test-bucket"\n'
    "[tool.sagepipe.images]\n"
    '"fn-runtime" = { python = "3.11", packages = ["cloudpickle>=3", "tblib>=1.7.0,<4"] }\n'
)
VERSIONS = ["v2", "v3"]
FUNCTION_IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:py311"
SHOW_EXCEPTION = """import pickle, sys, traceback
error = pickle.load(sys.stdin.buffer)
print(type(error).__name__)
print(error)
print(traceback.extract_tb(error.__traceback__)[-1].name)
"""


@pytest.fixture
def fn_settings(project: Path, image_cache: Path) -> Settings:
    """Settings whose project maps the fixtures' function image; the SDK's objects seeded."""
    (project / "pyproject.toml").write_text(IMAGES)
    settings = Settings.from_env(cwd=project, environ={"SAGEPIPE_CACHE_DIR": str(image_cache)})
    seed_sdk_objects(settings)
    return settings


def definition(version: str, name: str):  # type: ignore[no-untyped-def]
    return load(SDK / f"functions_{version}_{name}.json")


def result_of(settings: Settings, pipeline: str, execution_id: str, step: str) -> object:
    """The step's return value, read where its S3OutputPath says (as the SDK's client does)."""
    history = History(settings.history_path)
    found = function_result(history, LocalStore(settings.local_store_root), execution_id, step)
    assert found.uri.startswith(f"s3://{BUCKET}/{pipeline}/")
    return pickle.loads(found.payload)


@pytest.mark.parametrize("version", VERSIONS)
def test_chain_runs_with_parameters_properties_and_condition(
    fn_settings: Settings, version: str
) -> None:
    name = f"FnChain{version.upper()}"
    execution = run(fn_settings, definition(version, "chain"), name=name)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == {
        "Prepare": "Succeeded",
        "MakeNumbers": "Succeeded",
        "Summarise": "Succeeded",
        "WherePrepared": "Succeeded",
        "CheckTotal": "Succeeded",
        "Celebrate": "Succeeded",
    }
    exec_id = execution.execution_id
    assert result_of(fn_settings, name, exec_id, "MakeNumbers") == [0.0, 1.5, 3.0, 4.5]
    assert result_of(fn_settings, name, exec_id, "Summarise") == {
        "total": 9.0,
        "message": "hello x4",
    }
    place = result_of(fn_settings, name, exec_id, "WherePrepared")
    assert isinstance(place, str) and place.endswith(f"/prepared|{exec_id}")
    assert result_of(fn_settings, name, exec_id, "Celebrate") == (
        "big 9.0 (hello x4) from prepared"
    )
    store = LocalStore(fn_settings.local_store_root)
    history = History(fn_settings.history_path)
    uri = function_result(history, store, exec_id, "Summarise").uri
    results = json.loads(store.get(f"{uri}/results.json"))
    assert results == {"Result": {"total": 9.0, "message": "hello x4"}, "Exception": None}
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["CheckTotal"]["Metadata"] == {"Condition": {"Outcome": "True"}}


@pytest.mark.parametrize(("version", "kind"), [("v2", "process"), ("v3", "bwrap")])
def test_parameters_of_each_type_take_the_other_branch(
    fn_settings: Settings, version: str, kind: str
) -> None:
    name = f"FnChain{version.upper()}"
    parameters = {"Count": "2", "Scale": "0.5", "Greeting": "hey", "Loud": "true"}
    execution = run(fn_settings, definition(version, "chain"), kind, parameters, name=name)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    found = statuses(execution)
    assert found["Console"] == "Succeeded" and "Celebrate" not in found
    exec_id = execution.execution_id
    assert result_of(fn_settings, name, exec_id, "Summarise") == {"total": 0.5, "message": "HEY X2"}
    assert result_of(fn_settings, name, exec_id, "Console") == "small 0.5"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_raising_function_fails_its_step_with_the_exception(
    fn_settings: Settings, version: str
) -> None:
    name = f"FnRaise{version.upper()}"
    execution = run(fn_settings, definition(version, "raise"), name=name)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert statuses(execution) == {"Refuse": "Failed"}
    steps = {s["StepName"]: s for s in execution.list_steps()}
    reason = steps["Refuse"]["FailureReason"]
    assert reason == "NegativeInputError('boom: -3 is negative')"
    assert desc["FailureReason"] == f"Step 'Refuse' failed with message: {reason}"
    log = History(fn_settings.history_path).step_log(execution.execution_id, "Refuse") or ""
    assert "Traceback (most recent call last)" in log and "in refuse" in log
    store = LocalStore(fn_settings.local_store_root)
    uri = f"s3://{BUCKET}/{name}/{execution.execution_id}/Refuse/exception"
    # The SDK's client reads it with tblib installed: the image environment has it.
    python = StepEnvironments(fn_settings).environment(FUNCTION_IMAGE).python
    shown = subprocess.run(
        [str(python), "-c", SHOW_EXCEPTION],
        input=store.get(f"{uri}/payload.pkl"),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert shown.splitlines() == ["NegativeInputError", "boom: -3 is negative", "refuse"]
    metadata = json.loads(store.get(f"{uri}/metadata.json"))
    assert set(metadata) == {"sha256_hash", "version", "python_version", "serialization_module"}


@pytest.mark.parametrize("version", VERSIONS)
def test_requirements_and_pre_execution_commands(fn_settings: Settings, version: str) -> None:
    name = f"FnDeps{version.upper()}"
    lines: list[tuple[str, str]] = []
    execution = run(fn_settings, definition(version, "deps"), name=name, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    found = result_of(fn_settings, name, execution.execution_id, "WithDependencies")
    assert found == {
        "six": "1.17.0",
        "marker": "ready",
        "count": 2,
        "cwd": "/opt/ml/sagemaker_remote_function_workspace",
    }
    assert any("requirements.txt" in line for _, line in lines)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_python_version_mismatch_is_refused_before_running(
    fn_settings: Settings, version: str
) -> None:
    name = f"FnMismatch{version.upper()}"
    execution = run(fn_settings, definition(version, "mismatch"), name=name)
    steps = {s["StepName"]: s for s in execution.list_steps()}
    reason = steps["OnPython310"]["FailureReason"]
    assert reason.startswith(
        "the function was pickled on Python 3.11 but image sagemaker-base-python-310:1.0 has "
        "Python 3.10 (SageMaker fails this job)"
    )
    log = History(fn_settings.history_path).step_log(execution.execution_id, "OnPython310") or ""
    assert "Invoking the function" not in log


def _payload_dir(settings: Settings, pipeline: str, step: str, folder: str) -> Path:
    (found,) = (settings.local_store_root / BUCKET / pipeline / step).glob(f"*/{folder}")
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_a_tampered_payload_is_refused(fn_settings: Settings, version: str) -> None:
    name = f"FnChain{version.upper()}"
    payload = _payload_dir(fn_settings, name, "MakeNumbers", "function") / "payload.pkl"
    payload.write_bytes(payload.read_bytes() + b".")
    execution = run(fn_settings, definition(version, "chain"), name=name)
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["MakeNumbers"]["StepStatus"] == "Failed"
    reason = steps["MakeNumbers"]["FailureReason"]
    assert "/MakeNumbers/" in reason and "function/payload.pkl fails its integrity check" in reason
    assert "Summarise" not in steps


def test_a_v3_payload_with_a_recomputed_hash_still_fails_its_signature(
    fn_settings: Settings,
) -> None:
    folder = _payload_dir(fn_settings, "FnChainV3", "MakeNumbers", "arguments")
    payload = (folder / "payload.pkl").read_bytes().replace(b"Count", b"Cnt_x")
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["sha256_hash"] = hashlib.sha256(payload).hexdigest()
    (folder / "payload.pkl").write_bytes(payload)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    execution = run(fn_settings, definition("v3", "chain"), name="FnChainV3")
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert (
        "arguments/payload.pkl fails its integrity check" in steps["MakeNumbers"]["FailureReason"]
    )


def test_a_reference_to_a_return_value_that_does_not_exist_fails_clearly(
    fn_settings: Settings,
) -> None:
    text = (SDK / "functions_v2_chain.json").read_text()
    ghost = "s3://sdk-fixtures/FnChainV2/ghost/MakeNumbers/results"
    data = json.loads(text)
    summarise = next(s for s in data["Steps"] if s["Name"] == "Summarise")
    argv = summarise["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    index = argv.index("Steps.MakeNumbers.OutputDataConfig.S3OutputPath")
    argv[index + 1] = ghost
    execution = run(fn_settings, load(json.dumps(data)), name="FnChainV2")
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["MakeNumbers"]["StepStatus"] == "Succeeded"
    assert steps["Summarise"]["FailureReason"] == (
        f"the return value of step 'MakeNumbers' is not at {ghost}: that step has not written "
        "one in this execution"
    )


def test_a_placeholder_naming_a_missing_step_is_refused_before_the_run(
    fn_settings: Settings,
) -> None:
    data = json.loads((SDK / "functions_v2_chain.json").read_text())
    summarise = next(s for s in data["Steps"] if s["Name"] == "Summarise")
    argv = summarise["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    argv += [
        "Steps.Ghost.OutputDataConfig.S3OutputPath",
        {"Get": "Steps.Ghost.OutputDataConfig.S3OutputPath"},
    ]
    with pytest.raises(DefinitionError, match="Ghost"):
        run(fn_settings, load(json.dumps(data)), name="FnChainV2")


@pytest.mark.parametrize("version", VERSIONS)
def test_a_function_that_kills_its_process_fails_without_a_result(
    fn_settings: Settings, version: str
) -> None:
    name = f"FnKill{version.upper()}"
    execution = run(fn_settings, definition(version, "kill"), name=name)
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["Kill"]["StepStatus"] == "Failed"
    assert steps["Kill"]["FailureReason"].endswith("the command exited with code 137")
    assert not list((fn_settings.local_store_root / BUCKET / name).rglob("results/*"))
    assert not list((fn_settings.local_store_root / BUCKET / name).rglob("exception/*"))


def test_a_function_cannot_write_outside_its_step(fn_settings: Settings) -> None:
    target = fn_settings.local_store_root / BUCKET / "owned.txt"
    execution = run(
        fn_settings,
        definition("v2", "escape"),
        parameters={"Target": str(target)},
        name="FnEscapeV2",
    )
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    found = result_of(fn_settings, "FnEscapeV2", execution.execution_id, "Escape")
    assert isinstance(found, dict) and found["target_seen"] is False
    assert found["/usr/escaped.txt"] != "written"
    assert not target.exists() and not Path("/usr/escaped.txt").exists()


def test_a_symbolic_link_left_among_the_results_is_not_published(fn_settings: Settings) -> None:
    """Only the invoker's files leave the step, as SageMaker uploads only those."""
    execution = run(fn_settings, definition("v3", "link"), name="FnLinkV3")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    found = function_result(
        History(fn_settings.history_path),
        LocalStore(fn_settings.local_store_root),
        execution.execution_id,
        "Link",
    )
    assert pickle.loads(found.payload) == 1
    published = {p.name for p in (fn_settings.local_store_root / BUCKET / "FnLinkV3").rglob("*")}
    assert "passwd" not in published and "payload.pkl" in published


def test_the_hostile_functions_fail_the_same_for_an_ordinary_user() -> None:
    """The hostile-function tests again as uid 1000 (CI runs as root)."""
    names = (
        "test_a_function_cannot_write_outside_its_step",
        "test_a_symbolic_link_left_among_the_results_is_not_published",
        "test_a_result_file_made_a_symbolic_link_fails_the_step",
        "test_a_function_that_kills_its_process_fails_without_a_result",
        "test_a_tampered_payload_is_refused",
    )
    # The user's environments are built afresh: uv needs the machine's certificate settings.
    certificates = {k: v for k, v in os.environ.items() if k in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    rerun_as_ordinary_user([f"{__file__}::{name}" for name in names], certificates, timeout=500)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_classic_step_reads_a_return_value_through_json_get(
    fn_settings: Settings, version: str
) -> None:
    name = f"FnReport{version.upper()}"
    execution = run(fn_settings, definition(version, "report"), name=name)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    record = {r.name: r for r in History(fn_settings.history_path).steps(execution.execution_id)}
    (output,) = record["Report"].properties["ProcessingOutputConfig"]["Outputs"]
    store = LocalStore(fn_settings.local_store_root)
    assert store.get(f"{output['S3Output']['S3Uri']}/total.txt") == b"9.0"


def test_a_result_file_made_a_symbolic_link_fails_the_step(fn_settings: Settings) -> None:
    execution = run(fn_settings, definition("v2", "linkpayload"), name="FnLinkPayloadV2")
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["LinkPayload"]["StepStatus"] == "Failed"
    assert steps["LinkPayload"]["FailureReason"] == (
        "output /opt/ml/output/function/results/payload.pkl is a symbolic link; not published"
    )
    assert not list((fn_settings.local_store_root / BUCKET / "FnLinkPayloadV2").rglob("results/*"))


@sagepipe_step(name="base", instance_type="ml.m5.large", image_uri=FUNCTION_IMAGE)
def base(n: int) -> dict:  # type: ignore[type-arg]
    return {"n": n, "square": n * n}


@sagepipe_step(name="half", instance_type="ml.m5.large", image_uri=FUNCTION_IMAGE)
def half(values: dict) -> float:  # type: ignore[type-arg]
    return float(values["square"]) / 2


def test_a_pipeline_authored_with_sagepipe_s_step_runs_the_same_way(fn_settings: Settings) -> None:
    """sagepipe's own @step compiles to the SDK's steps and payloads: the same runner runs it."""
    n = ParameterInteger("N", default_value=3)
    value = half(base(n))
    gate = ConditionStep(
        "gate",
        conditions=[ConditionGreaterThan(left=value, right=4)],
        else_steps=[FailStep("small", error_message="too small")],
    )
    pipeline = Pipeline("authored", steps=[gate], parameters=[n])
    execution = run(fn_settings, pipeline)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == {"base": "Succeeded", "half": "Succeeded", "gate": "Succeeded"}
    assert result_of_any(fn_settings, execution.execution_id, "half") == 4.5
    small = run(fn_settings, pipeline, parameters={"N": "2"})
    assert statuses(small) == {
        "base": "Succeeded",
        "half": "Succeeded",
        "gate": "Succeeded",
        "small": "Failed",
    }
    assert result_of_any(fn_settings, small.execution_id, "base") == {"n": 2, "square": 4}


def result_of_any(settings: Settings, execution_id: str, step: str) -> object:
    history = History(settings.history_path)
    found = function_result(history, LocalStore(settings.local_store_root), execution_id, step)
    return pickle.loads(found.payload)
