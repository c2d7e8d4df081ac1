"""Run a Transform step: a SageMaker batch transform job of a model, on this machine.

The step's Arguments are a CreateTransformJob request. Its ModelName names a model that a Model
(CreateModel) step created, in this execution or an earlier one; the model's container says the
image, the artifact (ModelDataUrl) and the Environment. The job runs the container program
``batch_transform.py`` once, on the model image's runtime, in the sandbox: ``/opt/ml/model`` holds
the unpacked artifact, ``/opt/ml/code`` a script-mode source directory, the input files are under
``/opt/ml/transform/input`` and each one's results are published as ``<S3OutputPath>/<file>.out``
when the job succeeds.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from sagepipe.engine.context import StepContext, StepOutcome
from sagepipe.engine.environments import describe
from sagepipe.engine.jobs import base_env, job_spec, run_job
from sagepipe.engine.processing import failure_reason, host_path
from sagepipe.engine.sandbox import CONTAINER_ROOT, limits_for
from sagepipe.engine.staging import (
    check_destination,
    publish_output,
    read_failure_file,
    stage_input,
    verify_code_object,
)
from sagepipe.errors import ExecutionError

PROGRAM = "batch_transform.py"
INPUT_DIR = "/opt/ml/transform/input"
OUTPUT_DIR = "/opt/ml/transform/output"
JOB_FILE = "/opt/ml/transform/job.json"
MODEL_DIR = "/opt/ml/model"
CODE_DIR = "/opt/ml/code"
SPLIT_TYPES = ("None", "Line", "RecordIO")
COMPRESSION_TYPES = ("None", "Gzip")
DATA_TYPES = ("S3Prefix", "ManifestFile")
MAX_PAYLOAD_MB = 100  # CreateTransformJob's maximum


def transform_problems(arguments: dict[str, Any]) -> list[str]:
    """Why a CreateTransformJob request cannot run locally (empty when it can).

    Only literal values are checked; an expression is resolved at run time.
    """
    problems = []
    inp = arguments.get("TransformInput") or {}
    source = (inp.get("DataSource") or {}).get("S3DataSource")
    if not isinstance(source, dict):
        problems.append("TransformInput.DataSource: only S3DataSource runs locally")
    elif _literal(source.get("S3DataType")) not in (None, *DATA_TYPES):
        problems.append(f"S3DataType {source.get('S3DataType')!r}: locally {', '.join(DATA_TYPES)}")
    for key, allowed in (("SplitType", SPLIT_TYPES), ("CompressionType", COMPRESSION_TYPES)):
        value = _literal(inp.get(key))
        if value not in (None, *allowed):
            problems.append(f"TransformInput.{key} {value!r}: locally {', '.join(allowed)}")
    processing = arguments.get("DataProcessing") or {}
    filtered = (
        any(_literal(processing.get(k)) not in (None, "$") for k in ("InputFilter", "OutputFilter"))
        or _literal(processing.get("JoinSource")) == "Input"
    )
    if filtered and _literal(inp.get("SplitType")) not in (None, "Line"):
        problems.append("DataProcessing filters and JoinSource Input need SplitType Line")
    payload = _literal(arguments.get("MaxPayloadInMB"))
    if isinstance(payload, int | float) and not 0 <= payload <= MAX_PAYLOAD_MB:
        problems.append(f"MaxPayloadInMB {payload} is not between 0 and {MAX_PAYLOAD_MB}")
    return problems


def _literal(value: Any) -> Any:
    return None if isinstance(value, dict) else value


def find_model(ctx: StepContext, name: str) -> dict[str, Any]:
    """The CreateModel request behind ``name``: a Model step of this execution, else the history's."""
    for props in ctx.scope.steps.values():
        if props.get("ModelName") == name and (
            "PrimaryContainer" in props or "Containers" in props
        ):
            return dict(props)
    found = ctx.history.model_by_name(name)
    if found is None:
        raise ExecutionError(
            f'Could not find model "{name}": no Model or CreateModel step of this or an earlier '
            "local execution created it"
        )
    return found


