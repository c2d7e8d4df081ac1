"""SageMaker Pipelines service limits that a definition must respect, and sagepipe's own bounds."""

from __future__ import annotations

VERSION = "2020-12-01"
# CreatePipeline: PipelineDefinition is at most 1 MB; above 100 kB it must go through S3.
MAX_DEFINITION_BYTES = 1_000_000
MAX_INLINE_DEFINITION_BYTES = 100_000
# CreateTrainingJob: StoppingCondition.MaxRuntimeInSeconds is at most 28 days (the service model
# gives only the minimum; processing jobs' 777,600 s maximum is in the model).
MAX_TRAINING_SECONDS = 2_419_200
# sagepipe's bounds for what SageMaker documents no limit on: deeper nesting than any SDK writes
# (its definitions nest about 12 levels), and integers wider than 64 bits.
MAX_NESTING_DEPTH = 100
MAX_INTEGER_DIGITS = 19
SUPPORTED_LOCALLY: tuple[str, ...] = (
    "Processing",
    "Training",
    "Condition",
    "Fail",
    "RegisterModel",
    "Model",
    "CreateModel",
)
