"""Typed form of a pipeline definition JSON, loaded without loss and dumped back.

``load(text)`` parses and validates; ``Definition.to_json()`` returns the same JSON (keys the
model does not know are carried in ``extra`` fields, so SDK v2/v3 definitions round-trip).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, TypeAlias

from sagepipe.core.expressions import PARAMETER_TYPES as PARAM_CLASSES
from sagepipe.core.graph import Graph, Node, build_graph, scan
from sagepipe.core.json_types import JSON, JSONObject
from sagepipe.core.suggest import did_you_mean, did_you_mean_among
from sagepipe.definition.requests import check_request
from sagepipe.definition.service_limits import (
    MAX_DEFINITION_BYTES,
    MAX_INTEGER_DIGITS,
    SUPPORTED_LOCALLY,
    VERSION,
)
from sagepipe.definition.values import check_values, parse
from sagepipe.errors import DefinitionError, PipelineError
from sagepipe.records import record

# A step's Arguments, RetryPolicies and PropertyFiles: JSON objects whose shape the loader has
# checked (check_request, _property_files) and that the engine and the cloud backend index field
# by field; typed loosely so that those readers need not narrow every level again.
CheckedObject: TypeAlias = Mapping[str, Any]

_STEP_KEYS = (
    "Name",
    "Type",
    "Arguments",
    "DependsOn",
    "DisplayName",
    "Description",
    "CacheConfig",
    "RetryPolicies",
    "PropertyFiles",
)
_TOP_KEYS = ("Version", "Metadata", "Parameters", "PipelineExperimentConfig", "Steps")


@record
class ParameterDef:
    """One entry of ``Parameters``."""

    name: str
    type: str
    default_value: JSON = None
    enum_values: tuple[JSON, ...] | None = None
    extra: Mapping[str, JSON] = field(default_factory=dict)
    type_given: bool = True  # Type may be omitted in the API (String); keep it so

    def to_json(self) -> dict[str, JSON]:
        """The entry as JSON."""
        out: dict[str, JSON] = {"Name": self.name}
        if self.type_given:
            out["Type"] = self.type
        if self.default_value is not None:
            out["DefaultValue"] = self.default_value
        if self.enum_values is not None:
            out["EnumValues"] = list(self.enum_values)
        out.update(self.extra)
        return out

    def convert(self, value: JSON) -> JSON:
        """Convert a start-time value (often a string) to this parameter's type.

        Raises:
            DefinitionError: when ``value`` is not of the type or not one of EnumValues.
        """
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError):
            raise DefinitionError(
                f"parameter '{self.name}': {value!r} is not a valid {self.type}"
            ) from None
        if self.enum_values is not None and converted not in self.enum_values:
            raise DefinitionError(
                f"parameter '{self.name}': {converted!r} is not one of {list(self.enum_values)}"
            )
        return converted


def _convert(kind: str, value: JSON) -> JSON:
    if kind == "String":
        return value if isinstance(value, str) else str(value)
    if kind == "Integer":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        if isinstance(value, str) and len(value.strip().lstrip("+-")) > MAX_INTEGER_DIGITS:
            raise ValueError(value)
        if not isinstance(value, str | int | float):
            raise TypeError(value)
        number = int(value)
        if not -(2**63) <= number < 2**63:
            raise ValueError(value)
        return number
    if kind == "Float":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TypeError(value)
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(value)
        return result
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


@record
class StepDef:
    """One step of the definition; condition branches are nested StepDefs."""

    name: str
    type: str
    arguments: CheckedObject
    depends_on: tuple[str, ...] | None = None
    display_name: str | None = None
    description: str | None = None
    cache_config: Mapping[str, JSON] | None = None
    retry_policies: tuple[CheckedObject, ...] | None = None
    property_files: tuple[CheckedObject, ...] | None = None
    if_steps: tuple[StepDef, ...] = ()
    else_steps: tuple[StepDef, ...] = ()
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def if_steps_names(self) -> tuple[str, ...]:
        """Names of the IfSteps (empty for steps that are not conditions)."""
        return tuple(s.name for s in self.if_steps)

    @property
    def runnable_locally(self) -> bool:
        """Whether the local engine has a runner for this step type."""
        return self.type in SUPPORTED_LOCALLY

    def to_json(self) -> dict[str, JSON]:
        """The step as JSON."""
        args = dict(self.arguments)
        if self.type == "Condition":
            args["IfSteps"] = [s.to_json() for s in self.if_steps]
            args["ElseSteps"] = [s.to_json() for s in self.else_steps]
        out: dict[str, JSON] = {"Name": self.name, "Type": self.type, "Arguments": args}
        optional: tuple[tuple[str, JSON], ...] = (
            ("DependsOn", _listed(self.depends_on)),
            ("DisplayName", self.display_name),
            ("Description", self.description),
            ("RetryPolicies", _listed(self.retry_policies)),
            ("CacheConfig", None if self.cache_config is None else dict(self.cache_config)),
            ("PropertyFiles", _listed(self.property_files)),
        )
        for key, value in optional:
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    def node(self) -> Node:
        """This step reduced to a graph node."""
        scanned = {k: v for k, v in self.arguments.items() if k not in ("IfSteps", "ElseSteps")}
        return Node(
            self.name,
            self.type,
            scan(scanned, "Arguments"),
            depends_on=self.depends_on or (),
            if_steps=tuple(s.name for s in self.if_steps),
            else_steps=tuple(s.name for s in self.else_steps),
            item_names=_item_names(self),
            property_files=frozenset(
                str(pf.get("PropertyFileName")) for pf in self.property_files or ()
            ),
        )

    def property_file(self, name: str) -> CheckedObject:
        """The PropertyFiles entry called ``name``."""
        for pf in self.property_files or ():
            if pf.get("PropertyFileName") == name:
                return pf
        raise DefinitionError(f"step '{self.name}' has no property file '{name}'")


def _listed(items: tuple[str | CheckedObject, ...] | None) -> JSON:
    return None if items is None else [dict(i) if isinstance(i, Mapping) else i for i in items]


def _names(items: JSON, key: str) -> frozenset[str] | None:
    if not isinstance(items, list):
        return None
    found = [it.get(key) for it in items if isinstance(it, dict)]
    if not all(isinstance(n, str) for n in found):
        return None
    return frozenset(str(n) for n in found)


def _item_names(step: StepDef) -> dict[str, frozenset[str]]:
    args = step.arguments
    out: dict[str, frozenset[str] | None] = {}  # args was checked by check_request
    if step.type == "Processing":
        out["ProcessingInputs"] = _names(args.get("ProcessingInputs", []), "InputName")
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        out["ProcessingOutputConfig.Outputs"] = _names(outputs, "OutputName")
    elif step.type == "Training":
        out["InputDataConfig"] = _names(args.get("InputDataConfig", []), "ChannelName")
        metrics = (args.get("AlgorithmSpecification") or {}).get("MetricDefinitions")
        if metrics:
            out["FinalMetricDataList"] = _names(metrics, "Name")
            out["AlgorithmSpecification.MetricDefinitions"] = out["FinalMetricDataList"]
    return {k: v for k, v in out.items() if v is not None}


@record
class Definition:
    """A whole pipeline definition, validated."""

    version: str
    parameters: tuple[ParameterDef, ...]
    steps: tuple[StepDef, ...]
    metadata: Mapping[str, JSON] | None = None
    pipeline_experiment_config: Mapping[str, JSON] | None = None
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nodes = [s.node() for s in self.all_steps()]
        graph = build_graph(nodes, (s.name for s in self.steps), (p.name for p in self.parameters))
        object.__setattr__(self, "_graph", graph)

    @property
    def graph(self) -> Graph:
        """The validated step graph."""
        graph: Graph = self.__dict__["_graph"]
        return graph

    def all_steps(self) -> Iterator[StepDef]:
        """Every step, branches included, parents first."""
        stack = list(reversed(self.steps))
        while stack:
            step = stack.pop()
            yield step
            stack.extend(reversed((*step.if_steps, *step.else_steps)))

    def step(self, name: str) -> StepDef:
        """The step called ``name``."""
        for s in self.all_steps():
            if s.name == name:
                return s
        raise DefinitionError(f"the definition has no step '{name}'")

    def parameter(self, name: str) -> ParameterDef:
        """The parameter called ``name``."""
        for p in self.parameters:
            if p.name == name:
                return p
        known = [p.name for p in self.parameters]
        raise DefinitionError(
            f"unknown parameter '{name}'{did_you_mean_among(name, known, 'parameters')}"
        )

    def resolve_parameters(self, given: Mapping[str, JSON]) -> dict[str, JSON]:
        """Every parameter's value for an execution; see :func:`resolve_parameters`."""
        return resolve_parameters(self, given)

    def unsupported_steps(self) -> list[StepDef]:
        """Steps the local engine cannot run."""
        return [s for s in self.all_steps() if not s.runnable_locally]

    def to_json(self) -> dict[str, JSON]:
        """The definition as JSON, equal to what was loaded."""
        out: dict[str, JSON] = {"Version": self.version}
        if self.metadata is not None:
            out["Metadata"] = dict(self.metadata)
        out["Parameters"] = [p.to_json() for p in self.parameters]
        if self.pipeline_experiment_config is not None:
            out["PipelineExperimentConfig"] = dict(self.pipeline_experiment_config)
        out["Steps"] = [s.to_json() for s in self.steps]
        out.update(self.extra)
        return out

    def dumps(self) -> str:
        """The canonical text of the definition: what is printed, deployed and run."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    def compact(self) -> str:
        """The definition as JSON on one line, for machines (the history keeps this): the same
        content as ``dumps()``, written several times faster (no indent: json's C encoder)."""
        return json.dumps(self.to_json(), separators=(",", ":"))


def resolve_parameters(definition: Definition, given: Mapping[str, JSON]) -> dict[str, JSON]:
    """Every parameter's value for an execution, as StartPipelineExecution settles them.

    Given values (often strings) are converted to the parameter's Type; others take their
    DefaultValue.

    Raises:
        DefinitionError: for a name the definition does not declare, a value that does not
            convert or is not in EnumValues, or a parameter with no default that is not given.
    """
    declared = {p.name: p for p in definition.parameters}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        hint = did_you_mean(unknown[0], declared) if len(unknown) == 1 else ""
        raise DefinitionError(
            f"unknown parameters {unknown}{hint}; the pipeline declares: "
            f"{', '.join(declared) or 'none'}"
        )
    values: dict[str, JSON] = {}
    for name, param in declared.items():
        if name in given:
            values[name] = param.convert(given[name])
        elif param.default_value is not None:
            values[name] = param.default_value
        else:
            raise DefinitionError(f"parameter '{name}' has no default; pass -p {name}=VALUE")
    return values


def load(source: str | bytes | Path | Mapping[str, JSON]) -> Definition:
    """Parse and validate a definition from JSON text, a file path or a dict.

    Raises:
        DefinitionError: naming the step and field at fault and how to fix it.
    """
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise DefinitionError(f"cannot read definition file: {exc}") from None
    if isinstance(source, str | bytes):
        if len(source) > MAX_DEFINITION_BYTES:
            raise DefinitionError(
                f"definition is {len(source):,} bytes; SageMaker accepts at most "
                f"{MAX_DEFINITION_BYTES:,} (1 MB): move large values to S3"
            )
        data = parse(source)
    else:
        data = dict(source)
    try:
        return _definition(data)
    except DefinitionError:
        raise
    except PipelineError as exc:
        raise DefinitionError(str(exc)) from None


def _definition(data: JSON) -> Definition:
    if not isinstance(data, dict):
        raise DefinitionError("definition must be a JSON object with Version, Parameters, Steps")
    _check_sections(data)
    version = data.get("Version")
    if version != VERSION:
        raise DefinitionError(f"definition Version is {version!r}; expected {VERSION!r}")
    steps = data.get("Steps")
    if not isinstance(steps, list) or not steps:
        raise DefinitionError("definition 'Steps' must be a non-empty list of steps")
    params = data.get("Parameters", [])
    if not isinstance(params, list):
        raise DefinitionError("definition 'Parameters' must be a list")
    size = len(json.dumps(data))
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            f"definition is {size:,} bytes; SageMaker accepts at most {MAX_DEFINITION_BYTES:,}"
        )
    return Definition(
        version=version,
        parameters=tuple(_parameter(p, i) for i, p in enumerate(params)),
        steps=tuple(_step(s, f"Steps[{i}]") for i, s in enumerate(steps)),
        metadata=_object_or_none(data, "Metadata"),
        pipeline_experiment_config=_object_or_none(data, "PipelineExperimentConfig"),
        extra={k: v for k, v in data.items() if k not in _TOP_KEYS},
    )


