"""Warm starts behave like cold starts whatever the script and the image's runtime."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from sagepipe import Pipeline, ProcessingStep, Processor
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline
from sagepipe.engine.factory import build_engine, start_definition, upload_code
from sagepipe.engine.sandbox import bwrap_works
from tests.integration.helpers import SCRIPTS, sandbox

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BWRAP = shutil.which("bwrap")
KINDS = [
    "process",
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(
            BWRAP is None or not bwrap_works(BWRAP), reason="bubblewrap cannot run here"
        ),
    ),
]


def chain(image: str) -> Pipeline:
    """A slow upstream step, and a downstream script that imports nothing."""
    upstream = ProcessingStep(
        "upstream",
        processor=Processor(
            image_uri=IMAGE, command=("python3", "-c", "import time; time.sleep(1.0)")
        ),
    )
    hello = ProcessingStep(
        "hello", processor=Processor(image_uri=image), code="hello.py", depends_on=[upstream]
    )
    return Pipeline("warm", steps=[upstream, hello])


def execute(settings: Settings, kind: str, pipeline: Pipeline) -> tuple[str, set[str], str]:
    lines: list[tuple[str, str]] = []
    engine = build_engine(settings, sandbox(kind), on_line=lambda s, line: lines.append((s, line)))
    compiled = compile_pipeline(pipeline, bucket=settings.bucket, base_dir=SCRIPTS)
    upload_code(compiled, engine.store)
    execution = start_definition(engine, compiled.definition, pipeline.name, {})
    status = execution.wait(120)
    reason = execution.describe().get("FailureReason", "")
    assert ("hello", "hello") in lines, (status, reason, lines)
    return status, execution.run.warmed, reason


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_without_top_level_imports_starts_warm(settings: Settings, kind: str) -> None:
    status, warmed, reason = execute(settings, kind, chain(IMAGE))
    assert status == "Succeeded", reason
    assert warmed == {"hello"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_mapped_command_under_tmp_is_seen_and_not_warm_started(
    project: Path, tmp_path: Path, kind: str
) -> None:
    """A runtime that is a command, not Python, installed under /tmp."""
    runtime = tmp_path / "runtime" / "bin" / "run"
    runtime.parent.mkdir(parents=True)
    runtime.write_text(
        "#!/bin/sh\n"
        'case "$1" in *.py) exec "$REAL_PYTHON" "$@";; esac\n'
        'echo "not a script: $1" >&2; exit 2\n'
    )
    runtime.chmod(0o755)
    (project / "pyproject.toml").write_text(
        '[tool.sagepipe]\nbucket = "test-bucket"\n'
        f'[tool.sagepipe.images]\n"my-image" = "{runtime}"\n'
    )
    settings = Settings.from_env(cwd=project, environ={})
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-image:1"
    pipeline = chain(image)
    hello = pipeline.steps[1]
    assert isinstance(hello, ProcessingStep)
    processor = Processor(image_uri=image, env={"REAL_PYTHON": sys.executable})
    steps = [
        pipeline.steps[0],
        ProcessingStep(
            "hello", processor=processor, code="hello.py", depends_on=[pipeline.steps[0]]
        ),
    ]
    status, warmed, reason = execute(settings, kind, Pipeline("warm", steps=steps))
    assert status == "Succeeded", reason
    assert warmed == set()
