"""The SageMaker pipeline definition JSON: compile authored pipelines, load and validate JSON."""

from sagepipe.definition.compile import CompiledPipeline, Upload, compile_pipeline
from sagepipe.definition.model import Definition, ParameterDef, StepDef, load

__all__ = [
    "CompiledPipeline",
    "Definition",
    "ParameterDef",
    "StepDef",
    "Upload",
    "compile_pipeline",
    "load",
]