def _check_sections(data: JSONObject) -> None:
    """check_values over the definition, naming each parameter and step by its name."""
    for key, value in data.items():
        items = value if key in ("Parameters", "Steps") and isinstance(value, list) else None
        if items is None:
            check_values(value, f"definition {key}", 1)
            continue
        for i, item in enumerate(items):
            name = item.get("Name") if isinstance(item, dict) else None
            kind = "parameter" if key == "Parameters" else "step"
            where = f"{kind} '{name}'" if isinstance(name, str) else f"definition {key}[{i}]"
            check_values(item, where, 2)


def _object_or_none(data: JSONObject, key: str) -> JSONObject | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise DefinitionError(f"definition '{key}' must be an object")
    return value


def _parameter(raw: JSON, index: int) -> ParameterDef:
    where = f"Parameters[{index}]"
    name = raw.get("Name") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(name, str):
        raise DefinitionError(f"{where} must be an object with a string 'Name'")
    kind = raw.get("Type", "String")
    if not isinstance(kind, str) or kind not in PARAM_CLASSES:
        raise DefinitionError(
            f"parameter '{name}' has Type {kind!r}; use one of {', '.join(PARAM_CLASSES)}"
        )
    default = raw.get("DefaultValue")
    if default is not None and not PARAM_CLASSES[kind].accepts(default):
        raise DefinitionError(
            f"parameter '{name}': DefaultValue {default!r} is not of type {kind}; "
            f"write a {kind} value or change the Type"
        )
    enum = raw.get("EnumValues")
    if enum is not None and (not isinstance(enum, list) or not enum):
        raise DefinitionError(f"parameter '{name}': EnumValues must be a non-empty list")
    if enum is not None and default is not None and default not in enum:
        raise DefinitionError(f"parameter '{name}': DefaultValue {default!r} is not in EnumValues")
    extra = {
        k: v for k, v in raw.items() if k not in ("Name", "Type", "DefaultValue", "EnumValues")
    }
    return ParameterDef(
        name, kind, default, tuple(enum) if enum is not None else None, extra, "Type" in raw
    )


