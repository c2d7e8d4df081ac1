"""Compile a function step into the Training step the SageMaker SDK v2 emits for ``@step``.

The job runs ``/bin/bash .../sagemaker_remote_function_bootstrap/job_driver.sh`` with the SDK's
ContainerArguments; the driver prepares the job and runs the SDK's
``sagemaker.remote_function.invoke_function``. Everything the job reads lives under
``--s3_base_uri`` = ``s3://<bucket>/other/functions/<pipeline>``:

- ``<base>/sagemaker_remote_function_bootstrap/<sha256>/``: job_driver.sh, function_bootstrap.py
- ``<base>/<step>/<sha256>/function/``, ``.../arguments/``: payload.pkl + metadata.json
- ``<base>/<step>/<sha256>/pre_exec_script_and_dependencies/``: requirements.txt, pre_exec.sh
- ``<base>/<execution>/<step>/results/``: written by the job (payload.pkl, results.json)

Where the SDK puts a build timestamp (``--func_step_s3_dir``) sagepipe puts the SHA-256 of the
step's files, so an unchanged function keeps its URIs and SageMaker's step cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path

from sagepipe.bucket_layout import functions_base_key
from sagepipe.core.expressions import (
    ExecutionVariable,
    ExecutionVariables,
    Join,
    ParameterString,
    to_expr,
)
from sagepipe.core.functions import FunctionStep, argument_expr, is_pipeline_variable
from sagepipe.core.json_types import JSON
from sagepipe.definition.payloads import (
    METADATA_FILE,
    PAYLOAD_FILE,
    client_python_version,
    metadata,
    serialize_step,
)
from sagepipe.errors import PipelineError
from sagepipe.records import record

RUNTIME_CHANNEL = "sagemaker_remote_function_bootstrap"
DEPENDENCIES_CHANNEL = "pre_exec_script_and_dependencies"
DRIVER = "job_driver.sh"
BOOTSTRAP = "function_bootstrap.py"
ENTRYPOINT = ["/bin/bash", f"/opt/ml/input/data/{RUNTIME_CHANNEL}/{DRIVER}"]
REQUIREMENTS = "requirements.txt"
PRE_EXEC = "pre_exec.sh"
# invoke_function comes from the SDK, installed in the job with the step's requirements; 2.256
# is the first v2 release that checks payloads by plain SHA-256 (older ones need an HMAC key).
SDK_REQUIREMENT = "sagemaker>=2.256.0,<3.0.0"
PROGRAMS = Path(__file__).resolve().parents[1] / "container"
_BASE_PYTHON = re.compile(r"/sagemaker-base-python-(\d)(\d+):")


@record
class FunctionTarget:
    """Where and for whom a pipeline's function steps are compiled."""

    bucket: str
    pipeline: str
    role: str
    region: str
    base_dir: Path
    json_outputs: frozenset[str] = frozenset()

    @property
    def base_uri(self) -> str:
        """The steps' ``--s3_base_uri``."""
        return f"s3://{self.bucket}/{functions_base_key(self.pipeline)}"


@record(frozen=False)
class CompiledFunction:
    """A function step's Training arguments and the objects they point at."""

    arguments: dict[str, JSON]
    objects: dict[str, bytes] = field(default_factory=dict)


