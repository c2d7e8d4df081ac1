"""sagepipe: author SageMaker pipelines, run them locally in seconds, deploy them to SageMaker.

The names below load on first use (PEP 562): commands that do not author a pipeline, such
as ``sagepipe --help``, do not pay for importing the authoring API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagepipe.api import Pipeline
    from sagepipe.core.conditions import (
        ConditionEquals,
        ConditionGreaterThan,
        ConditionGreaterThanOrEqualTo,
        ConditionIn,
        ConditionLessThan,
        ConditionLessThanOrEqualTo,
        ConditionNot,
        ConditionOr,
    )
    from sagepipe.core.expressions import (
        ExecutionVariables,
        Join,
        JsonGet,
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
        Properties,
    )
    from sagepipe.core.functions import DelayedReturn, step
    from sagepipe.core.steps import (
        CacheConfig,
        ConditionStep,
        Estimator,
        FailStep,
        MetricDefinition,
        ProcessingInput,
        ProcessingOutput,
        ProcessingStep,
        Processor,
        PropertyFile,
        RegisterModel,
        SageMakerJobStepRetryPolicy,
        StepRetryPolicy,
        TrainingInput,
        TrainingStep,
    )

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "ConditionEquals",
    "ConditionGreaterThan",
    "ConditionGreaterThanOrEqualTo",
    "ConditionIn",
    "ConditionLessThan",
    "ConditionLessThanOrEqualTo",
    "ConditionNot",
    "ConditionOr",
    "ConditionStep",
    "DelayedReturn",
    "Estimator",
    "ExecutionVariables",
    "FailStep",
    "Join",
    "JsonGet",
    "MetricDefinition",
    "ParameterBoolean",
    "ParameterFloat",
    "ParameterInteger",
    "ParameterString",
    "Pipeline",
    "ProcessingInput",
    "ProcessingOutput",
    "ProcessingStep",
    "Processor",
    "Properties",
    "PropertyFile",
    "RegisterModel",
    "SageMakerJobStepRetryPolicy",
    "StepRetryPolicy",
    "TrainingInput",
    "TrainingStep",
    "__version__",
    "step",
]

_SOURCES = {
    "CacheConfig": "sagepipe.core.steps",
    "ConditionEquals": "sagepipe.core.conditions",
    "ConditionGreaterThan": "sagepipe.core.conditions",
    "ConditionGreaterThanOrEqualTo": "sagepipe.core.conditions",
    "ConditionIn": "sagepipe.core.conditions",
    "ConditionLessThan": "sagepipe.core.conditions",
    "ConditionLessThanOrEqualTo": "sagepipe.core.conditions",
    "ConditionNot": "sagepipe.core.conditions",
    "ConditionOr": "sagepipe.core.conditions",
    "ConditionStep": "sagepipe.core.steps",
    "DelayedReturn": "sagepipe.core.functions",
    "Estimator": "sagepipe.core.steps",
    "ExecutionVariables": "sagepipe.core.expressions",
    "FailStep": "sagepipe.core.steps",
    "Join": "sagepipe.core.expressions",
    "JsonGet": "sagepipe.core.expressions",
    "MetricDefinition": "sagepipe.core.steps",
    "ParameterBoolean": "sagepipe.core.expressions",
    "ParameterFloat": "sagepipe.core.expressions",
    "ParameterInteger": "sagepipe.core.expressions",
    "ParameterString": "sagepipe.core.expressions",
    "Pipeline": "sagepipe.api",
    "ProcessingInput": "sagepipe.core.steps",
    "ProcessingOutput": "sagepipe.core.steps",
    "ProcessingStep": "sagepipe.core.steps",
    "Processor": "sagepipe.core.steps",
    "Properties": "sagepipe.core.expressions",
    "PropertyFile": "sagepipe.core.steps",
    "RegisterModel": "sagepipe.core.steps",
    "SageMakerJobStepRetryPolicy": "sagepipe.core.steps",
    "StepRetryPolicy": "sagepipe.core.steps",
    "TrainingInput": "sagepipe.core.steps",
    "TrainingStep": "sagepipe.core.steps",
    "step": "sagepipe.core.functions",
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'sagepipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
