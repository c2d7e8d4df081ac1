"""Function steps compile to the JSON the SageMaker SDK emits for ``@step``.

The goldens come from tests/fixtures/sdk/generate_function_goldens.py (SDK v2 and v3), which
builds the pipelines of tests/fixtures/sdk/function_pipeline.py. What must differ, and why:

1. The S3 base (``--s3_base_uri``): the SDK's ``s3://<bucket>/<pipeline>``, sagepipe's
   ``s3://<bucket>/other/functions/<pipeline>`` (the bucket layout keeps code under app/ and
   what executions write under other/; results land under this base).
2. ``--func_step_s3_dir`` and the dependencies channel: a build timestamp in the SDK, the
   SHA-256 of the step's payload and dependency files in sagepipe (an unchanged function keeps
   SageMaker's step cache; a timestamp misses it on every deploy).
3. The runtime scripts channel: the SDK's fixed ``<base>/sagemaker_remote_function_bootstrap``,
   sagepipe's ``<base>/sagemaker_remote_function_bootstrap/<sha256>`` (its own driver and
   bootstrap, addressed by content).
4. ``--client_sagemaker_pysdk_version``: sagepipe is not an SDK and omits it (the job's
   bootstrap only logs a warning when it differs; it is optional there).
5. ``--dependency_settings``: without a dependencies file the v2 SDK names a temporary file
   (``sagemaker_requirements_<random>.txt``); sagepipe always ships ``requirements.txt``, with
   the same added line ``sagemaker>=2.256.0,<3.0.0``.
6. Default DisplayName ``<module>.<function>`` and Description (the docstring, else the
   function's file): the SDK generator defines its functions in ``__main__`` of another file.
7. ``--client_python_version``: the Python that compiled (the goldens were built on 3.11).

SDK v3 writes another job contract (ECDSA-signed payloads with the public key in
``Environment.REMOTE_FUNCTION_SECRET_KEY``, results under ``<base>/<step>/<build>/<exec>``,
``sagemaker.core`` placeholder classes); sagepipe writes the v2 contract, so v3 is compared on
the job settings and the pipeline's shape only.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from sagepipe.definition import compile_pipeline
from sagepipe.definition.payloads import client_python_version
from tests.conftest import FIXTURES
from tests.fixtures.sdk.function_pipeline import ROLE, get_pipeline, get_solo_pipeline

SDK = FIXTURES / "sdk"
GOLDENS = SDK / "functions"
BUCKET = "sdk-fixtures"
FUNCTION_STEPS = {"SdkFunctionPipeline": ("load", "score", "publish"), "SdkSoloFunction": ("solo",)}
BUILDERS = {"SdkFunctionPipeline": get_pipeline, "SdkSoloFunction": get_solo_pipeline}
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}|[0-9a-f]{64}")


def compiled(pipeline: str) -> dict[str, Any]:
    result = compile_pipeline(BUILDERS[pipeline](), bucket=BUCKET, role=ROLE, base_dir=SDK)
    data: dict[str, Any] = json.loads(result.definition.dumps())
    return data


def golden(sdk: str, pipeline: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDENS / f"{sdk}_{pipeline}.json").read_text())
    return data


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    stack = list(definition["Steps"])
    while stack:
        step = stack.pop()
        out[step["Name"]] = step
        if step["Type"] == "Condition":
            stack.extend(step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"])
    return out


def normalized(step: dict[str, Any], pipeline: str) -> dict[str, Any]:
    """The step with every documented difference (module docstring) brought to one form."""
    step = copy.deepcopy(step)
    base_sdk = f"s3://{BUCKET}/{pipeline}"
    base_ours = f"s3://{BUCKET}/other/functions/{pipeline}"

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(base_ours, "<base>").replace(base_sdk, "<base>")
            value = re.sub(r"(sagemaker_remote_function_bootstrap)/[0-9a-f]{64}", r"\1", value)
            value = re.sub(r"sagemaker_requirements_\w+\.txt", "requirements.txt", value)
            return STAMP.sub("<dir>", value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    step = fix(step)
    args = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    for flag in ("--client_sagemaker_pysdk_version", "--client_python_version"):
        if flag in args:
            i = args.index(flag)
            del args[i : i + 2]
    if not step.get("DisplayName", "").startswith(("Score",)):
        step.pop("DisplayName", None)
    if step.get("Description", "").startswith("/"):
        step.pop("Description")
    return step


@pytest.mark.parametrize("pipeline", sorted(FUNCTION_STEPS))
def test_function_steps_match_sdk_v2(pipeline: str) -> None:
    ours = steps_by_name(compiled(pipeline))
    theirs = steps_by_name(golden("v2", pipeline))
    assert set(ours) == set(theirs)
    for name in FUNCTION_STEPS[pipeline]:
        assert normalized(ours[name], pipeline) == normalized(theirs[name], pipeline), name


def test_the_differences_are_the_documented_ones() -> None:
    step = steps_by_name(compiled("SdkFunctionPipeline"))["load"]
    args = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert (
        args[args.index("--s3_base_uri") + 1]
        == f"s3://{BUCKET}/other/functions/SdkFunctionPipeline"
    )
    assert args[args.index("--client_python_version") + 1] == client_python_version()
    assert "--client_sagemaker_pysdk_version" not in args
    digest = args[args.index("--func_step_s3_dir") + 1]
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in step["Arguments"]["InputDataConfig"]
    }
    assert channels["pre_exec_script_and_dependencies"].endswith(
        f"/load/{digest}/pre_exec_script_and_dependencies"
    )
    assert re.search(
        r"/sagemaker_remote_function_bootstrap/[0-9a-f]{64}$",
        channels["sagemaker_remote_function_bootstrap"],
    )
    assert step["DisplayName"] == "tests.fixtures.sdk.function_pipeline.load"


def test_condition_and_dependencies_match_sdk_v2() -> None:
    ours = steps_by_name(compiled("SdkFunctionPipeline"))
    theirs = steps_by_name(golden("v2", "SdkFunctionPipeline"))
    assert ours["Gate"] == theirs["Gate"] | {"Arguments": ours["Gate"]["Arguments"]}
    assert ours["Gate"]["Arguments"]["Conditions"] == theirs["Gate"]["Arguments"]["Conditions"]
    assert ours["Gate"]["DependsOn"] == ["score", "load"]
    assert [s["Name"] for s in compiled("SdkFunctionPipeline")["Steps"]] == [
        "Prep",
        "load",
        "score",
        "Gate",
    ]
    assert ours["TooLow"] == theirs["TooLow"]
    assert (
        compiled("SdkFunctionPipeline")["Parameters"]
        == golden("v2", "SdkFunctionPipeline")["Parameters"]
    )


V3_CONTRACT = {"ContainerArguments", "OutputDataConfig", "InputDataConfig"}


@pytest.mark.parametrize("pipeline", sorted(FUNCTION_STEPS))
def test_job_settings_match_sdk_v3(pipeline: str) -> None:
    ours = steps_by_name(compiled(pipeline))
    theirs = steps_by_name(golden("v3", pipeline))
    for name in FUNCTION_STEPS[pipeline]:
        mine, sdk = ours[name]["Arguments"], theirs[name]["Arguments"]
        env = dict(sdk["Environment"])
        assert env.pop("REMOTE_FUNCTION_SECRET_KEY").startswith("-----BEGIN PUBLIC KEY-----")
        assert mine["Environment"] == env
        for key in set(sdk) - V3_CONTRACT - {"Environment", "AlgorithmSpecification"}:
            assert mine[key] == sdk[key], (name, key)
        spec = {k: v for k, v in sdk["AlgorithmSpecification"].items() if k != "ContainerArguments"}
        assert {
            k: v for k, v in mine["AlgorithmSpecification"].items() if k != "ContainerArguments"
        } == spec
        assert ours[name].get("DependsOn") == theirs[name].get("DependsOn")
        assert ours[name].get("RetryPolicies") == theirs[name].get("RetryPolicies")


def test_the_generator_leaves_the_requirements_file_alone() -> None:
    # The v2 SDK appends its own requirement to the file it is given; the generator copies it.
    assert (GOLDENS / "requirements.txt").read_text() == "pandas>=2.0\n"


def test_payload_layout_matches_what_the_sdk_uploads() -> None:
    # <base>/<step>/<dir>/{function,arguments}/{payload.pkl,metadata.json} and the step's
    # dependencies channel: the paths invoke_function and the job's bootstrap read.
    sdk_keys = json.loads((GOLDENS / "v2_objects.json").read_text())
    theirs = {
        re.sub(r"sagemaker_requirements_\w+\.txt", "requirements.txt", k).replace(
            "<build>", "<dir>"
        )
        for k in sdk_keys
        if k.startswith("SdkFunctionPipeline/") and "/<build>/" in k
    }
    result = compile_pipeline(get_pipeline(), bucket=BUCKET, role=ROLE, base_dir=SDK)
    ours = {
        STAMP.sub("<dir>", u.uri.removeprefix(f"s3://{BUCKET}/other/functions/"))
        for u in result.uploads
        if "/other/functions/" in u.uri and "sagemaker_remote_function_bootstrap" not in u.uri
    }
    # The SDK ships pre_exec.sh and a requirements file for each step as sagepipe does; only
    # its requirements file's name differs (see 5. above).
    assert ours == theirs
