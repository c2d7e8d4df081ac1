"""Pipeline variables: parameters, execution variables, step properties, Join and JsonGet.

Every variable knows its JSON form (``expr``) exactly as the SageMaker SDK writes it and the
names of the steps it reads from, which is how data dependencies are inferred.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, ClassVar, TypeAlias

from sagepipe.core.json_types import JSON
from sagepipe.core.properties import PropertyPath
from sagepipe.core.references import parse_json_path
from sagepipe.errors import PipelineError
from sagepipe.records import record

if TYPE_CHECKING:
    from sagepipe.core.steps import PropertyFile

PRIMITIVES = (str, int, float, bool)


class Expression:
    """Base of every value that is resolved when the pipeline runs.

    Which steps a value reads is found by scanning its JSON form (core.graph.scan), the same
    way for authored pipelines and loaded definitions.
    """

    @property
    def expr(self) -> JSON:
        """The definition JSON form of this value."""
        raise NotImplementedError

    def __str__(self) -> str:
        raise PipelineError(
            f"{type(self).__name__} has no value until the pipeline runs; "
            "use Join(on='', values=[...]) to build a string from it"
        )


# What an author may write where the definition takes a value: a primitive, an expression
# (a parameter, a step property, Join, JsonGet), or a list or mapping of those.
PipelineValue: TypeAlias = (
    "Expression | str | int | float | bool | Sequence[PipelineValue] "
    "| Mapping[str, PipelineValue] | None"
)


def freeze_list(obj: object, name: str) -> None:
    """Keep field ``name`` of a frozen record as a tuple. Authors pass lists, as to the SDK;
    a string is refused rather than becoming a tuple of its characters."""
    value = getattr(obj, name)
    if value is None:
        return
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise PipelineError(
            f"{type(obj).__name__} {name} takes a list, not {type(value).__name__} {value!r}"
        )
    object.__setattr__(obj, name, tuple(value))


def render(value: object) -> str:
    """A resolved value as text, the way the service writes it (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_expr(value: object) -> JSON:
    """Return the JSON form of a primitive or an expression."""
    if isinstance(value, Expression):
        return value.expr
    if value is None or isinstance(value, PRIMITIVES):
        return value
    if isinstance(value, list | tuple):
        return [to_expr(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_expr(v) for k, v in value.items()}
    raise PipelineError(f"value {value!r} of type {type(value).__name__} cannot go in a pipeline")


@record
class Parameter(Expression):
    """A pipeline parameter; values given at start time are strings converted to ``TYPE``."""

    name: str
    default_value: str | int | float | bool | None = None
    enum_values: Sequence[str | int | float | bool] | None = None
    TYPE: ClassVar[str] = ""
    PYTHON: ClassVar[tuple[type, ...]] = ()

    def __post_init__(self) -> None:
        if self.enum_values is not None:
            freeze_list(self, "enum_values")
        if self.default_value is not None and not self.accepts(self.default_value):
            raise PipelineError(
                f"parameter '{self.name}': default {self.default_value!r} is not of type {self.TYPE}"
            )
        if (
            self.enum_values
            and self.default_value is not None
            and self.default_value not in self.enum_values
        ):
            raise PipelineError(
                f"parameter '{self.name}': default {self.default_value!r} is not one of "
                f"{list(self.enum_values)}"
            )

    @classmethod
    def accepts(cls, value: object) -> bool:
        """Whether ``value`` is a valid Python value for this parameter type."""
        if isinstance(value, bool) and bool not in cls.PYTHON:
            return False
        return isinstance(value, cls.PYTHON)

    @property
    def expr(self) -> JSON:
        return {"Get": f"Parameters.{self.name}"}

    def to_request(self) -> dict[str, JSON]:
        """The entry of the definition's ``Parameters`` list."""
        out: dict[str, JSON] = {"Name": self.name, "Type": self.TYPE}
        if self.default_value is not None:
            out["DefaultValue"] = self.default_value
        if self.enum_values is not None:
            out["EnumValues"] = list(self.enum_values)
        return out


@record
class ParameterString(Parameter):
    """A string parameter, optionally restricted to ``enum_values``."""

    TYPE: ClassVar[str] = "String"
    PYTHON: ClassVar[tuple[type, ...]] = (str,)


@record
class ParameterInteger(Parameter):
    """An integer parameter."""

    TYPE: ClassVar[str] = "Integer"
    PYTHON: ClassVar[tuple[type, ...]] = (int,)


@record
class ParameterFloat(Parameter):
    """A float parameter (integers are accepted as defaults)."""

    TYPE: ClassVar[str] = "Float"
    PYTHON: ClassVar[tuple[type, ...]] = (float, int)


@record
class ParameterBoolean(Parameter):
    """A boolean parameter."""

    TYPE: ClassVar[str] = "Boolean"
    PYTHON: ClassVar[tuple[type, ...]] = (bool,)


PARAMETER_TYPES: dict[str, type[Parameter]] = {
    cls.TYPE: cls for cls in (ParameterString, ParameterInteger, ParameterFloat, ParameterBoolean)
}


@record
class ExecutionVariable(Expression):
    """A value SageMaker sets for each execution, such as its id."""

    name: str

    @property
    def expr(self) -> JSON:
        return {"Get": f"Execution.{self.name}"}


class ExecutionVariables:
    """The execution variables SageMaker Pipelines provides."""

    START_DATETIME = ExecutionVariable("StartDateTime")
    CURRENT_DATETIME = ExecutionVariable("CurrentDateTime")
    PIPELINE_EXECUTION_ID = ExecutionVariable("PipelineExecutionId")
    PIPELINE_EXECUTION_ARN = ExecutionVariable("PipelineExecutionArn")
    PIPELINE_NAME = ExecutionVariable("PipelineName")
    PIPELINE_ARN = ExecutionVariable("PipelineArn")

    NAMES: ClassVar[frozenset[str]] = frozenset(
        {
            "StartDateTime",
            "CurrentDateTime",
            "PipelineExecutionId",
            "PipelineExecutionArn",
            "PipelineName",
            "PipelineArn",
        }
    )


@record
class Properties(Expression):
    """A reference to a step property, built by attribute and item access.

    ``step.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri`` becomes
    ``{"Get": "Steps.<step>.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}``.
    Every access is checked against the Describe* response shape of the step type.
    """

    step_name: str
    step_type: str
    path: PropertyPath = field(default_factory=PropertyPath)

    def __getattr__(self, name: str) -> Properties:
        if name.startswith("_"):
            raise AttributeError(name)
        return Properties(self.step_name, self.step_type, self.path.attr(self.step_type, name))

    def __getitem__(self, key: str | int) -> Properties:
        return Properties(self.step_name, self.step_type, self.path.item(self.step_type, key))

    @property
    def expr(self) -> JSON:
        return {"Get": f"Steps.{self.step_name}{self.path.render()}"}


@record
class Join(Expression):
    """``Std:Join``: the values rendered as strings and joined by ``on``."""

    on: str = ""
    values: Sequence[PipelineValue] = ()

    def __post_init__(self) -> None:
        freeze_list(self, "values")
        to_expr(list(self.values))

    @property
    def expr(self) -> JSON:
        return {"Std:Join": {"On": self.on, "Values": [to_expr(v) for v in self.values]}}


@record
class JsonGet(Expression):
    """``Std:JsonGet``: a value read by JSON path from a step's PropertyFile."""

    step_name: str
    property_file: PropertyFile | str
    json_path: str

    def __post_init__(self) -> None:
        parse_json_path(self.json_path)  # a bad path fails here, not when the condition runs

    @property
    def file_name(self) -> str:
        """The PropertyFile's name."""
        pf = self.property_file
        return pf if isinstance(pf, str) else pf.name

    @property
    def expr(self) -> JSON:
        return {
            "Std:JsonGet": {
                "PropertyFile": {"Get": f"Steps.{self.step_name}.PropertyFiles.{self.file_name}"},
                "Path": self.json_path,
            }
        }
