"""Check a job step's Arguments the way SageMaker validates the job request it becomes.

A Processing step's Arguments are a CreateProcessingJob request and a Training step's a
CreateTrainingJob request, less the job name the pipeline sets. The shapes (required members,
types, lengths, ranges, enums, patterns) come from botocore's SageMaker service model, kept as
``sagemaker_requests.json`` (regenerate with ``tests/fixtures/make_shapes.py``). A few rules
SageMaker applies beyond the model are listed in :data:`_RULES`.

Expressions (``Get``, ``Std:Join``, ``Std:JsonGet``) stand for any value and are accepted where
they appear; :func:`check_request` can be called again on the resolved arguments.
"""

from __future__ import annotations

import functools
import json
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TypedDict

from sagepipe.core.json_types import JSON
from sagepipe.core.steps import PROCESSING_ROOT
from sagepipe.core.suggest import did_you_mean
from sagepipe.definition.service_limits import MAX_TRAINING_SECONDS
from sagepipe.errors import DefinitionError

EXPRESSION_KEYS = frozenset({"Get", "Std:Join", "Std:JsonGet"})
_SHOWN = 60  # characters of a value quoted in a message


def is_expression(value: object) -> bool:
    """Whether ``value`` is a ``Get``, ``Std:Join`` or ``Std:JsonGet`` (resolved at run time)."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSION_KEYS


class _Shape(TypedDict, total=False):
    """One shape of the service model, reduced to what is checked."""

    type: str
    required: list[str]
    members: dict[str, str]
    member: str
    key: str
    value: str
    min: float
    max: float
    pattern: str
    enum: list[str]


class _Operation(TypedDict):
    shape: str
    set_by_pipeline: list[str]


class _Model(TypedDict):
    source: str
    operations: dict[str, _Operation]
    shapes: dict[str, _Shape]


@functools.cache
def _model() -> _Model:
    # pkgutil rather than importlib.resources: the same file, without importing zipfile
    raw = pkgutil.get_data("sagepipe.definition", "sagemaker_requests.json")
    if raw is None:
        raise DefinitionError("the request model (sagemaker_requests.json) cannot be read")
    data: _Model = json.loads(raw.decode("utf-8"))
    return data


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def checked_step_types() -> tuple[str, ...]:
    """The step types whose Arguments are checked against a SageMaker request shape."""
    return tuple(_model()["operations"])


def check_request(step: str, step_type: str, arguments: Mapping[str, JSON]) -> None:
    """Raise DefinitionError naming the first field SageMaker would reject.

    Args:
        step: the step's name, for the message.
        step_type: ``Processing`` or ``Training``; other types are not checked.
        arguments: the step's Arguments, with or without expressions resolved.

    Raises:
        DefinitionError: one line naming the step, the field and what it must be.
    """
    operation = _model()["operations"].get(step_type)
    if operation is None:
        return
    problem = next(_problems(dict(arguments), operation["shape"], "Arguments", top=operation), None)
    if problem is None:
        problem = next((p for rule in _RULES.get(step_type, ()) for p in rule(arguments)), None)
    if problem is not None:
        raise DefinitionError(f"step '{step}': {problem}")


def _problems(
    value: JSON, shape_name: str, where: str, top: _Operation | None = None
) -> Iterator[str]:
    if is_expression(value):
        return
    shape = _model()["shapes"][shape_name]
    kind = shape["type"]
    if kind == "structure":
        yield from _structure(value, shape, where, top)
    elif kind == "list":
        if not isinstance(value, list):
            yield f"{where} is {_show(value)}; it must be a list{_list_hint(shape)}"
            return
        yield from _length(len(value), shape, where, "items")
        for i, item in enumerate(value):
            yield from _problems(item, shape["member"], f"{where}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            yield f"{where} is {_show(value)}; it must be an object of names to values"
            return
        yield from _length(len(value), shape, where, "entries")
        for key, item in value.items():
            yield from _scalar(key, shape["key"], f"{where} name")
            yield from _problems(item, shape["value"], f"{where}.{key}")
    else:
        yield from _scalar(value, shape_name, where)


def _structure(value: JSON, shape: _Shape, where: str, top: _Operation | None) -> Iterator[str]:
    if not isinstance(value, dict):
        yield f"{where} is {_show(value)}; it must be an object"
        return
    members: Mapping[str, str] = shape.get("members", {})
    skip = set(top["set_by_pipeline"]) if top else set()
    for name in shape.get("required", ()):
        if value.get(name) is None and name not in skip:
            operation = top["shape"].removesuffix("Request") if top else "SageMaker"
            yield f"{where}.{name} is missing; {operation} requires it"
    for name, item in value.items():
        if item is None:  # a null member counts as absent
            continue
        if name in members:
            yield from _problems(item, members[name], f"{where}.{name}")
        elif did_you_mean(name, members):
            # an unknown member close to a known one is a typo; others are left to SageMaker
            yield f"{where}.{name} is not a field here{did_you_mean(name, members)}"


def _scalar(value: JSON, shape_name: str, where: str) -> Iterator[str]:
    if is_expression(value):
        return
    shape = _model()["shapes"][shape_name]
    kind = shape["type"]
    if kind == "string":
        if not isinstance(value, str):
            yield f"{where} is {_show(value)}; it must be a string"
            return
        yield from _length(len(value), shape, where, "characters")
        if "enum" in shape and value not in shape["enum"]:
            yield f"{where} is {_show(value)}; it must be one of {_choices(value, shape['enum'])}"
        elif "pattern" in shape and not _regex(shape["pattern"]).fullmatch(value):
            yield f"{where} is {_show(value)}; it must match {shape['pattern']}"
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{where} is {_show(value)}; it must be an integer"
        else:
            yield from _range(value, shape, where)
    elif kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            yield f"{where} is {_show(value)}; it must be a number"
        else:
            yield from _range(value, shape, where)
    elif kind == "boolean":
        if not isinstance(value, bool):
            yield f"{where} is {_show(value)}; it must be true or false"
    elif kind == "timestamp" and not isinstance(value, str | int | float):
        yield f"{where} is {_show(value)}; it must be a time"


def _length(size: int, shape: _Shape, where: str, unit: str) -> Iterator[str]:
    if size < shape.get("min", 0):
        yield f"{where} has {size} {unit}; it needs at least {shape['min']}"
    elif "max" in shape and size > shape["max"]:
        yield f"{where} has {size} {unit}; SageMaker accepts at most {shape['max']}"


def _range(value: float, shape: _Shape, where: str) -> Iterator[str]:
    if "min" in shape and value < shape["min"]:
        yield f"{where} is {value}; it must be at least {shape['min']}"
    elif "max" in shape and value > shape["max"]:
        yield f"{where} is {value}; it must be at most {shape['max']}"


def _list_hint(shape: _Shape) -> str:
    member = _model()["shapes"][shape["member"]]
    if member["type"] == "string":
        return ' of strings, e.g. ["python3", "script.py"]'
    return ""


def _choices(value: str, options: list[str]) -> str:
    hint = did_you_mean(value, options)
    if hint or len(options) > 12:
        return f"SageMaker's values{hint or ' (see the API reference)'}"
    return ", ".join(options)


def _show(value: JSON) -> str:
    if isinstance(value, str):
        return f"the string {value[:_SHOWN]!r}" + ("…" if len(value) > _SHOWN else "")
    if value is None:
        return "null"
    text = json.dumps(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


# Rules SageMaker applies that the service model does not express.


def _processing_outputs(args: Mapping[str, JSON]) -> Iterator[str]:
    config = args.get("ProcessingOutputConfig")
    outputs = config.get("Outputs") if isinstance(config, dict) else None
    for i, out in enumerate(outputs if isinstance(outputs, list) else []):
        where = f"Arguments.ProcessingOutputConfig.Outputs[{i}]"
        if isinstance(out, dict) and "S3Output" not in out and "FeatureStoreOutput" not in out:
            yield f"{where} has neither S3Output nor FeatureStoreOutput; give it an S3Output"
        s3 = out.get("S3Output") if isinstance(out, dict) else None
        if isinstance(s3, dict):
            yield from _local_path(s3.get("LocalPath"), f"{where}.S3Output.LocalPath")


def _processing_inputs(args: Mapping[str, JSON]) -> Iterator[str]:
    inputs = args.get("ProcessingInputs")
    for i, inp in enumerate(inputs if isinstance(inputs, list) else []):
        where = f"Arguments.ProcessingInputs[{i}]"
        if isinstance(inp, dict) and "S3Input" not in inp and "DatasetDefinition" not in inp:
            yield f"{where} has neither S3Input nor DatasetDefinition; give it an S3Input"
        s3 = inp.get("S3Input") if isinstance(inp, dict) else None
        if isinstance(s3, dict):
            yield from _local_path(s3.get("LocalPath"), f"{where}.S3Input.LocalPath")


def _local_path(path: JSON, where: str) -> Iterator[str]:
    if isinstance(path, str) and not path.startswith(PROCESSING_ROOT):
        yield f"{where} is {path!r}; it must start with {PROCESSING_ROOT}"


def _training_algorithm(args: Mapping[str, JSON]) -> Iterator[str]:
    algo = args.get("AlgorithmSpecification")
    if algo is None:
        yield "Arguments.AlgorithmSpecification is missing; a training job needs an algorithm"
    elif isinstance(algo, dict) and not ({"TrainingImage", "AlgorithmName"} & set(algo)):
        yield (
            "Arguments.AlgorithmSpecification has neither TrainingImage nor AlgorithmName; "
            "give the training image URI"
        )
    if "ResourceConfig" not in args:
        yield "Arguments.ResourceConfig is missing; a training job needs its instances"


def _training_runtime(args: Mapping[str, JSON]) -> Iterator[str]:
    stopping = args.get("StoppingCondition")
    seconds = stopping.get("MaxRuntimeInSeconds") if isinstance(stopping, dict) else None
    if isinstance(seconds, int) and seconds > MAX_TRAINING_SECONDS:
        yield (
            f"Arguments.StoppingCondition.MaxRuntimeInSeconds is {seconds}; a training job may "
            f"run at most {MAX_TRAINING_SECONDS} seconds (28 days)"
        )


_RULES: dict[str, tuple[Callable[[Mapping[str, JSON]], Iterator[str]], ...]] = {
    "Processing": (_processing_inputs, _processing_outputs),
    "Training": (_training_algorithm, _training_runtime),
}

__all__ = ["EXPRESSION_KEYS", "check_request", "checked_step_types", "is_expression"]
