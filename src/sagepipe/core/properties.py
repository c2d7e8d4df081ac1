"""Describe*-shaped step properties: which paths exist for each step type, and how to walk them.

``Get: Steps.X.<path>`` in a definition reads the DescribeProcessingJob / DescribeTrainingJob /
DescribeModelPackage response of step X. This module holds the shape of those responses (the
parts pipelines read) so that a wrong path is refused when the pipeline is built or loaded.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from sagepipe.core.suggest import did_you_mean
from sagepipe.errors import PipelineError
from sagepipe.records import record


@record
class ListOf:
    """A list shape; items are selected by index or, when ``key`` is set, by that field."""

    key: str | None
    item: Shape


@record
class MapOf:
    """A string-keyed map of leaves (Environment, HyperParameters)."""


class AnyShape:
    """A structure whose inside is not modelled: every path below it is accepted."""


ANY = AnyShape()
LEAF = None
Shape: TypeAlias = dict[str, "Shape"] | ListOf | MapOf | AnyShape | None


def _leaves(*names: str) -> dict[str, Shape]:
    return dict.fromkeys(names, LEAF)


_SCALARS = ListOf(None, LEAF)
_S3_INPUT = _leaves(
    "S3Uri",
    "LocalPath",
    "S3DataType",
    "S3InputMode",
    "S3DataDistributionType",
    "S3CompressionType",
)
PROCESSING: dict[str, Shape] = {
    **_leaves(
        "ProcessingJobName",
        "ProcessingJobArn",
        "ProcessingJobStatus",
        "ExitMessage",
        "FailureReason",
        "ProcessingEndTime",
        "ProcessingStartTime",
        "LastModifiedTime",
        "CreationTime",
        "MonitoringScheduleArn",
        "AutoMLJobArn",
        "TrainingJobArn",
        "RoleArn",
    ),
    "ProcessingInputs": ListOf(
        "InputName",
        {**_leaves("InputName", "AppManaged"), "S3Input": _S3_INPUT, "DatasetDefinition": ANY},
    ),
    "ProcessingOutputConfig": {
        "KmsKeyId": LEAF,
        "Outputs": ListOf(
            "OutputName",
            {
                **_leaves("OutputName", "AppManaged"),
                "S3Output": _leaves("S3Uri", "LocalPath", "S3UploadMode"),
                "FeatureStoreOutput": _leaves("FeatureGroupName"),
            },
        ),
    },
    "ProcessingResources": {
        "ClusterConfig": _leaves(
            "InstanceCount", "InstanceType", "VolumeSizeInGB", "VolumeKmsKeyId"
        )
    },
    "StoppingCondition": _leaves("MaxRuntimeInSeconds"),
    "AppSpecification": {
        "ImageUri": LEAF,
        "ContainerEntrypoint": _SCALARS,
        "ContainerArguments": _SCALARS,
    },
    "Environment": MapOf(),
    "NetworkConfig": ANY,
    "ExperimentConfig": ANY,
}
TRAINING: dict[str, Shape] = {
    **_leaves(
        "TrainingJobName",
        "TrainingJobArn",
        "TuningJobArn",
        "LabelingJobArn",
        "AutoMLJobArn",
        "TrainingJobStatus",
        "SecondaryStatus",
        "FailureReason",
        "RoleArn",
        "CreationTime",
        "TrainingStartTime",
        "TrainingEndTime",
        "LastModifiedTime",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "EnableManagedSpotTraining",
        "TrainingTimeInSeconds",
        "BillableTimeInSeconds",
    ),
    "ModelArtifacts": _leaves("S3ModelArtifacts"),
    "HyperParameters": MapOf(),
    "Environment": MapOf(),
    "AlgorithmSpecification": {
        **_leaves("TrainingImage", "AlgorithmName", "TrainingInputMode"),
        "MetricDefinitions": ListOf("Name", _leaves("Name", "Regex")),
        "ContainerEntrypoint": _SCALARS,
        "ContainerArguments": _SCALARS,
    },
    "InputDataConfig": ListOf(
        "ChannelName",
        {
            **_leaves("ChannelName", "ContentType", "CompressionType", "RecordWrapperType"),
            "InputMode": LEAF,
            "DataSource": {
                "S3DataSource": _leaves("S3DataType", "S3Uri", "S3DataDistributionType")
            },
        },
    ),
    "OutputDataConfig": _leaves("KmsKeyId", "S3OutputPath", "CompressionType"),
    "ResourceConfig": _leaves("InstanceType", "InstanceCount", "VolumeSizeInGB", "VolumeKmsKeyId"),
    "StoppingCondition": _leaves("MaxRuntimeInSeconds", "MaxWaitTimeInSeconds"),
    "FinalMetricDataList": ListOf("MetricName", _leaves("MetricName", "Value", "Timestamp")),
    "SecondaryStatusTransitions": ListOf(None, ANY),
    "CheckpointConfig": _leaves("S3Uri", "LocalPath"),
    "DebugHookConfig": ANY,
    "ProfilerConfig": ANY,
    "ExperimentConfig": ANY,
    "VpcConfig": ANY,
    "RetryStrategy": ANY,
}
MODEL_PACKAGE: dict[str, Shape] = {
    **_leaves(
        "ModelPackageName",
        "ModelPackageGroupName",
        "ModelPackageVersion",
        "ModelPackageArn",
        "ModelPackageDescription",
        "CreationTime",
        "ModelPackageStatus",
        "ModelApprovalStatus",
        "ApprovalDescription",
        "LastModifiedTime",
        "Domain",
        "Task",
        "SamplePayloadUrl",
    ),
    "InferenceSpecification": ANY,
    "ModelMetrics": ANY,
    "CustomerMetadataProperties": MapOf(),
}
MODEL: dict[str, Shape] = {
    **_leaves(
        "ModelName", "ExecutionRoleArn", "ModelArn", "CreationTime", "EnableNetworkIsolation"
    ),
    "PrimaryContainer": ANY,
    "Containers": ListOf(None, ANY),
}
CONDITION: dict[str, Shape] = _leaves("Outcome")

STEP_SHAPES: dict[str, Shape] = {
    "Processing": PROCESSING,
    "Training": TRAINING,
    "RegisterModel": MODEL_PACKAGE,
    "Model": MODEL,
    "CreateModel": MODEL,
    "Condition": CONDITION,
    "Fail": {},
}

_SEGMENT = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


@record
class PropertyPath:
    """The path below ``Steps.<name>``: a tuple of attribute names and item keys."""

    segments: tuple[str | int | tuple[str], ...] = ()

    def attr(self, step_type: str, name: str) -> PropertyPath:
        """This path extended by ``.name``, checked against the step type's shape."""
        new = PropertyPath((*self.segments, name))
        new.check(step_type)
        return new

    def item(self, step_type: str, key: str | int) -> PropertyPath:
        """This path extended by ``[key]`` (a list index or a lookup by name)."""
        new = PropertyPath((*self.segments, key if isinstance(key, int) else (key,)))
        new.check(step_type)
        return new

    def render(self) -> str:
        """The path in definition syntax, e.g. ``.Outputs['train'].S3Output``."""
        out = []
        for seg in self.segments:
            if isinstance(seg, str):
                out.append(f".{seg}")
            elif isinstance(seg, int):
                out.append(f"[{seg}]")
            else:
                out.append(f"['{seg[0]}']")
        return "".join(out)

    @classmethod
    def parse(cls, text: str) -> PropertyPath:
        """Parse ``.A.B['x'][0]`` into a path; raises ValueError on bad syntax."""
        segments: list[str | int | tuple[str]] = []
        pos = 0
        while pos < len(text):
            m = _SEGMENT.match(text, pos)
            if not m:
                raise ValueError(f"cannot parse property path at {text[pos:]!r}")
            attr, index, key1, key2 = m.groups()
            if attr is not None:
                segments.append(attr)
            elif index is not None:
                segments.append(int(index))
            else:
                segments.append((key1 if key1 is not None else key2,))
            pos = m.end()
        return cls(tuple(segments))

    def check(self, step_type: str) -> None:
        """Raise PipelineError naming the first segment that the shape does not have."""
        shape: Shape = STEP_SHAPES.get(step_type, ANY)
        walked = ""
        for seg in self.segments:
            if isinstance(shape, AnyShape):
                return
            if isinstance(seg, str):
                if not isinstance(shape, dict) or seg not in shape:
                    options = sorted(shape) if isinstance(shape, dict) else []
                    hint = _hint(seg, options)
                    full = f"{walked}.{seg}".lstrip(".")
                    raise PipelineError(f"{step_type} step has no property '{full}'{hint}")
                shape = shape[seg]
                walked += f".{seg}"
            else:
                if isinstance(shape, MapOf):
                    shape = LEAF
                elif isinstance(shape, ListOf):
                    if isinstance(seg, tuple) and shape.key is None:
                        raise PipelineError(
                            f"property '{walked.lstrip('.')}' is a list: select items by index"
                        )
                    shape = shape.item
                else:
                    raise PipelineError(
                        f"property '{walked.lstrip('.')}' is not a list or map; cannot index it"
                    )
                walked += PropertyPath((seg,)).render()


def _hint(name: str, options: list[str]) -> str:
    close = did_you_mean(name, options)
    if close:
        return close
    if options:
        return f"; properties here are: {', '.join(options[:12])}"
    return ""


def list_key(step_type: str, segments: tuple[str | int | tuple[str], ...]) -> str | None:
    """The field a bracket lookup at the end of ``segments`` matches on (OutputName, ...)."""
    shape: Shape = STEP_SHAPES.get(step_type, ANY)
    for seg in segments:
        if isinstance(shape, dict) and isinstance(seg, str):
            shape = shape.get(seg, ANY)
        elif isinstance(shape, ListOf) and not isinstance(seg, str):
            shape = shape.item
        else:
            return None
    return shape.key if isinstance(shape, ListOf) else None
