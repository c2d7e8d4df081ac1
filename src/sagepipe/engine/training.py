"""Run a Training step: the SageMaker training container contract, on this machine.

Channels at /opt/ml/input/data/<channel>, the config JSONs, script mode through the training
toolkit's conventions (SM_* variables, hyperparameters as --key value), /opt/ml/model packed to
<S3OutputPath>/<job>/output/model.tar.gz, /opt/ml/output/failure as FailureReason, and
MetricDefinitions applied to the log.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from sagepipe.engine.context import StepContext, StepOutcome
from sagepipe.engine.environments import describe
from sagepipe.engine.jobs import base_env, job_spec, run_job
from sagepipe.engine.processing import failure_reason, host_path, resource_config
from sagepipe.engine.sandbox import CONTAINER_ROOT, limits_for
from sagepipe.engine.staging import (
    OutputBudget,
    check_destination,
    output_files,
    publish_output,
    read_failure_file,
    stage_input,
    verify_code_object,
)
from sagepipe.errors import ExecutionError
from sagepipe.images import Environment
from sagepipe.images.algorithms import (
    PROGRAMS,
    algorithm_command,
    algorithm_mode,
    metric_definitions,
)
from sagepipe.records import record
from sagepipe.storage import join_uri

CODE_DIR = "/opt/ml/code"
ALGORITHM_ERROR = "AlgorithmError: "


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _write_configs(ws: Path, args: dict[str, Any], hps: dict[str, str]) -> None:
    config = host_path(ws, "/opt/ml/input/config")
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    resources = args.get("ResourceConfig", {})
    (config / "resourceconfig.json").write_text(
        json.dumps(resource_config(resources.get("InstanceType")))
    )
    channels = {
        c["ChannelName"]: {
            "ContentType": c.get("ContentType"),
            "TrainingInputMode": c.get(
                "InputMode", args.get("AlgorithmSpecification", {}).get("TrainingInputMode", "File")
            ),
            "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                "S3DataDistributionType", "FullyReplicated"
            ),
            "RecordWrapperType": c.get("RecordWrapperType", "None"),
        }
        for c in args.get("InputDataConfig", [])
    }
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    for sub in (
        "/opt/ml/model",
        "/opt/ml/output/data",
        "/opt/ml/output/intermediate",
        "/opt/ml/checkpoints",
    ):
        host_path(ws, sub).mkdir(parents=True, exist_ok=True)


def sm_environment(
    args: dict[str, Any], hps: dict[str, str], program: str | None, submit: str | None
) -> dict[str, str]:
    """The SM_* variables the SageMaker training toolkit sets."""
    channels = [c["ChannelName"] for c in args.get("InputDataConfig", [])]
    user_hps = {k: _decode(v) for k, v in hps.items() if not k.startswith("sagemaker_")}
    user_args = [item for k, v in user_hps.items() for item in (f"--{k}", _arg(v))]
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_CHANNELS": json.dumps(channels),
        "SM_HPS": json.dumps(user_hps),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_CURRENT_INSTANCE_TYPE": str(args.get("ResourceConfig", {}).get("InstanceType", "")),
        "SM_NUM_CPUS": str(_vcpus(args)),
        "SM_NUM_GPUS": "0",
        "SM_NUM_NEURONS": "0",
        "SM_LOG_LEVEL": hps.get("sagemaker_container_log_level", "20"),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_INPUT_DIR": "/opt/ml/input",
        "SM_INPUT_CONFIG_DIR": "/opt/ml/input/config",
        "SM_OUTPUT_DIR": "/opt/ml/output",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_OUTPUT_INTERMEDIATE_DIR": "/opt/ml/output/intermediate",
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_RESOURCE_CONFIG": json.dumps(
            resource_config(args.get("ResourceConfig", {}).get("InstanceType"))
        ),
        "SM_INPUT_DATA_CONFIG": json.dumps({c: {} for c in channels}),
        "SM_FRAMEWORK_MODULE": "",
        "SAGEMAKER_REGION": str(_decode(hps.get("sagemaker_region", '"us-east-1"'))),
        "TRAINING_JOB_NAME": "",
    }
    if program:
        env["SM_USER_ENTRY_POINT"] = program
        env["SM_MODULE_NAME"] = Path(program).stem
        env["SM_MODULE_DIR"] = submit or ""
    for k, v in user_hps.items():
        env[f"SM_HP_{re.sub(r'[^A-Za-z0-9]', '_', k).upper()}"] = (
            v if isinstance(v, str) else json.dumps(v)
        )
    for c in channels:
        env[f"SM_CHANNEL_{re.sub(r'[^A-Za-z0-9]', '_', c).upper()}"] = f"/opt/ml/input/data/{c}"
    env["SM_TRAINING_ENV"] = json.dumps(
        {
            "hyperparameters": user_hps,
            "channel_input_dirs": {c: f"/opt/ml/input/data/{c}" for c in channels},
            "model_dir": "/opt/ml/model",
        }
    )
    return env


def _vcpus(args: dict[str, Any]) -> int:
    limits = limits_for(args.get("ResourceConfig", {}).get("InstanceType"))
    return limits.vcpus if limits is not None else os.cpu_count() or 1


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@record
class Command:
    """What a training step runs, where, and on which environment."""

    argv: list[str]
    cwd: str
    environment: Environment
    program: str | None = None
    submit: str | None = None
    algorithm: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # set after the SM_* variables


CommandFor = Callable[[StepContext, Path, dict[str, str]], Command]


def _command(ctx: StepContext, ws: Path, hps: dict[str, str]) -> Command:
    algo = ctx.arguments.get("AlgorithmSpecification", {})
    image = str(algo.get("TrainingImage", ""))
    env = ctx.images.environment(image, ctx.log.write)
    entry = [str(a) for a in algo.get("ContainerEntrypoint", [])]
    if entry:
        argv = env.argv(entry) + [str(a) for a in algo.get("ContainerArguments", [])]
        return Command(argv, CONTAINER_ROOT, env)
    if "sagemaker_program" in hps:
        program = str(_decode(hps["sagemaker_program"]))
        submit = str(_decode(hps.get("sagemaker_submit_directory", '""')))
        code = host_path(ws, CODE_DIR)
        code.mkdir(parents=True, exist_ok=True)
        if submit:
            _unpack(ctx, submit, code)
        if not (code / program).is_file():
            raise ExecutionError(
                f"sagemaker_program {program!r} is not in the submitted source directory"
            )
        # The toolkit installs requirements.txt before the script, in the image.
        env = ctx.images.with_requirements(env, code / "requirements.txt", ctx.log.write)
        user = [
            item
            for k, v in hps.items()
            if not k.startswith("sagemaker_")
            for item in (f"--{k}", _arg(_decode(v)))
        ]
        if not program.endswith(".py"):
            return _shell_command(code, program, user, env, submit)
        return Command(env.argv(["python", program, *user]), CODE_DIR, env, program, submit)
    algorithm = algorithm_mode(image, hps)
    if algorithm is not None:
        program_path = ctx.sandbox.program(PROGRAMS[algorithm])
        argv = algorithm_command(algorithm, env.argv(["python"]), program_path)
        return Command(argv, CONTAINER_ROOT, env, algorithm=algorithm)
    return Command(env.argv(["python", "train"]), CONTAINER_ROOT, env)


def _shell_command(
    code: Path, program: str, user: list[str], env: Environment, submit: str
) -> Command:
    """An entry point that is not a ``.py`` file runs as the training toolkit runs a command:
    made executable, then ``/bin/sh -c "./<program> <args>"`` in the code folder (its shebang
    line, if any, picks the interpreter; a file without one runs in ``sh``)."""
    path = code / program
    if not path.resolve().is_relative_to(code.resolve()):
        raise ExecutionError(f"sagemaker_program {program!r} points outside the source directory")
    path.chmod(path.stat().st_mode | 0o755)
    line = " ".join([f"./{program}", *user])  # joined unquoted, as the toolkit does
    return Command(["/bin/sh", "-c", line], CODE_DIR, env, program, submit)


def _unpack(ctx: StepContext, uri: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory(dir=ctx.workspace.parent) as tmp:
        archive = Path(tmp) / "sourcedir.tar.gz"
        ctx.store.get_file(uri, archive)
        verify_code_object(uri, archive)
        with tarfile.open(archive) as tar:
            _extract(tar, dest, uri)


def _extract(tar: tarfile.TarFile, dest: Path, uri: str) -> None:
    """Extract files and folders only, inside ``dest`` (Python before 3.11.4 has no filter)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        name = os.path.normpath(member.name)
        if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
            raise ExecutionError(f"{uri}: archive member {member.name!r} is not extracted")
    tar.extractall(dest)  # every member was checked above


