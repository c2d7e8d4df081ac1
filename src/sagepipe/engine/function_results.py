"""A function step's return value, read back like the SDK's ``execution.result(step_name)``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sagepipe.config import Settings
from sagepipe.definition.function_payloads import (
    METADATA,
    PAYLOAD,
    check_payload,
    is_function_step,
    read_metadata,
)
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.history import History
from sagepipe.errors import ExecutionError, ObjectNotFoundError, UsageError
from sagepipe.records import record
from sagepipe.storage import ObjectStore, join_uri

# Runs on the image environment's interpreter (it has cloudpickle, whose reconstructors a
# return value pickled by value needs): the payload on stdin, its repr on stdout.
_SHOW = "import pickle, sys\nimport cloudpickle\nprint(repr(pickle.load(sys.stdin.buffer)))\n"


@record
class FunctionResult:
    """The pickled return value of one function step, checked against its metadata."""

    step: str
    uri: str
    image: str
    payload: bytes


def function_result(
    history: History, store: ObjectStore, execution_id: str, step: str
) -> FunctionResult:
    """The return value of function step ``step`` in a local execution.

    Raises:
        ExecutionError: no such execution or step, a step that is not a function step, that
            failed (its FailureReason: the exception's repr) or has not succeeded, or a result
            that is missing or fails its integrity check.
    """
    record = history.execution(execution_id)
    steps = {s.name: s for s in history.steps(record.id)}
    found = steps.get(step)
    if found is None:
        names = ", ".join(sorted(steps)) or "none"
        raise ExecutionError(f"execution {record.id} ran no step '{step}'; its steps: {names}")
    if found.status == "Failed":
        raise ExecutionError(
            f"step '{step}' failed: {found.failure_reason}; its traceback: "
            f"'sagepipe logs {record.id} {step}'"
        )
    if found.type != "Training" or not is_function_step(found.properties):
        raise ExecutionError(
            f"step '{step}' is a {found.type} step, not a @step function: only function "
            "steps have a return value"
        )
    if found.status != "Succeeded":
        raise ExecutionError(f"step '{step}' is {found.status}: it has no return value yet")
    uri = str(found.properties["OutputDataConfig"]["S3OutputPath"])
    image = str(found.properties["AlgorithmSpecification"].get("TrainingImage", ""))
    return read_result(store, step, uri, image)


def read_result(store: ObjectStore, step: str, uri: str, image: str) -> FunctionResult:
    """The return value a function step left under ``uri`` (its S3OutputPath), checked
    against its metadata; ``image`` is the step's TrainingImage.

    Raises:
        ExecutionError: the payload or its metadata is missing, or they do not match.
    """
    try:
        payload = store.get(join_uri(uri, PAYLOAD))
        metadata = read_metadata(store.get(join_uri(uri, METADATA)), uri)
    except ObjectNotFoundError as exc:
        raise ExecutionError(f"step '{step}': its return value is gone: {exc}") from None
    check_payload(payload, metadata, None, uri)
    return FunctionResult(step, uri, image, payload)


def show_result(settings: Settings, result: FunctionResult) -> str:
    """The return value's ``repr``, unpickled on the step's image environment.

    Unpickling runs code, as the SDK's ``execution.result()`` does on the client: do it only
    for executions whose steps you trust; ``save_result`` writes the pickle unopened.
    """
    env = StepEnvironments(settings).environment(result.image)
    done = subprocess.run(
        [str(env.python), "-c", _SHOW],
        input=result.payload,
        capture_output=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise ExecutionError(
            f"step '{result.step}': its return value does not unpickle on {env.name}: "
            f"{lines[-1] if lines else done.returncode}"
        )
    return done.stdout.decode(errors="replace").rstrip("\n")


def save_result(result: FunctionResult, path: Path) -> None:
    """Write the pickled return value (cloudpickle, as the SDK stored it) to ``path``.

    Raises:
        UsageError: ``path`` cannot be written.
    """
    try:
        path.write_bytes(result.payload)
    except OSError as exc:
        raise UsageError(f"--output {path}: {exc.strerror}") from None
