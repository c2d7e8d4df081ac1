"""Run a SageMaker ``@step`` function step: a Training step whose container is the SDK's invoker.

The SDK's bootstrap scripts are not run: sagepipe's own invoker
(``sagepipe/container/invoke_function.py``) reproduces their contract on the step's image
environment. Before the job the engine reads the function, its arguments and the return values
it takes from other functions out of the store, checks them against their ``metadata.json``
(hash, HMAC or signature) and stages them; requirements the SDK staged are installed into a
derived environment and pre-execution commands run in the step. After it, the return value
(or the exception) is published where the SDK's own invoker writes it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from sagepipe.definition.function_payloads import (
    ARGUMENTS_FOLDER,
    BOOTSTRAP_CHANNEL,
    DEPENDENCIES_CHANNEL,
    EXCEPTION_FOLDER,
    FUNCTION_FOLDER,
    KEY_VARIABLE,
    METADATA,
    PAYLOAD,
    RESULTS_FOLDER,
    RESULTS_JSON,
    FunctionStep,
    PayloadError,
    check_payload,
    is_function_step,
    parse_function_step,
    python_mismatch,
    read_metadata,
)
from sagepipe.engine.context import StepContext, StepOutcome
from sagepipe.engine.processing import host_path
from sagepipe.engine.sandbox import CONTAINER_ROOT
from sagepipe.engine.staging import OutputBudget, publish_output
from sagepipe.engine.training import Command, run_training
from sagepipe.errors import ExecutionError, ObjectNotFoundError
from sagepipe.images import Environment
from sagepipe.storage import join_uri

PROGRAM = "invoke_function.py"
STAGED = "/opt/ml/input/function"
OUTPUT = "/opt/ml/output/function"
# The SDK stages a requirement on itself for the job; sagepipe's invoker stands for it.
_SDK_REQUIREMENT = re.compile(r"^\s*sagemaker(\s*[<>=!~;\[]|\s*$)", re.IGNORECASE)


def run_training_step(ctx: StepContext) -> StepOutcome:
    """A Training step: a ``@step`` function's, or any other training job."""
    if is_function_step(ctx.arguments):
        return run_function(ctx)
    return run_training(ctx)


def run_function(ctx: StepContext) -> StepOutcome:
    """Check and stage the payloads, invoke the function, publish its return or exception."""
    fn = parse_function_step(ctx.arguments, f"step '{ctx.step.name}'")

    def command_for(c: StepContext, ws: Path, _hps: dict[str, str]) -> Command:
        return _command(c, ws, fn)

    outcome = run_training(ctx, command_for, skip=frozenset({BOOTSTRAP_CHANNEL}))
    if outcome.status == "Succeeded":
        try:
            _publish(ctx, RESULTS_FOLDER, fn.results_uri, (PAYLOAD, METADATA, RESULTS_JSON))
        except ExecutionError as exc:
            return StepOutcome("Failed", outcome.properties, outcome.metadata, str(exc))
    elif outcome.status == "Failed":
        try:
            _publish(ctx, EXCEPTION_FOLDER, fn.exception_uri, (PAYLOAD, METADATA))
        except ExecutionError as exc:
            ctx.log.write(f"the exception was not published: {exc}")
    return outcome


def _publish(ctx: StepContext, folder: str, uri: str, names: tuple[str, ...]) -> None:
    """Publish the invoker's files of ``folder`` (nothing else the step left there)."""
    source = host_path(ctx.workspace, f"{OUTPUT}/{folder}")
    shown = f"{OUTPUT}/{folder}"
    if not (source / PAYLOAD).is_file() and not (source / PAYLOAD).is_symlink():
        if folder == RESULTS_FOLDER:
            raise ExecutionError("the function step wrote no return value")
        return
    with tempfile.TemporaryDirectory(dir=ctx.workspace.parent) as tmp:
        for name in names:
            path = source / name
            if not path.exists() and not path.is_symlink():
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                why = "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
                raise ExecutionError(f"output {shown}/{name} {why}; not published") from None
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ExecutionError(f"output {shown}/{name} is not a regular file")
                (Path(tmp) / name).write_bytes(fh.read())
        publication = ctx.publication if folder == RESULTS_FOLDER else None
        publish_output(ctx.store, Path(tmp), uri, shown, OutputBudget(), publication)


