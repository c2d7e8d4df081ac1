"""Load PIPELINE arguments: a ``.py`` file exposing ``pipeline`` or ``get_pipeline``, or a JSON file."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from sagepipe.config import Settings
from sagepipe.errors import DefinitionError, PipelineError, SagepipeError, UsageError
from sagepipe.records import record

if TYPE_CHECKING:  # imported when a pipeline is loaded: `--help` does without them
    from sagepipe.core.pipeline import PipelineModel
    from sagepipe.definition import CompiledPipeline, Definition

DEFAULT_PIPELINE = "app/sagemaker_pipeline.py"


@record
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
        raise UsageError(f"pipeline file {str(path)!r} not found; pass a .py or .json file")
    if not path.is_file() or path.suffix not in (".py", ".json"):
        raise UsageError(f"{str(path)!r}: expected a .py pipeline module or a .json definition")
    if path.suffix == ".json":
        return Loaded(name or path.stem, _load_json(path), None, path)
    from sagepipe.definition import compile_pipeline

    pipeline = _from_module(path, settings)
    compiled = compile_pipeline(
        pipeline,
        bucket=settings.bucket,
        role=settings.role_arn,
        base_dir=settings.project_root,
        region=settings.region,
    )
    return Loaded(name or pipeline.name, compiled.definition, compiled, path)


def _load_json(path: Path) -> Definition:
    from sagepipe.definition import load

    try:
        return load(path)
    except SagepipeError:
        raise
    except RecursionError:
        raise DefinitionError(f"{path}: the definition is nested too deeply to read") from None
    except (ValueError, TypeError) as exc:  # e.g. an integer beyond Python's digit limit
        raise DefinitionError(f"{path}: cannot read the definition: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _from_module(path: Path, settings: Settings) -> PipelineModel:
    # A stable name (never put in sys.modules): function steps' payloads and display names
    # carry it, and must not change between two compiles of the same file.
    module_name = path.stem if path.stem.isidentifier() else "_sagepipe_pipeline"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        # From the source, never a cached .pyc: an edit made within the second of the last
        # import, keeping the file's size, would otherwise run (and pickle) the old code.
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # the user's pipeline module, run as an import would
        return _pipeline_of(module, path, settings)
    except SagepipeError:
        raise
    except SystemExit as exc:
        raise PipelineError(
            f"{path}: importing it called sys.exit({exc.code!r}); a pipeline module must define "
            "`pipeline` or `get_pipeline` without exiting (guard scripts with "
            "`if __name__ == '__main__':`)"
        ) from None
    except RecursionError:
        raise PipelineError(f"{path}: importing it recursed too deeply") from None
    except Exception as exc:  # the user's code: any error is theirs to fix, in one line
        raise PipelineError(f"{path}: {type(exc).__name__}: {_line(exc)}") from exc
    finally:
        sys.path.pop(0)


def _pipeline_of(module: ModuleType, path: Path, settings: Settings) -> PipelineModel:
    from sagepipe.core.pipeline import PipelineModel

    candidate: object = getattr(module, "pipeline", None)
    factory = getattr(module, "get_pipeline", None)
    if candidate is None and callable(factory):
        offered = {"bucket": settings.bucket, "region": settings.region, "role": settings.role_arn}
        params = inspect.signature(factory).parameters
        missing = [
            n
            for n, p in params.items()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and (n not in offered or offered[n] is None)
        ]
        if missing:
            raise PipelineError(
                f"{path}: get_pipeline needs {', '.join(missing)}; sagepipe passes only bucket, "
                "region and role (give the others defaults)"
            )
        kwargs = {k: v for k, v in offered.items() if k in params and v is not None}
        candidate = factory(**kwargs)
    if not isinstance(candidate, PipelineModel):
        raise PipelineError(
            f"{path} must define `pipeline` (a sagepipe Pipeline) or `get_pipeline(**kwargs)`"
        )
    return candidate
