"""Evaluate definition expressions (Get, Std:Join, Std:JsonGet) and conditions at run time."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from sagepipe.core.expressions import render
from sagepipe.core.json_types import JSON
from sagepipe.core.properties import PropertyPath
from sagepipe.core.references import parse_get, parse_json_path
from sagepipe.errors import ExecutionError, PipelineError
from sagepipe.records import record

__all__ = ["ConditionError", "Scope", "evaluate", "json_path", "render", "walk"]


class ConditionError(ExecutionError):
    """A condition could not be evaluated; the message is the condition step's FailureReason."""


@record(frozen=False)
class Scope:
    """What expressions can read: parameters, execution variables, finished steps' properties."""

    parameters: Mapping[str, JSON]
    execution: Mapping[str, JSON]
    # Describe*-shaped properties of finished steps, built by the step runners.
    steps: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    read_property_file: Callable[[str, str], JSON] | None = None
    read_uri: Callable[[str], bytes] | None = None

    def resolve(self, value: JSON) -> JSON:
        """``value`` with every expression replaced by its value."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, inner),) = value.items()
                if key == "Get":
                    return self.get(inner)
                if key == "Std:Join" and isinstance(inner, dict):
                    return self.join(inner)
                if key == "Std:JsonGet" and isinstance(inner, dict):
                    return self.json_get(inner)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def resolve_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """A step's Arguments object with every expression inside it resolved."""
        return {key: self.resolve(value) for key, value in arguments.items()}

    def get(self, path: JSON) -> JSON:
        """The value of ``Parameters.X``, ``Execution.X`` or ``Steps.X.<property path>``."""
        if not isinstance(path, str):
            raise ExecutionError(f"'Get' must be a string, not {path!r}")
        try:
            ref = parse_get(path)
        except PipelineError as exc:
            raise ExecutionError(str(exc)) from None
        if ref.kind == "Parameters":
            if ref.name not in self.parameters:
                raise ExecutionError(f"unknown parameter '{ref.name}'")
            return self.parameters[ref.name]
        if ref.kind == "Execution":
            if ref.name not in self.execution:
                raise ExecutionError(f"unknown execution variable '{ref.name}'")
            return self.execution[ref.name]
        if ref.name not in self.steps:
            raise ExecutionError(f"step '{ref.name}' has not run, so {path} has no value")
        if ref.property_file is not None:
            raise ExecutionError(f"{path} is a property file; read it with Std:JsonGet")
        try:
            parsed = PropertyPath.parse(ref.path)
        except ValueError as exc:
            raise ExecutionError(f"{path}: {exc}") from None
        return walk(self.steps[ref.name], parsed, path)

    def join(self, spec: Mapping[str, JSON]) -> str:
        """``Std:Join``: the values as strings, joined."""
        values = self.resolve(spec.get("Values", []))
        if not isinstance(values, list):
            raise ExecutionError(f"Std:Join Values must be a list, not {values!r}")
        return render(spec.get("On", "")).join(render(v) for v in values)

    def json_get(self, spec: Mapping[str, JSON]) -> JSON:
        """``Std:JsonGet`` over a PropertyFile or an S3 URI."""
        path = self.resolve(spec.get("Path", ""))
        if not isinstance(path, str):
            raise ExecutionError(f"Std:JsonGet Path must be a string, not {path!r}")
        document: JSON
        if "PropertyFile" in spec:
            ref = spec["PropertyFile"]
            get = ref.get("Get") if isinstance(ref, dict) else None
            parsed = parse_get(get) if isinstance(get, str) else None
            if parsed is None or parsed.property_file is None:
                raise ExecutionError(f"Std:JsonGet PropertyFile {ref!r} is not a PropertyFiles Get")
            if self.read_property_file is None:
                raise ExecutionError("property files cannot be read here")
            document = self.read_property_file(parsed.name, parsed.property_file)
        else:
            uri = self.resolve(spec.get("S3Uri"))
            if self.read_uri is None:
                raise ExecutionError("S3 objects cannot be read here")
            try:
                document = json.loads(self.read_uri(render(uri)))
            except ValueError as exc:
                raise ExecutionError(f"Std:JsonGet S3Uri {uri} is not JSON: {exc}") from None
        return json_path(document, path)


def walk(data: Mapping[str, Any], path: PropertyPath, text: str) -> JSON:
    """Follow a property path through Describe*-shaped data; bracket keys match item names."""
    current: JSON | Mapping[str, Any] = data
    for seg in path.segments:
        if isinstance(seg, str):
            if not isinstance(current, Mapping) or seg not in current:
                raise ExecutionError(f"{text}: property '{seg}' has no value")
            current = current[seg]
        elif isinstance(seg, int):
            if not isinstance(current, list) or not -len(current) <= seg < len(current):
                raise ExecutionError(f"{text}: index {seg} is out of range")
            current = current[seg]
        else:
            current = _lookup(current, seg[0], text)
    if isinstance(current, Mapping):
        return dict(current)
    return current


