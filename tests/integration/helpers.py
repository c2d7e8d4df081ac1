"""Helpers for integration tests: seed a local store, run a pipeline or definition to the end."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sagepipe.config import Settings
from sagepipe.core.pipeline import PipelineModel
from sagepipe.definition import Definition, compile_pipeline
from sagepipe.engine.execution import LocalExecution
from sagepipe.engine.factory import build_engine, start_definition, upload_code
from sagepipe.engine.sandbox import BwrapSandbox, ProcessSandbox, Sandbox
from tests.conftest import FIXTURES

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def seed_sdk_objects(settings: Settings) -> None:
    """The objects the SDK uploaded when it built the fixtures, plus some input data."""
    shutil.copytree(FIXTURES / "sdk" / "objects", settings.local_store_root, dirs_exist_ok=True)
    raw = settings.local_store_root / "sdk-fixtures" / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "part-0.csv").write_text(
        "a,b,y\n" + "".join(f"{i},{i * 2},{i % 7}\n" for i in range(40))
    )
    (raw / "part-1.csv").write_text(
        "a,b,y\n" + "".join(f"{i},{i * 3},{i % 5}\n" for i in range(40, 60))
    )


def sandbox(kind: str) -> Sandbox:
    if kind == "bwrap":
        bwrap = shutil.which("bwrap")
        assert bwrap is not None
        return BwrapSandbox(bwrap)
    return ProcessSandbox()


def run(
    settings: Settings,
    target: PipelineModel | Definition,
    kind: str = "bwrap",
    parameters: dict[str, Any] | None = None,
    name: str | None = None,
    lines: list[tuple[str, str]] | None = None,
) -> LocalExecution:
    """Start ``target`` and wait for it to end."""
    on_line = (lambda step, line: lines.append((step, line))) if lines is not None else None
    engine = build_engine(settings, sandbox(kind), on_line=on_line)
    if isinstance(target, PipelineModel):
        compiled = compile_pipeline(target, bucket=settings.bucket, base_dir=SCRIPTS)
        upload_code(compiled, engine.store)
        definition, name = compiled.definition, target.name
    else:
        definition = target
    execution = start_definition(engine, definition, name or "pipeline", parameters or {})
    execution.wait(300)
    return execution


def statuses(execution: LocalExecution) -> dict[str, str]:
    return {s["StepName"]: s["StepStatus"] for s in execution.list_steps()}