def compile_function(step: FunctionStep, target: FunctionTarget) -> CompiledFunction:
    """The Training ``Arguments`` of ``step`` and the payload objects to upload."""
    settings = step.settings
    _check_image(step)
    out = CompiledFunction({})
    payload = serialize_step(step, target.base_dir)
    deps = _dependency_files(step, target.base_dir)
    files = {
        f"function/{PAYLOAD_FILE}": payload.function,
        f"function/{METADATA_FILE}": metadata(payload.function),
        f"arguments/{PAYLOAD_FILE}": payload.arguments,
        f"arguments/{METADATA_FILE}": metadata(payload.arguments),
        **{f"{DEPENDENCIES_CHANNEL}/{name}": data for name, data in deps.items()},
    }
    digest = folder_digest(files)
    step_dir = f"{target.base_uri}/{step.name}/{digest}"
    out.objects.update({f"{step_dir}/{name}": data for name, data in files.items()})
    runtime = runtime_files()
    runtime_uri = f"{target.base_uri}/{RUNTIME_CHANNEL}/{folder_digest(runtime)}"
    out.objects.update({f"{runtime_uri}/{name}": data for name, data in runtime.items()})

    stopping: dict[str, JSON] = {"MaxRuntimeInSeconds": to_expr(settings.max_runtime_in_seconds)}
    if settings.max_wait_time_in_seconds is not None:
        stopping["MaxWaitTimeInSeconds"] = to_expr(settings.max_wait_time_in_seconds)
    args: dict[str, JSON] = {
        "RoleArn": settings.role or target.role,
        "StoppingCondition": stopping,
        "RetryStrategy": {"MaximumRetryAttempts": to_expr(settings.max_retry_attempts)},
    }
    if settings.tags:
        args["Tags"] = [dict(t) for t in settings.tags]
    args["InputDataConfig"] = [
        _channel(RUNTIME_CHANNEL, runtime_uri),
        _channel(DEPENDENCIES_CHANNEL, f"{step_dir}/{DEPENDENCIES_CHANNEL}"),
    ]
    execution = ExecutionVariables.PIPELINE_EXECUTION_ID
    output = Join(on="/", values=(target.base_uri, execution, step.name, "results"))
    args["OutputDataConfig"] = {"S3OutputPath": output.expr}
    args["AlgorithmSpecification"] = {
        "TrainingImage": to_expr(settings.image_uri),
        "TrainingInputMode": "File",
        "ContainerEntrypoint": list(ENTRYPOINT),
        "ContainerArguments": _container_arguments(step, target, digest),
    }
    args.update(_resources(step))
    env = {**settings.environment_variables, "AWS_DEFAULT_REGION": target.region}
    args["Environment"] = to_expr(env)
    out.arguments = args
    return out


def _resources(step: FunctionStep) -> dict[str, JSON]:
    settings = step.settings
    resources: dict[str, JSON] = {
        "VolumeSizeInGB": to_expr(settings.volume_size),
        "InstanceCount": to_expr(settings.instance_count),
        "InstanceType": to_expr(settings.instance_type),
    }
    if settings.volume_kms_key is not None:
        resources["VolumeKmsKeyId"] = to_expr(settings.volume_kms_key)
    resources["KeepAlivePeriodInSeconds"] = to_expr(settings.keep_alive_period_in_seconds)
    out: dict[str, JSON] = {
        "ResourceConfig": resources,
        "EnableNetworkIsolation": False,
        "EnableInterContainerTrafficEncryption": to_expr(settings.encrypt_inter_container_traffic),
    }
    if (settings.subnets is None) != (settings.security_group_ids is None):
        raise PipelineError(
            f"function step '{step.name}': give both subnets and security_group_ids for a VPC"
        )
    if settings.subnets is not None and settings.security_group_ids is not None:
        out["VpcConfig"] = {
            "Subnets": to_expr(list(settings.subnets)),
            "SecurityGroupIds": to_expr(list(settings.security_group_ids)),
        }
    out["EnableManagedSpotTraining"] = to_expr(settings.use_spot_instances)
    return out


def _channel(name: str, uri: str) -> dict[str, JSON]:
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": "S3Prefix"}},
    }