_ITEM_KEYS = ("OutputName", "InputName", "ChannelName", "MetricName", "Name")


def _lookup(current: JSON | Mapping[str, Any], key: str, text: str) -> JSON:
    if isinstance(current, Mapping):
        if key in current:
            return current[key]
        raise ExecutionError(f"{text}: no entry '{key}'")
    if isinstance(current, list):
        for item in current:
            if isinstance(item, dict) and any(item.get(k) == key for k in _ITEM_KEYS):
                return item
    raise ExecutionError(f"{text}: no item named '{key}'")


def json_path(document: JSON, path: str) -> JSON:
    """Read ``a.b[0].c`` or ``metrics['a.b'].value`` from a JSON document.

    Raises:
        ExecutionError: when the path is not valid or leads nowhere in ``document``.
    """
    try:
        parts = parse_json_path(path)
    except PipelineError as exc:
        raise ExecutionError(str(exc)) from None
    current = document
    for part in parts:
        if isinstance(part, int) and isinstance(current, list):
            if not -len(current) <= part < len(current):
                raise ExecutionError(f"JsonGet path '{path}' has no value at '{part}'")
            current = current[part]
        elif isinstance(part, str) and isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise ExecutionError(f"JsonGet path '{path}' has no value at '{part}'")
    return current


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def evaluate(condition: Mapping[str, JSON], scope: Scope) -> bool:
    """Evaluate one condition JSON.

    Raises:
        ConditionError: when the values cannot be compared (the condition step fails with it).
        ExecutionError: when a value cannot be resolved.
    """
    kind = condition.get("Type")
    if kind == "Not":
        return not evaluate(_object(condition.get("Condition"), kind), scope)
    if kind == "Or":
        inner = condition.get("Conditions")
        if not isinstance(inner, list):
            raise ConditionError(_failed(kind, "Conditions must be a list"))
        return any(evaluate(_object(c, kind), scope) for c in inner)
    if kind == "In":
        value = scope.resolve(condition.get("QueryValue"))
        options = condition.get("Values")
        if not isinstance(options, list):
            raise ConditionError(_failed(kind, "Values must be a list"))
        return any(_equal(value, scope.resolve(v)) for v in options)
    left = scope.resolve(condition.get("LeftValue"))
    right = scope.resolve(condition.get("RightValue"))
    if kind == "Equals":
        return _equal(left, right)
    compare = _COMPARE.get(str(kind))
    if compare is None:
        raise ConditionError(_failed(kind, "unknown condition type"))
    if isinstance(left, str) and isinstance(right, str) and not _numeric(left, right):
        return _COMPARE_TEXT[str(kind)](left, right)
    a, b = _number(left), _number(right)
    if a is None or b is None:
        why = f"cannot compare {_typed(left)} with {_typed(right)}; {kind} compares numbers"
        raise ConditionError(_failed(kind, why))
    return compare(a, b)


_COMPARE_TEXT: dict[str, Callable[[str, str], bool]] = {
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def _numeric(*texts: str) -> bool:
    try:
        for text in texts:
            float(text)
    except ValueError:
        return False
    return True


def _object(value: JSON, kind: JSON) -> Mapping[str, JSON]:
    if not isinstance(value, dict):
        raise ConditionError(_failed(kind, f"{value!r} is not a condition"))
    return value


def _failed(kind: JSON, why: str) -> str:
    # SageMaker reports a step's own failure as "ClientError: <what failed>. <details>".
    return f"ClientError: Failed to evaluate condition {kind}: {why}"


def _number(value: JSON) -> float | None:
    """``value`` as a number for an ordering comparison; numeric strings count as numbers."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _typed(value: JSON) -> str:
    if isinstance(value, bool):
        return f"{render(value)} (Boolean)"
    if isinstance(value, int):
        return f"{value} (Integer)"
    if isinstance(value, float):
        return f"{value} (Float)"
    if isinstance(value, str):
        return f"{value!r} (String)"
    return f"{json.dumps(value)} ({'null' if value is None else type(value).__name__})"


def _equal(left: JSON, right: JSON) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return render(left) == render(right)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    if isinstance(left, str) and isinstance(right, int | float):
        left, right = right, left
    if isinstance(right, str) and isinstance(left, int | float):
        try:
            return float(right) == float(left)
        except ValueError:
            return False
    return left == right
