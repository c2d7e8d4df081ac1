"""The authoring API is exactly what __all__ says."""

import sagepipe

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(sagepipe.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in sagepipe.__all__:
        assert hasattr(sagepipe, name), name
