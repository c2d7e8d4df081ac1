"""sagepipe: author SageMaker pipelines, run them locally in seconds, deploy them to SageMaker."""

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
    "PropertyFile",
    "RegisterModel",
    "SageMakerJobStepRetryPolicy",
    "StepRetryPolicy",
    "TrainingInput",
    "TrainingStep",
    "__version__",
    "step",
]
