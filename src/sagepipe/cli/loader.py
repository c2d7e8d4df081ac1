"""Load PIPELINE arguments: a ``.py`` file exposing ``pipeline`` or ``get_pipeline``, or a JSON file."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagepipe.config import Settings
from sagepipe.core.pipeline import Pipeline as PipelineModel
from sagepipe.definition import CompiledPipeline, Definition, compile_pipeline, load
from sagepipe.errors import PipelineError, SagepipeError

DEFAULT_PIPELINE = "app/sagemaker_pipeline.py"


@dataclass(frozen=True)
class Loaded:
    """A pipeline ready to validate, run or deploy."""

    name: str
    definition: Definition
    compiled: CompiledPipeline | None
    source: Path


def load_pipeline(arg: str | None, settings: Settings, name: str | None = None) -> Loaded:
    """Load PIPELINE (default ``app/sagemaker_pipeline.py`` in the project root)."""
    path = Path(arg) if arg else settings.project_root / DEFAULT_PIPELINE
    if not path.exists():
        raise SagepipeError(f"pipeline file {str(path)!r} not found; pass a .py or .json file")
    if path.suffix == ".json":
        return Loaded(name or path.stem, load(path), None, path)
    if path.suffix != ".py":
        raise SagepipeError(f"{str(path)!r}: expected a .py pipeline module or a .json definition")
    pipeline = _from_module(path, settings)
    compiled = compile_pipeline(
        pipeline, bucket=settings.bucket, role=settings.role_arn, base_dir=settings.project_root
    )
    return Loaded(name or pipeline.name, compiled.definition, compiled, path)


def _from_module(path: Path, settings: Settings) -> PipelineModel:
    module_name = f"_sagepipe_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SagepipeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SagepipeError:
        raise
    except Exception as exc:
        raise SagepipeError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    candidate: Any = getattr(module, "pipeline", None)
    if candidate is None and callable(getattr(module, "get_pipeline", None)):
        factory = module.get_pipeline
        offered = {"bucket": settings.bucket, "region": settings.region, "role": settings.role_arn}
        params = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in offered.items() if k in params and v is not None}
        candidate = factory(**kwargs)
    if not isinstance(candidate, PipelineModel):
        raise PipelineError(
            f"{path} must define `pipeline` (a sagepipe Pipeline) or `get_pipeline(**kwargs)`"
        )
    return candidate