def _container_arguments(step: FunctionStep, target: FunctionTarget, digest: str) -> list[JSON]:
    execution = ExecutionVariables.PIPELINE_EXECUTION_ID
    out: list[JSON] = [
        "--s3_base_uri",
        target.base_uri,
        "--region",
        target.region,
        "--client_python_version",
        client_python_version(),
        "--dependency_settings",
        json.dumps({"dependency_file": REQUIREMENTS}),
        "--pipeline_step_name",
        step.name,
        "--pipeline_execution_id",
        execution.expr,
        "--func_step_s3_dir",
        digest,
        "--property_references",
        "Execution.PipelineExecutionId",
        execution.expr,
    ]
    for value in step.arguments:
        if is_pipeline_variable(value):
            out.extend(_reference(value))
    if step.name in target.json_outputs:
        out.extend(["--serialize_output_to_json", "true"])
    return out


def _reference(value: object) -> list[JSON]:
    """The ``--property_references`` pair of one argument: its Get, and its value as text."""
    get = argument_expr(value)  # type: ignore[arg-type]  # callers pass pipeline variables
    assert isinstance(get, dict)
    if isinstance(value, ParameterString | ExecutionVariable):
        return [get["Get"], get]  # already strings when the pipeline runs
    return [get["Get"], {"Std:Join": {"On": "", "Values": [get]}}]


def folder_digest(files: Mapping[str, bytes]) -> str:
    """SHA-256 over the files' names and contents: the folder's content address."""
    manifest = "".join(
        f"{name}\0{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items())
    )
    return hashlib.sha256(manifest.encode()).hexdigest()


def runtime_files() -> dict[str, bytes]:
    """The runtime channel's files: the job driver and the bootstrap program."""
    return {
        DRIVER: (PROGRAMS / "function_job_driver.sh").read_bytes(),
        BOOTSTRAP: (PROGRAMS / "function_bootstrap.py").read_bytes(),
    }


def _dependency_files(step: FunctionStep, base_dir: Path) -> dict[str, bytes]:
    """requirements.txt (the step's own, plus the SDK) and pre_exec.sh, as the SDK ships them."""
    settings = step.settings
    lines = ""
    if settings.dependencies is not None:
        path = base_dir / settings.dependencies
        if not path.is_file():
            raise PipelineError(
                f"function step '{step.name}': dependencies file {settings.dependencies!r} not "
                f"found (looked at {path}); give the path of a requirements.txt"
            )
        if path.suffix in (".yml", ".yaml"):
            raise PipelineError(
                f"function step '{step.name}': dependencies {settings.dependencies!r} is a conda "
                "environment; sagepipe installs requirements.txt files with pip"
            )
        lines = path.read_text(encoding="utf-8")
    if not any(_names_sdk(line) for line in lines.splitlines()):
        lines = f"{lines.rstrip()}\n{SDK_REQUIREMENT}\n".lstrip("\n")
    files = {REQUIREMENTS: lines.encode()}
    if settings.pre_execution_commands is not None:
        files[PRE_EXEC] = "".join(f"{c}\n" for c in settings.pre_execution_commands).encode()
    elif settings.pre_execution_script is not None:
        script = base_dir / settings.pre_execution_script
        if not script.is_file():
            raise PipelineError(
                f"function step '{step.name}': pre_execution_script "
                f"{settings.pre_execution_script!r} not found (looked at {script})"
            )
        files[PRE_EXEC] = script.read_bytes()
    return files


def _names_sdk(line: str) -> bool:
    name = re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0].lower()
    return name == "sagemaker"


def _check_image(step: FunctionStep) -> None:
    image = step.settings.image_uri
    client = client_python_version()
    if image is None:
        raise PipelineError(
            f"function step '{step.name}': give image_uri, an image with Python {client} and "
            "pip (the function is pickled for the Python compiling the pipeline)"
        )
    match = _BASE_PYTHON.search(image) if isinstance(image, str) else None
    if match is not None and f"{match[1]}.{match[2]}" != client:
        raise PipelineError(
            f"function step '{step.name}': image {image} runs Python {match[1]}.{match[2]} but "
            f"the function is pickled with Python {client}; compile with Python "
            f"{match[1]}.{match[2]} or use an image with Python {client}"
        )
