"""SageMaker Pipelines service limits that a definition must respect."""

from __future__ import annotations

VERSION = "2020-12-01"
MAX_DEFINITION_BYTES = 1_000_000
MAX_INLINE_DEFINITION_BYTES = 100_000
SUPPORTED_LOCALLY: tuple[str, ...] = (
    "Processing",
    "Training",
    "Condition",
    "Fail",
    "RegisterModel",
    "Model",
    "CreateModel",
)
PARAMETER_TYPES: tuple[str, ...] = ("String", "Integer", "Float", "Boolean")