def run_training(
    ctx: StepContext, command_for: CommandFor | None = None, skip: frozenset[str] = frozenset()
) -> StepOutcome:
    """Stage channels and code, run the container, pack the model and read the metrics.

    Args:
        ctx: the step.
        command_for: what the container runs (default: the training image's contract).
        skip: channels not staged (their programs are replaced by ``command_for``'s).
    """
    args = ctx.arguments
    ws = ctx.workspace
    started = time.time()
    hps = {str(k): str(v) for k, v in (args.get("HyperParameters") or {}).items()}
    check_destination(str(args["OutputDataConfig"]["S3OutputPath"]), "OutputDataConfig")
    for channel in args.get("InputDataConfig", []):
        if channel["ChannelName"] in skip:
            continue
        src = channel["DataSource"]["S3DataSource"]
        path = f"/opt/ml/input/data/{channel['ChannelName']}"
        kind = src.get("S3DataType", "S3Prefix")
        stage_input(ctx.store, str(src["S3Uri"]), host_path(ws, path), kind)
    _write_configs(ws, args, hps)
    command = (command_for or _command)(ctx, ws, hps)
    ctx.log.write(describe(command.environment))
    env = base_env(
        command.environment,
        sm_environment(args, hps, command.program, command.submit),
        ctx.settings.env,
    )
    env["TRAINING_JOB_NAME"] = ctx.job_name
    env["PYTHONPATH"] = CODE_DIR
    env.update(command.env)
    env.update({k: str(v) for k, v in (args.get("Environment") or {}).items()})
    network = not args.get("EnableNetworkIsolation", False)
    limits = limits_for(args.get("ResourceConfig", {}).get("InstanceType"))
    spec = job_spec(
        ctx.settings, command.argv, env, ws, command.cwd, network, command.environment, limits
    )
    max_runtime = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    log_start = ctx.log.path.stat().st_size
    result = run_job(ctx, spec, float(max_runtime) if max_runtime else None)
    arn = ctx.execution.arn_for("training-job", ctx.job_name)
    props: dict[str, Any] = {
        **args,
        "TrainingJobName": ctx.job_name,
        "TrainingJobArn": arn,
        "CreationTime": started,
        "TrainingStartTime": started,
        "TrainingEndTime": time.time(),
        "TrainingTimeInSeconds": int(time.time() - started),
        "BillableTimeInSeconds": 0,
        "FinalMetricDataList": _metrics(ctx, log_start, command.algorithm),
    }
    metadata = {"TrainingJob": {"Arn": arn}, "_peak_rss_kb": result.peak_rss_kb}
    if result.stopped:
        return StepOutcome(
            "Stopped", {**props, "TrainingJobStatus": "Stopped"}, metadata, "Stopped by user"
        )
    if result.timed_out or result.returncode != 0:
        written = None if result.timed_out else read_failure_file(_failure_file(ws, ctx))
        reason = written or failure_reason(result, max_runtime, limits)
        if command.algorithm is not None and not result.timed_out:
            reason = f"{ALGORITHM_ERROR}{reason}"  # as SageMaker reports a built-in algorithm's
        props.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason)
        return StepOutcome("Failed", props, metadata, reason)
    output_path = join_uri(str(args["OutputDataConfig"]["S3OutputPath"]), ctx.job_name, "output")
    try:
        _pack(ctx, "/opt/ml/model", join_uri(output_path, "model.tar.gz"), required=True)
        _pack(ctx, "/opt/ml/output/data", join_uri(output_path, "output.tar.gz"), required=False)
    except ExecutionError as exc:
        reason = str(exc)
        props.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason)
        return StepOutcome("Failed", props, metadata, reason)
    props.update(
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        ModelArtifacts={"S3ModelArtifacts": join_uri(output_path, "model.tar.gz")},
    )
    return StepOutcome("Succeeded", props, metadata)


