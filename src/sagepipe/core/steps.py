"""Steps as the author describes them, in the SageMaker SDK's vocabulary.

Steps are frozen dataclasses holding what the author wrote. Turning them into definition JSON
(hashing script files, default URIs) is the compiler's job in ``sagepipe.definition``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import ClassVar

from sagepipe.core.conditions import Condition
from sagepipe.core.expressions import Expression, PipelineValue, Properties, freeze_list, to_expr
from sagepipe.core.graph import Node, Refs, scan
from sagepipe.core.json_types import JSON
from sagepipe.errors import PipelineError
from sagepipe.records import record

PROCESSING_ROOT = "/opt/ml/processing/"
STEP_EXCEPTIONS = frozenset({"Step.SERVICE_FAULT", "Step.THROTTLING"})
JOB_EXCEPTIONS = frozenset(
    {"SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"}
)


def _freeze_map(obj: object, name: str) -> None:
    """Keep mapping field ``name`` of a frozen record as a dict of its own."""
    value = getattr(obj, name)
    if value is not None:
        object.__setattr__(obj, name, dict(value))


@record
class CacheConfig:
    """Step caching: reuse a previous successful run with the same inputs."""

    enable_caching: bool = False
    expire_after: str | None = None

    def to_request(self) -> dict[str, JSON]:
        """The step's ``CacheConfig`` entry."""
        out: dict[str, JSON] = {"Enabled": self.enable_caching}
        if self.expire_after is not None:
            out["ExpireAfter"] = self.expire_after
        return out


@record
class _RetryPolicy:
    exception_types: Sequence[str]
    interval_seconds: int = 1
    backoff_rate: float = 2.0
    max_attempts: int | None = None
    expire_after_mins: int | None = None
    PREFIX: ClassVar[str] = ""
    ALLOWED: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        freeze_list(self, "exception_types")
        full = tuple(
            t if t.startswith(self.PREFIX) else f"{self.PREFIX}{t}" for t in self.exception_types
        )
        object.__setattr__(self, "exception_types", full)
        bad = [t for t in full if t not in self.ALLOWED]
        if bad or not full:
            raise PipelineError(
                f"{type(self).__name__}: exception types {bad or '[]'} are invalid; "
                f"use {sorted(self.ALLOWED)}"
            )
        if (self.max_attempts is None) == (self.expire_after_mins is None):
            raise PipelineError(
                f"{type(self).__name__}: set exactly one of max_attempts and expire_after_mins"
            )

    def to_request(self) -> dict[str, JSON]:
        """The ``RetryPolicies`` entry."""
        out: dict[str, JSON] = {
            "BackoffRate": self.backoff_rate,
            "IntervalSeconds": self.interval_seconds,
        }
        if self.max_attempts is not None:
            out["MaxAttempts"] = self.max_attempts
        else:
            out["ExpireAfterMin"] = self.expire_after_mins
        out["ExceptionType"] = list(self.exception_types)
        return out


@record
class StepRetryPolicy(_RetryPolicy):
    """Retry a step on pipeline service faults or throttling."""

    PREFIX: ClassVar[str] = "Step."
    ALLOWED: ClassVar[frozenset[str]] = STEP_EXCEPTIONS


@record
class SageMakerJobStepRetryPolicy(_RetryPolicy):
    """Retry a job step on SageMaker job errors (internal error, capacity, resource limit)."""

    PREFIX: ClassVar[str] = "SageMaker."
    ALLOWED: ClassVar[frozenset[str]] = JOB_EXCEPTIONS


RetryPolicy = StepRetryPolicy | SageMakerJobStepRetryPolicy


@record
class PropertyFile:
    """A JSON file a processing step writes into one of its outputs, readable with JsonGet."""

    name: str
    output_name: str
    path: str

    def to_request(self) -> dict[str, JSON]:
        """The ``PropertyFiles`` entry."""
        return {
            "PropertyFileName": self.name,
            "OutputName": self.output_name,
            "FilePath": self.path,
        }


@record
class MetricDefinition:
    """A training metric: its name and the regex that finds its value in the log."""

    name: str
    regex: str


