"""Evaluate definition expressions (Get, Std:Join, Std:JsonGet) and conditions at run time."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagepipe.core.expressions import render
from sagepipe.core.properties import PropertyPath
from sagepipe.errors import ExecutionError

__all__ = ["Scope", "evaluate", "json_path", "render", "walk"]

Json = Any


@dataclass
class Scope:
    """What expressions can read: parameters, execution variables, finished steps' properties."""

    parameters: Mapping[str, Any]
    execution: Mapping[str, Any]
    steps: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    read_property_file: Callable[[str, str], Any] | None = None
    read_uri: Callable[[str], bytes] | None = None

    def resolve(self, value: Json) -> Json:
        """``value`` with every expression replaced by its value."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, inner),) = value.items()
                if key == "Get":
                    return self.get(inner)
                if key == "Std:Join":
                    return self.join(inner)
                if key == "Std:JsonGet":
                    return self.json_get(inner)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def get(self, path: str) -> Any:
        """The value of ``Parameters.X``, ``Execution.X`` or ``Steps.X.<property path>``."""
        kind, _, rest = path.partition(".")
        if kind == "Parameters":
            if rest not in self.parameters:
                raise ExecutionError(f"unknown parameter '{rest}'")
            return self.parameters[rest]
        if kind == "Execution":
            if rest not in self.execution:
                raise ExecutionError(f"unknown execution variable '{rest}'")
            return self.execution[rest]
        step, _, _prop = rest.partition(".")
        step = step.split("[", 1)[0]
        if step not in self.steps:
            raise ExecutionError(f"step '{step}' has not run, so {path} has no value")
        return walk(self.steps[step], PropertyPath.parse(rest[len(step) :]), path)

    def join(self, spec: Mapping[str, Any]) -> str:
        """``Std:Join``: the values as strings, joined."""
        values = self.resolve(spec.get("Values", []))
        return str(spec.get("On", "")).join(render(v) for v in values)

    def json_get(self, spec: Mapping[str, Any]) -> Any:
        """``Std:JsonGet`` over a PropertyFile or an S3 URI."""
        path = str(spec.get("Path", ""))
        if "PropertyFile" in spec:
            ref = spec["PropertyFile"]
            get = ref.get("Get", "") if isinstance(ref, dict) else ""
            parts = get.split(".")
            if len(parts) != 4 or parts[0] != "Steps" or parts[2] != "PropertyFiles":
                raise ExecutionError(f"Std:JsonGet PropertyFile {ref!r} is not a PropertyFiles Get")
            if self.read_property_file is None:
                raise ExecutionError("property files cannot be read here")
            document = self.read_property_file(parts[1], parts[3])
        else:
            uri = self.resolve(spec.get("S3Uri"))
            if self.read_uri is None:
                raise ExecutionError("S3 objects cannot be read here")
            document = json.loads(self.read_uri(str(uri)))
        return json_path(document, path)


def walk(data: Any, path: PropertyPath, text: str) -> Any:
    """Follow a property path through Describe*-shaped data; bracket keys match item names."""
    current = data
    for seg in path.segments:
        if isinstance(seg, str):
            if not isinstance(current, Mapping) or seg not in current:
                raise ExecutionError(f"{text}: property '{seg}' has no value")
            current = current[seg]
        elif isinstance(seg, int):
            if not isinstance(current, list) or seg >= len(current):
                raise ExecutionError(f"{text}: index {seg} is out of range")
            current = current[seg]
        else:
            current = _lookup(current, seg[0], text)
    return current


_ITEM_KEYS = ("OutputName", "InputName", "ChannelName", "MetricName", "Name")


def _lookup(current: Any, key: str, text: str) -> Any:
    if isinstance(current, Mapping):
        if key in current:
            return current[key]
        raise ExecutionError(f"{text}: no entry '{key}'")
    if isinstance(current, list):
        for item in current:
            if isinstance(item, Mapping) and any(item.get(k) == key for k in _ITEM_KEYS):
                return item
    raise ExecutionError(f"{text}: no item named '{key}'")


def json_path(document: Any, path: str) -> Any:
    """Read ``a.b[0].c`` from a JSON document (the JsonPath subset SageMaker documents)."""
    current = document
    for part in _path_parts(path):
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            raise ExecutionError(f"JsonGet path '{path}' has no value at '{part}'") from None
    return current


def _path_parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in path.replace("[", ".[").split("."):
        if not chunk or chunk == "$":
            continue
        if chunk.startswith("[") and chunk.endswith("]"):
            inner = chunk[1:-1].strip("'\"")
            parts.append(int(inner) if inner.lstrip("-").isdigit() else inner)
        else:
            parts.append(chunk)
    return parts


def evaluate(condition: Mapping[str, Any], scope: Scope) -> bool:
    """Evaluate one condition JSON."""
    kind = condition["Type"]
    if kind == "Not":
        return not evaluate(condition["Condition"], scope)
    if kind == "Or":
        return any(evaluate(c, scope) for c in condition["Conditions"])
    if kind == "In":
        value = scope.resolve(condition["QueryValue"])
        return any(_equal(value, scope.resolve(v)) for v in condition["Values"])
    left = scope.resolve(condition["LeftValue"])
    right = scope.resolve(condition["RightValue"])
    if kind == "Equals":
        return _equal(left, right)
    try:
        a, b = _comparable(left, right)
        if kind == "GreaterThan":
            return bool(a > b)
        if kind == "GreaterThanOrEqualTo":
            return bool(a >= b)
        if kind == "LessThan":
            return bool(a < b)
        if kind == "LessThanOrEqualTo":
            return bool(a <= b)
    except TypeError:
        raise ExecutionError(f"{kind}: cannot compare {left!r} with {right!r}") from None
    raise ExecutionError(f"unknown condition type {kind!r}")


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, str) and isinstance(right, int | float):
        return float(left), right
    if isinstance(right, str) and isinstance(left, int | float):
        return left, float(right)
    return left, right


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return render(left) == render(right)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    if isinstance(left, str) and isinstance(right, int | float):
        try:
            return float(left) == float(right)
        except ValueError:
            return False
    return bool(left == right)