def _container(ctx: StepContext, model: dict[str, Any]) -> dict[str, Any]:
    container = model.get("PrimaryContainer") or next(iter(model.get("Containers") or []), None)
    if (
        isinstance(container, dict)
        and container.get("ModelPackageName")
        and not container.get("Image")
    ):
        container = _package_container(ctx, container)
    if not isinstance(container, dict) or not container.get("Image"):
        raise ExecutionError(f"model {model.get('ModelName')!r} has no container image")
    return container


def _package_container(ctx: StepContext, container: dict[str, Any]) -> dict[str, Any]:
    """A model made from a registered model package: the package's first container."""
    ref = str(container["ModelPackageName"])
    for props in ctx.scope.steps.values():
        if ref in (props.get("ModelPackageArn"), props.get("ModelPackageName")):
            spec = props.get("InferenceSpecification") or {}
            first: dict[str, Any] = next(iter(spec.get("Containers") or []), {})
            return {**first, **{k: v for k, v in container.items() if k == "Environment"}}
    for package in ctx.history.models():
        if ref in (package["arn"], f"{package['group_name']}/{package['version']}"):
            return {
                "Image": package["image"],
                "ModelDataUrl": package["model_data_url"],
                "Environment": container.get("Environment") or {},
            }
    raise ExecutionError(f"model package {ref!r} is not in the local model registry")


def framework(image: str) -> str:
    """Which framework's default handlers serve a script-mode model of ``image``."""
    name = image.rsplit("/", 1)[-1].lower()
    if "xgboost" in name:
        return "xgboost"
    if "scikit-learn" in name or "sklearn" in name:
        return "sklearn"
    return name.split(":", 1)[0]


def _unpack(ctx: StepContext, uri: str, dest: Path) -> None:
    """Fetch a tar.gz from the store and extract its files and folders inside ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.workspace.parent) as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        ctx.store.get_file(uri, archive)
        verify_code_object(uri, archive)
        extract_model(archive, dest, uri)


def extract_model(archive: Path, dest: Path, label: str) -> None:
    """Extract a model.tar.gz's files and folders inside ``dest``; links and escapes refused."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
                    raise ExecutionError(f"{label}: archive member {member.name!r} is refused")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest)  # every member was checked above
    except tarfile.TarError as exc:
        raise ExecutionError(f"{label} is not a tar.gz archive: {exc}") from None


def _stage(ctx: StepContext, container: dict[str, Any], env: dict[str, str]) -> str | None:
    """Unpack the model and a script-mode source directory; returns the program, if any."""
    ws = ctx.workspace
    model_dir = host_path(ws, MODEL_DIR)
    model_dir.mkdir(parents=True, exist_ok=True)
    data = container.get("ModelDataUrl")
    if data:
        _unpack(ctx, str(data), model_dir)
    program = env.get("SAGEMAKER_PROGRAM") or env.get("sagemaker_program")
    submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY") or env.get("sagemaker_submit_directory") or ""
    if program and submit.startswith("s3://"):
        _unpack(ctx, submit, host_path(ws, CODE_DIR))
    return program or None


def job_settings(args: dict[str, Any], image: str, program: str | None) -> dict[str, Any]:
    """What ``batch_transform.py`` reads from ``job.json``: the request's agent settings."""
    inp = args.get("TransformInput") or {}
    out = args.get("TransformOutput") or {}
    return {
        "ContentType": inp.get("ContentType"),
        "SplitType": inp.get("SplitType", "None"),
        "CompressionType": inp.get("CompressionType", "None"),
        "BatchStrategy": args.get("BatchStrategy", "MultiRecord"),
        "MaxPayloadInMB": args.get("MaxPayloadInMB", 6),
        "Accept": out.get("Accept"),
        "AssembleWith": out.get("AssembleWith", "None"),
        "DataProcessing": args.get("DataProcessing") or {},
        "Program": program,
        "Framework": framework(image),
        "ImageVersion": image.rsplit("/", 1)[-1].partition(":")[2],
    }