def _failure_file(ws: Path, ctx: StepContext) -> Path:
    path = host_path(ws, "/opt/ml/output/failure")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        ctx.log.write("/opt/ml/output/failure is not a regular file; ignored")
    return path


def _pack(ctx: StepContext, container_path: str, uri: str, required: bool) -> None:
    """Tar a folder's regular files (opened without following links) and publish the archive."""
    folder = host_path(ctx.workspace, container_path)
    files, empty = output_files(folder, container_path)
    if not files and not empty and not required:
        return
    with tempfile.TemporaryDirectory(dir=ctx.workspace.parent) as staging:
        archive = Path(staging) / uri.rsplit("/", 1)[-1]
        with tarfile.open(archive, "w:gz") as tar:
            for rel in sorted(empty):
                info = tarfile.TarInfo(rel)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for item in files:
                _add_regular(tar, folder, item.rel, f"{container_path}/{item.rel}")
        publish_output(
            ctx.store,
            Path(staging),
            uri.rsplit("/", 1)[0],
            staging,
            OutputBudget(),
            ctx.publication,
        )


def _add_regular(tar: tarfile.TarFile, folder: Path, rel: str, shown: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(folder / rel, flags)
    except OSError as exc:
        raise ExecutionError(f"output {shown}: {exc.strerror}; not published") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ExecutionError(f"output {shown} is not a regular file; not published")
        info = tarfile.TarInfo(rel)
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), st.st_mode & 0o777
        tar.addfile(info, fh)


def _metrics(ctx: StepContext, offset: int, algorithm: str | None) -> list[dict[str, Any]]:
    definitions = ctx.arguments.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
    if not definitions and algorithm is not None:  # SageMaker registers the algorithm's own
        definitions = metric_definitions(algorithm)
    if not definitions:
        return []
    with ctx.log.path.open(encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        text = fh.read()
    found: dict[str, float] = {}
    for definition in definitions:
        pattern = re.compile(str(definition["Regex"]).replace("#011", "\t"))
        for line in text.splitlines():
            for match in pattern.finditer(line):
                try:
                    found[definition["Name"]] = float(match.group(1))
                except (IndexError, ValueError):
                    continue
    now = time.time()
    return [{"MetricName": k, "Value": v, "Timestamp": now} for k, v in found.items()]