def _step(raw: JSON, where: str) -> StepDef:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where} must be an object with Name, Type and Arguments")
    name = raw.get("Name")
    if not isinstance(name, str):
        raise DefinitionError(f"{where} has no string 'Name'")
    kind = raw.get("Type")
    if not isinstance(kind, str):
        raise DefinitionError(f"step '{name}' has no string 'Type'")
    args = raw.get("Arguments", {})
    if not isinstance(args, dict):
        raise DefinitionError(f"step '{name}': Arguments must be an object")
    if_steps: tuple[StepDef, ...] = ()
    else_steps: tuple[StepDef, ...] = ()
    if kind == "Condition":
        args = dict(args)
        conditions = args.get("Conditions")
        if not isinstance(conditions, list) or not conditions:
            raise DefinitionError(f"condition step '{name}': Arguments.Conditions must be a list")
        _check_conditions(name, conditions, "Arguments.Conditions")
        if_steps = _branch(name, args.pop("IfSteps", []), "IfSteps")
        else_steps = _branch(name, args.pop("ElseSteps", []), "ElseSteps")
    elif kind == "Fail" and "ErrorMessage" not in args:
        raise DefinitionError(f"fail step '{name}': Arguments.ErrorMessage is missing")
    else:
        check_request(name, kind, args)
    depends = raw.get("DependsOn")
    if depends is not None and (
        not isinstance(depends, list) or not all(isinstance(d, str) for d in depends)
    ):
        raise DefinitionError(f"step '{name}': DependsOn must be a list of step names")
    cache = raw.get("CacheConfig")
    if cache is not None and not isinstance(cache, dict):
        raise DefinitionError(f"step '{name}': CacheConfig must be an object")
    return StepDef(
        name=name,
        type=kind,
        arguments=args,
        depends_on=tuple(str(d) for d in depends) if depends is not None else None,
        display_name=_text(name, raw, "DisplayName"),
        description=_text(name, raw, "Description"),
        cache_config=cache,
        retry_policies=_tuple_of_objects(name, raw, "RetryPolicies"),
        property_files=_property_files(name, raw, args),
        if_steps=if_steps,
        else_steps=else_steps,
        extra={k: v for k, v in raw.items() if k not in _STEP_KEYS},
    )