def container_env(env: dict[str, str], job: dict[str, Any]) -> dict[str, str]:
    """The model's Environment and the variables SageMaker sets in a transform container."""
    single = job["BatchStrategy"] == "SingleRecord"
    return {
        **env,
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(job["MaxPayloadInMB"]),
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD" if single else "MULTI_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1",
    }


def run_transform(ctx: StepContext) -> StepOutcome:
    """Stage the model and the input, run the batch transform, publish the ``.out`` files."""
    args = ctx.arguments
    ws = ctx.workspace
    started = time.time()
    problems = transform_problems(args)
    if problems:
        raise ExecutionError("; ".join(problems))
    check_destination(str(args["TransformOutput"]["S3OutputPath"]), "TransformOutput")
    model = find_model(ctx, str(args.get("ModelName", "")))
    container = _container(ctx, model)
    image = str(container["Image"])
    env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    env.update({str(k): str(v) for k, v in (args.get("Environment") or {}).items()})
    program = _stage(ctx, container, env)
    source = args["TransformInput"]["DataSource"]["S3DataSource"]
    kind = str(source.get("S3DataType", "S3Prefix"))
    stage_input(ctx.store, str(source["S3Uri"]), host_path(ws, INPUT_DIR), kind)
    host_path(ws, OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    job = job_settings(args, image, program)
    host_path(ws, JOB_FILE).write_text(json.dumps(job))
    environment = ctx.images.environment(image, ctx.log.write)
    ctx.log.write(describe(environment))
    argv = [
        *environment.argv(["python"]),
        ctx.sandbox.program(PROGRAM),
        "--root",
        CONTAINER_ROOT,
        "--job",
        JOB_FILE,
    ]
    limits = limits_for((args.get("TransformResources") or {}).get("InstanceType"))
    network = not model.get("EnableNetworkIsolation", False)
    job_env = base_env(environment, container_env(env, job), ctx.settings.env)
    mode = f"script mode ({program})" if program else "the image's own serving"
    ctx.log.write(
        f"transform job {ctx.job_name}: model {model.get('ModelName')} on {image}, {mode}"
    )
    spec = job_spec(ctx.settings, argv, job_env, ws, CONTAINER_ROOT, network, environment, limits)
    result = run_job(ctx, spec, None)
    arn = ctx.execution.arn_for("transform-job", ctx.job_name)
    props: dict[str, Any] = {
        **args,
        "TransformJobName": ctx.job_name,
        "TransformJobArn": arn,
        "ModelName": model.get("ModelName", args.get("ModelName")),
        "CreationTime": started,
        "TransformStartTime": started,
        "TransformEndTime": time.time(),
    }
    metadata = {"TransformJob": {"Arn": arn}, "_peak_rss_kb": result.peak_rss_kb}
    if result.stopped:
        props["TransformJobStatus"] = "Stopped"
        return StepOutcome("Stopped", props, metadata, "Stopped by user")
    reason = None
    if result.returncode != 0:
        written = read_failure_file(host_path(ws, "/opt/ml/output/failure"))
        reason = written or failure_reason(result, None, limits)
    else:
        try:
            out_uri = str(args["TransformOutput"]["S3OutputPath"])
            publish_output(ctx.store, host_path(ws, OUTPUT_DIR), out_uri, OUTPUT_DIR)
        except ExecutionError as exc:
            reason = str(exc)
    if reason is not None:
        props.update(TransformJobStatus="Failed", FailureReason=reason)
        return StepOutcome("Failed", props, metadata, reason)
    props["TransformJobStatus"] = "Completed"
    return StepOutcome("Succeeded", props, metadata)