class StepOutput(Expression):
    """A value a step returns (a function step's ``DelayedReturn``).

    Wherever a step is expected (a pipeline's steps, condition branches, ``depends_on``), its
    output stands for the step that produces it, as in the SageMaker SDK.
    """

    @property
    def step(self) -> Step:
        """The step that produces this value."""
        raise NotImplementedError


def as_step(item: Step | StepOutput) -> Step:
    """The step itself, or the step that produces a step output."""
    return item.step if isinstance(item, StepOutput) else item


@record
class Step:
    """Fields every step has."""

    name: str
    display_name: str | None = field(default=None, kw_only=True)
    description: str | None = field(default=None, kw_only=True)
    depends_on: Sequence[str | Step | StepOutput] = field(default=(), kw_only=True)
    cache_config: CacheConfig | None = field(default=None, kw_only=True)
    retry_policies: Sequence[RetryPolicy] = field(default=(), kw_only=True)
    STEP_TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        freeze_list(self, "depends_on")
        freeze_list(self, "retry_policies")

    @property
    def properties(self) -> Properties:
        """References to this step's Describe*-shaped properties."""
        return Properties(self.name, self.STEP_TYPE)

    @property
    def depends_on_names(self) -> tuple[str, ...]:
        """Names of the explicit upstream steps."""
        return tuple(d if isinstance(d, str) else as_step(d).name for d in self.depends_on)

    def expressions(self) -> JSON:
        """Every authored value that may hold an expression, as JSON (for reference scanning)."""
        skip = {"name", "display_name", "description", "depends_on", "cache_config"}
        return {
            f.name: _json_of(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in skip and f.name not in ("if_steps", "else_steps")
        }

    def node(self) -> Node:
        """This step reduced to a graph node."""
        refs = scan(self.expressions(), "")
        return Node(
            self.name,
            self.STEP_TYPE,
            Refs(refs.steps, refs.parameters, refs.execution),
            depends_on=self.depends_on_names,
            item_names=self.item_names(),
            property_files=frozenset(self.property_file_names()),
        )

    def item_names(self) -> Mapping[str, frozenset[str]]:
        """Names usable in bracket lookups on this step's list properties."""
        return {}

    def property_file_names(self) -> Sequence[str]:
        """Names of the step's PropertyFiles."""
        return ()


def _json_of(value: object) -> JSON:
    if isinstance(value, Expression):
        return value.expr
    if isinstance(value, Condition):
        return value.to_request()
    if isinstance(value, Step):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_of(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_json_of(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_of(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


@record
class Processor:
    """The container a processing step runs: image, command, resources and environment.

    Give either ``image_uri`` or ``framework`` ("sklearn", "xgboost", "pytorch") with
    ``framework_version``; the image URI is then the SageMaker framework image for ``region``.
    """

    image_uri: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    command: Sequence[str] = ("python3",)
    role: str | None = None
    instance_type: PipelineValue = "ml.m5.xlarge"
    instance_count: PipelineValue = 1
    volume_size_in_gb: int = 30
    env: Mapping[str, PipelineValue] = field(default_factory=dict)
    network_isolation: bool = False
    max_runtime_in_seconds: int | None = None
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        freeze_list(self, "command")
        _freeze_map(self, "env")
        if (self.image_uri is None) == (self.framework is None):
            raise PipelineError("Processor: give either image_uri or framework, not both")
        if self.framework is not None and self.framework_version is None:
            raise PipelineError(f"Processor: framework '{self.framework}' needs framework_version")


@record
class ProcessingInput:
    """Data a processing step reads, staged at ``destination`` inside the container."""

    source: PipelineValue
    destination: str
    input_name: str | None = None
    s3_data_type: str = "S3Prefix"
    s3_input_mode: str = "File"
    s3_data_distribution_type: str = "FullyReplicated"
    s3_compression_type: str = "None"

    def __post_init__(self) -> None:
        if not self.destination.startswith(PROCESSING_ROOT):
            raise PipelineError(
                f"ProcessingInput destination {self.destination!r} must start with "
                f"{PROCESSING_ROOT}"
            )
        if self.s3_data_type not in ("S3Prefix", "ManifestFile"):
            raise PipelineError(f"ProcessingInput s3_data_type {self.s3_data_type!r} is invalid")


@record
class ProcessingOutput:
    """Data a processing step writes at ``source``, published to ``destination`` on success."""

    source: str
    destination: PipelineValue = None
    output_name: str | None = None
    s3_upload_mode: str = "EndOfJob"

    def __post_init__(self) -> None:
        if not self.source.startswith(PROCESSING_ROOT):
            raise PipelineError(
                f"ProcessingOutput source {self.source!r} must start with {PROCESSING_ROOT}"
            )


def _default_names(items: Sequence[object], attr: str, prefix: str) -> tuple[str, ...]:
    return tuple(getattr(it, attr) or f"{prefix}-{i}" for i, it in enumerate(items, start=1))


@record
class ProcessingStep(Step):
    """A processing job: ``code`` run by the processor with inputs and outputs."""

    processor: Processor = field(kw_only=True)
    inputs: Sequence[ProcessingInput] = field(default=(), kw_only=True)
    outputs: Sequence[ProcessingOutput] = field(default=(), kw_only=True)
    code: str | None = field(default=None, kw_only=True)
    job_arguments: Sequence[PipelineValue] = field(default=(), kw_only=True)
    property_files: Sequence[PropertyFile] = field(default=(), kw_only=True)
    STEP_TYPE: ClassVar[str] = "Processing"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("inputs", "outputs", "job_arguments", "property_files"):
            freeze_list(self, name)
        for label, names in (("input", self.input_names), ("output", self.output_names)):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise PipelineError(f"step '{self.name}': duplicate {label} names {sorted(dup)}")
        for pf in self.property_files:
            if pf.output_name not in self.output_names:
                raise PipelineError(
                    f"step '{self.name}': PropertyFile '{pf.name}' names output "
                    f"'{pf.output_name}'; outputs are: {', '.join(self.output_names) or 'none'}"
                )

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names, defaults (input-1, ...) filled in as the SDK does."""
        names = _default_names(self.inputs, "input_name", "input")
        return (*names, "code") if self.code else names

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names, defaults (output-1, ...) filled in as the SDK does."""
        return _default_names(self.outputs, "output_name", "output")

    def item_names(self) -> Mapping[str, frozenset[str]]:
        return {
            "ProcessingInputs": frozenset(self.input_names),
            "ProcessingOutputConfig.Outputs": frozenset(self.output_names),
        }

    def property_file_names(self) -> Sequence[str]:
        return [pf.name for pf in self.property_files]


@record
class TrainingInput:
    """A training channel's data source."""

    s3_data: PipelineValue
    content_type: str | None = None
    s3_data_type: str = "S3Prefix"
    distribution: str = "FullyReplicated"
    input_mode: str | None = None


@record
class Estimator:
    """The training container: script mode (``entry_point``) or a generic image.

    Script mode runs ``entry_point`` from ``source_dir`` in the framework image, passing
    hyperparameters as the SageMaker training toolkit does. The generic form runs ``image_uri``
    with the hyperparameters in ``/opt/ml/input/config/hyperparameters.json``.
    """

    entry_point: str | None = None
    source_dir: str | None = None
    image_uri: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    py_version: str = "py3"
    hyperparameters: Mapping[str, PipelineValue] = field(default_factory=dict)
    output_path: PipelineValue = None
    metric_definitions: Sequence[MetricDefinition] = ()
    role: str | None = None
    instance_type: PipelineValue = "ml.m5.xlarge"
    instance_count: PipelineValue = 1
    volume_size_in_gb: int = 30
    max_runtime_in_seconds: int = 86400
    environment: Mapping[str, PipelineValue] = field(default_factory=dict)
    network_isolation: bool = False
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        _freeze_map(self, "hyperparameters")
        _freeze_map(self, "environment")
        freeze_list(self, "metric_definitions")
        metrics = tuple(
            m if isinstance(m, MetricDefinition) else MetricDefinition(m["Name"], m["Regex"])
            for m in self.metric_definitions
        )
        object.__setattr__(self, "metric_definitions", metrics)
        if self.image_uri is None and self.framework is None:
            raise PipelineError("Estimator: give image_uri, or framework and framework_version")
        if self.framework is not None and self.framework_version is None:
            raise PipelineError(f"Estimator: framework '{self.framework}' needs framework_version")
        if self.entry_point is None and self.source_dir is not None:
            raise PipelineError("Estimator: source_dir needs an entry_point")

    @property
    def script_mode(self) -> bool:
        """Whether the estimator runs a user script through the training toolkit."""
        return self.entry_point is not None


@record
class TrainingStep(Step):
    """A training job: the estimator run on named input channels."""

    estimator: Estimator = field(kw_only=True)
    inputs: Mapping[str, TrainingInput | PipelineValue] = field(default_factory=dict, kw_only=True)
    STEP_TYPE: ClassVar[str] = "Training"

    def __post_init__(self) -> None:
        super().__post_init__()
        _freeze_map(self, "inputs")

    def item_names(self) -> Mapping[str, frozenset[str]]:
        names: dict[str, frozenset[str]] = {"InputDataConfig": frozenset(self.inputs)}
        metrics = frozenset(m.name for m in self.estimator.metric_definitions)
        if metrics:  # built-in algorithms emit metrics nobody declared
            names["FinalMetricDataList"] = metrics
            names["AlgorithmSpecification.MetricDefinitions"] = metrics
        return names


@record
class ConditionStep(Step):
    """Evaluate ``conditions`` (all must hold) and run ``if_steps`` or ``else_steps``."""

    conditions: Sequence[Condition] = field(default=(), kw_only=True)
    if_steps: Sequence[Step] = field(default=(), kw_only=True)
    else_steps: Sequence[Step] = field(default=(), kw_only=True)
    STEP_TYPE: ClassVar[str] = "Condition"

    def __post_init__(self) -> None:
        super().__post_init__()
        freeze_list(self, "conditions")
        for name in ("if_steps", "else_steps"):  # a function step's return stands for it
            freeze_list(self, name)
            object.__setattr__(self, name, tuple(as_step(s) for s in getattr(self, name)))
        if not self.conditions:
            raise PipelineError(f"condition step '{self.name}' has no conditions")

    def node(self) -> Node:
        base = super().node()
        return dataclasses.replace(
            base,
            if_steps=tuple(s.name for s in self.if_steps),
            else_steps=tuple(s.name for s in self.else_steps),
        )


@record
class FailStep(Step):
    """Stop the execution as Failed with ``error_message``."""

    error_message: PipelineValue = field(default="", kw_only=True)
    STEP_TYPE: ClassVar[str] = "Fail"

    def __post_init__(self) -> None:
        super().__post_init__()
        to_expr(self.error_message)


@record
class RegisterModel(Step):
    """Register a model version in a model package group (the local registry, or SageMaker's)."""

    model_package_group_name: str = field(kw_only=True)
    model_data: PipelineValue = field(kw_only=True)
    image_uri: str = field(kw_only=True)
    approval_status: str = field(default="PendingManualApproval", kw_only=True)
    content_types: Sequence[str] = field(default=("text/csv",), kw_only=True)
    response_types: Sequence[str] = field(default=("text/csv",), kw_only=True)
    inference_instances: Sequence[str] = field(default=("ml.m5.xlarge",), kw_only=True)
    transform_instances: Sequence[str] = field(default=("ml.m5.xlarge",), kw_only=True)
    model_metrics_uri: PipelineValue = field(default=None, kw_only=True)
    STEP_TYPE: ClassVar[str] = "RegisterModel"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "content_types",
            "response_types",
            "inference_instances",
            "transform_instances",
        ):
            freeze_list(self, name)
        allowed = ("Approved", "Rejected", "PendingManualApproval")
        if self.approval_status not in allowed:
            raise PipelineError(f"step '{self.name}': approval_status must be one of {allowed}")