def _text(name: str, raw: JSONObject, key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise DefinitionError(f"step '{name}': {key} must be a string")
    return value


def _tuple_of_objects(name: str, raw: JSONObject, key: str) -> tuple[JSONObject, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DefinitionError(f"step '{name}': {key} must be a list of objects")
    return tuple(v for v in value if isinstance(v, dict))


def _property_files(name: str, raw: JSONObject, args: JSONObject) -> tuple[JSONObject, ...] | None:
    files = _tuple_of_objects(name, raw, "PropertyFiles")
    config = args.get("ProcessingOutputConfig")
    outputs = config.get("Outputs") if isinstance(config, dict) else None
    listed = outputs if isinstance(outputs, list) else []
    names = {o.get("OutputName") for o in listed if isinstance(o, dict)}
    for pf in files or ():
        missing = [k for k in ("PropertyFileName", "OutputName", "FilePath") if k not in pf]
        if missing:
            raise DefinitionError(f"step '{name}': PropertyFiles entry lacks {', '.join(missing)}")
        if pf["OutputName"] not in names:
            raise DefinitionError(
                f"step '{name}': PropertyFile '{pf['PropertyFileName']}' names output "
                f"'{pf['OutputName']}'; outputs are: {', '.join(sorted(map(str, names))) or 'none'}"
            )
    return files


_COMPARISONS = {
    "Equals",
    "GreaterThan",
    "GreaterThanOrEqualTo",
    "LessThan",
    "LessThanOrEqualTo",
}


def _check_conditions(step: str, conditions: list[JSON], where: str) -> None:
    for i, cond in enumerate(conditions):
        at = f"{where}[{i}]"
        kind = cond.get("Type") if isinstance(cond, dict) else None
        if not isinstance(cond, dict) or kind not in (*_COMPARISONS, "In", "Not", "Or"):
            known = ", ".join(sorted({*_COMPARISONS, "In", "Not", "Or"}))
            raise DefinitionError(
                f"condition step '{step}' {at}: unknown condition Type {kind!r}; use one of {known}"
            )
        if kind in _COMPARISONS:
            missing = [k for k in ("LeftValue", "RightValue") if k not in cond]
        elif kind == "In":
            missing = [k for k in ("QueryValue", "Values") if k not in cond]
            if not missing and not isinstance(cond["Values"], list):
                missing = ["Values as a list"]
        elif kind == "Not":
            inner = cond.get("Condition")
            missing = [] if isinstance(inner, dict) else ["Condition"]
            if not missing:
                _check_conditions(step, [inner], f"{at}.Condition")
        else:
            inner = cond.get("Conditions")
            missing = [] if isinstance(inner, list) else ["Conditions"]
            if isinstance(inner, list):
                _check_conditions(step, inner, f"{at}.Conditions")
        if missing:
            raise DefinitionError(
                f"condition step '{step}' {at}: {kind} condition lacks {', '.join(missing)}"
            )


def _branch(name: str, raw: JSON, key: str) -> tuple[StepDef, ...]:
    if not isinstance(raw, list):
        raise DefinitionError(f"condition step '{name}': {key} must be a list of steps")
    return tuple(_step(s, f"step '{name}' {key}[{i}]") for i, s in enumerate(raw))