def _command(ctx: StepContext, ws: Path, fn: FunctionStep) -> Command:
    algo = ctx.arguments["AlgorithmSpecification"]
    image = str(algo.get("TrainingImage", ""))
    env = ctx.images.environment(image, ctx.log.write)
    _check_runtime(ctx, image, env, fn)
    env = _with_dependencies(ctx, ws, env, fn)
    key = (ctx.arguments.get("Environment") or {}).get(KEY_VARIABLE)
    staged = host_path(ws, STAGED)
    for folder in (FUNCTION_FOLDER, ARGUMENTS_FOLDER):
        _stage(ctx, fn.payload_uri(folder), staged / folder, key)
    returns = {}
    for step, uri in fn.returns_read().items():
        target = staged / "returns" / step
        _stage(ctx, uri, target, None, reader=step)
        returns[uri.rstrip("/")] = f"returns/{step}"
    (staged / "returns.json").write_text(json.dumps(returns))
    host_path(ws, OUTPUT).mkdir(parents=True, exist_ok=True)
    argv = [_text(a) for a in algo.get("ContainerArguments", [])]
    program = ctx.sandbox.program(PROGRAM)
    return Command(env.argv(["python", program, *argv]), CONTAINER_ROOT, env)


def _text(value: Any) -> str:
    """A resolved container argument as SageMaker renders it (booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _minor(version: str) -> str:
    return ".".join(version.strip().split(".")[:2])


def _check_runtime(ctx: StepContext, image: str, env: Environment, fn: FunctionStep) -> None:
    """Refuse before running what SageMaker's bootstrap refuses: another Python minor version."""
    client = _minor(fn.client_python_version)
    spec = ctx.images.spec(image)
    mismatch = python_mismatch(
        ctx.arguments, spec.name, spec.python if spec.kind == "env" else None
    )
    if mismatch is not None:
        raise ExecutionError(mismatch)
    if env.python_version and _minor(env.python_version) != client:
        raise ExecutionError(
            f"the function was pickled on Python {client} but the environment standing for "
            f"{spec.name} runs Python {env.python_version} (no Python {client} here); install "
            f"one ('uv python install {client}') or map the image to it in [tool.sagepipe.images]"
        )
    if env.kind == "env" and "cloudpickle" not in env.packages:
        raise ExecutionError(
            f"the environment for {spec.name} has no cloudpickle, which function steps need; "
            "add cloudpickle (the version the client pickled with) to its packages"
        )
    if fn.job_conda_env:
        raise ExecutionError("job_conda_env: conda environments are not supported locally")


def _with_dependencies(
    ctx: StepContext, ws: Path, env: Environment, fn: FunctionStep
) -> Environment:
    """The environment plus the requirements file the SDK staged (the SDK itself left out)."""
    if fn.dependency_file is None:
        return env
    name = Path(fn.dependency_file).name
    path = host_path(ws, f"/opt/ml/input/data/{DEPENDENCIES_CHANNEL}") / name
    if name.endswith((".yml", ".yaml")):
        raise ExecutionError(f"dependencies {name}: conda environment files are not supported")
    if not path.is_file():
        raise ExecutionError(f"dependencies {name} is not in the {DEPENDENCIES_CHANNEL} channel")
    lines = path.read_text(errors="replace").splitlines()
    kept = [line for line in lines if not _SDK_REQUIREMENT.match(line)]
    if not any(line.strip() and not line.lstrip().startswith("#") for line in kept):
        return env
    filtered = host_path(ws, STAGED) / "requirements.txt"
    filtered.parent.mkdir(parents=True, exist_ok=True)
    filtered.write_text("\n".join(kept) + "\n")
    return ctx.images.with_requirements(env, filtered, ctx.log.write)


def _stage(
    ctx: StepContext, uri: str, target: Path, key: str | None, reader: str | None = None
) -> None:
    """Copy ``uri``'s payload and metadata into ``target`` after checking them."""
    try:
        metadata_bytes = ctx.store.get(join_uri(uri, METADATA))
        payload = ctx.store.get(join_uri(uri, PAYLOAD))
    except ObjectNotFoundError:
        if reader is not None:
            raise PayloadError(
                f"the return value of step '{reader}' is not at {uri}: that step has not "
                "written one in this execution"
            ) from None
        raise PayloadError(
            f"{uri}: no {PAYLOAD} and {METADATA}; the SDK uploads them while it builds the "
            "definition: build it against this store (AWS_ENDPOINT_URL) or copy them in"
        ) from None
    check_payload(payload, read_metadata(metadata_bytes, uri), key, uri)
    target.mkdir(parents=True, exist_ok=True)
    (target / PAYLOAD).write_bytes(payload)
    (target / METADATA).write_bytes(metadata_bytes)
