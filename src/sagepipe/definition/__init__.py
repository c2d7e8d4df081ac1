"""The SageMaker pipeline definition JSON: compile authored pipelines, load and validate JSON."""

from sagepipe.definition.compile import CompiledPipeline, Upload, compile_pipeline
from sagepipe.definition.model import (
    Definition,
    ParameterDef,
    StepDef,
    load,
    resolve_parameters,
)
from sagepipe.definition.requests import check_request

__all__ = [
    "CompiledPipeline",
    "Definition",
    "ParameterDef",
    "StepDef",
    "Upload",
    "check_request",
    "compile_pipeline",
    "load",
    "resolve_parameters",
]
