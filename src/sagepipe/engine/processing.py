"""Run a Processing step: the SageMaker processing container contract, on this machine."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from sagepipe.engine.context import StepContext, StepOutcome
from sagepipe.engine.environments import describe
from sagepipe.engine.jobs import JobResult, base_env, job_spec, run_job
from sagepipe.engine.sandbox import CONTAINER_ROOT, Limits, limits_for, out_of_memory_reason
from sagepipe.engine.staging import (
    OutputBudget,
    check_destination,
    publish_output,
    stage_input,
)
from sagepipe.errors import ExecutionError

PROCESSING_ROOT = "/opt/ml/processing/"
SOURCEDIR = "sourcedir.tar.gz"  # a FrameworkProcessor's code, unpacked by its runproc.sh
MAX_REQUIREMENTS = 1 << 20


def host_path(workspace: Path, container_path: str) -> Path:
    """Where a container path under /opt/ml lives in the workspace."""
    if not container_path.startswith(CONTAINER_ROOT + "/"):
        raise ExecutionError(f"path {container_path!r} is not under {CONTAINER_ROOT}/")
    rel = os.path.normpath(container_path[len(CONTAINER_ROOT) + 1 :])
    if rel.startswith(".."):
        raise ExecutionError(f"path {container_path!r} escapes {CONTAINER_ROOT}")
    return workspace / rel


def resource_config(instance_type: Any) -> dict[str, Any]:
    """The resourceconfig.json of a one-instance job."""
    return {
        "current_host": "algo-1",
        "current_instance_type": str(instance_type),
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": str(instance_type),
                "hosts": ["algo-1"],
            }
        ],
        "network_interface_name": "eth0",
    }


def run_processing(ctx: StepContext) -> StepOutcome:
    """Stage inputs, run the container command, publish outputs on success."""
    args = ctx.arguments
    ws = ctx.workspace
    started = time.time()
    for inp in args.get("ProcessingInputs", []):
        s3 = inp.get("S3Input")
        if s3 is None:
            raise ExecutionError(
                f"input '{inp.get('InputName')}': only S3Input is supported locally"
            )
        local = s3["LocalPath"]
        if not local.startswith(PROCESSING_ROOT):
            raise ExecutionError(
                f"input '{inp.get('InputName')}': LocalPath {local!r} must start with {PROCESSING_ROOT}"
            )
        if ctx.warm is None or inp.get("InputName") not in ctx.warm.staged:
            kind = s3.get("S3DataType", "S3Prefix")
            stage_input(ctx.store, str(s3["S3Uri"]), host_path(ws, local), kind)
    outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
    for out in outputs:
        check_destination(str(out["S3Output"]["S3Uri"]), str(out["S3Output"]["LocalPath"]))
        host_path(ws, out["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
    config = host_path(ws, "/opt/ml/config")
    config.mkdir(parents=True, exist_ok=True)
    cluster = args.get("ProcessingResources", {}).get("ClusterConfig", {})
    job_config = {**args, "ProcessingJobName": ctx.job_name, "ProcessingJobArn": _arn(ctx)}
    (config / "processingjobconfig.json").write_text(json.dumps(job_config, default=str))
    (config / "resourceconfig.json").write_text(
        json.dumps(resource_config(cluster.get("InstanceType")))
    )
    app = args.get("AppSpecification", {})
    image = str(app.get("ImageUri", ""))
    environment = ctx.images.environment(image, ctx.log.write)
    requirements = framework_requirements(ws, ctx.arguments.get("ProcessingInputs", []))
    if requirements is not None:  # before the step's network isolation, as the toolkit's
        try:
            environment = ctx.images.with_requirements(environment, requirements, ctx.log.write)
        finally:
            shutil.rmtree(requirements.parent.parent, ignore_errors=True)
    ctx.log.write(describe(environment))
    entry = [str(a) for a in app.get("ContainerEntrypoint", [])]
    argv = environment.argv(entry) + [str(a) for a in app.get("ContainerArguments", [])]
    if not argv:
        raise ExecutionError("AppSpecification has no ContainerEntrypoint to run")
    env = base_env(
        environment,
        {k: str(v) for k, v in (args.get("Environment") or {}).items()},
        ctx.settings.env,
    )
    network = not (args.get("NetworkConfig") or {}).get("EnableNetworkIsolation", False)
    limits = limits_for(cluster.get("InstanceType"))
    spec = job_spec(ctx.settings, argv, env, ws, CONTAINER_ROOT, network, environment, limits)
    max_runtime = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    go = None
    if ctx.warm is not None:  # the launcher waits with the interpreter and imports loaded

        def seen(value: str) -> str:
            return ctx.sandbox.container_path(value, ws)

        go = {
            "argv": [seen(a) for a in argv[1:]],  # the interpreter is running already
            "env": {k: seen(v) for k, v in env.items()},
            "cwd": seen(CONTAINER_ROOT),
        }
    result = run_job(ctx, spec, float(max_runtime) if max_runtime else None, go)
    props = {
        **args,
        "ProcessingJobName": ctx.job_name,
        "ProcessingJobArn": _arn(ctx),
        "ProcessingStartTime": started,
        "ProcessingEndTime": time.time(),
        "CreationTime": started,
    }
    metadata = {"ProcessingJob": {"Arn": _arn(ctx)}, "_peak_rss_kb": result.peak_rss_kb}
    if result.stopped:
        return StepOutcome(
            "Stopped", {**props, "ProcessingJobStatus": "Stopped"}, metadata, "Stopped by user"
        )
    if result.timed_out or result.returncode != 0:
        reason = failure_reason(result, max_runtime, limits)
        props.update(ProcessingJobStatus="Failed", FailureReason=reason, ExitMessage=reason)
        return StepOutcome("Failed", props, metadata, reason)
    budget = OutputBudget()
    try:
        for out in outputs:
            s3 = out["S3Output"]
            local = str(s3["LocalPath"])
            publish_output(
                ctx.store, host_path(ws, local), str(s3["S3Uri"]), local, budget, ctx.publication
            )
    except ExecutionError as exc:
        reason = str(exc)
        props.update(ProcessingJobStatus="Failed", FailureReason=reason, ExitMessage=reason)
        return StepOutcome("Failed", props, metadata, reason)
    props["ProcessingJobStatus"] = "Completed"
    return StepOutcome("Succeeded", props, metadata)


def framework_requirements(ws: Path, inputs: list[dict[str, Any]]) -> Path | None:
    """``requirements.txt`` of a FrameworkProcessor's ``sourcedir.tar.gz``, extracted beside
    the workspace; None when no input holds one.

    The SDK's ``runproc.sh`` unpacks the archive and runs ``pip install -r requirements.txt``
    in the container; here those requirements go into a derived environment first, so that the
    script's own install finds them satisfied (and needs neither network nor a writable image).
    """
    for inp in inputs:
        local = (inp.get("S3Input") or {}).get("LocalPath")
        if not isinstance(local, str) or not local.startswith(PROCESSING_ROOT):
            continue
        archive = host_path(ws, local) / SOURCEDIR
        if not archive.is_file():
            continue
        try:
            with tarfile.open(archive) as tar:
                member = next((m for m in tar.getmembers() if _is_requirements(m)), None)
                handle = tar.extractfile(member) if member is not None else None
                if handle is None:
                    return None
                data = handle.read(MAX_REQUIREMENTS)
        except (tarfile.TarError, OSError):
            return None  # the step's own tar says what is wrong with it
        folder = Path(tempfile.mkdtemp(dir=ws.parent)) / "sourcedir"  # names the environment
        folder.mkdir()
        (folder / "requirements.txt").write_bytes(data)
        return folder / "requirements.txt"
    return None


def _is_requirements(member: tarfile.TarInfo) -> bool:
    return member.isfile() and member.name.lstrip("./") == "requirements.txt"


def failure_reason(result: JobResult, max_runtime: object, limits: Limits | None) -> str:
    """Why a job failed, in SageMaker's words where SageMaker has some."""
    if result.timed_out:
        return f"MaxRuntimeInSeconds ({max_runtime}) exceeded"
    return (
        out_of_memory_reason(limits, result.last_error)
        or result.last_error
        or f"the command exited with code {result.returncode}"
    )


def _arn(ctx: StepContext) -> str:
    return ctx.execution.arn_for("processing-job", ctx.job_name)
