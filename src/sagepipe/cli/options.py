"""Options and arguments several commands share, and their parsing (mistakes are UsageErrors)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sagepipe.errors import UsageError


class Backend(StrEnum):
    """Where executions run."""

    local = "local"
    sagemaker = "sagemaker"


class StoreKind(StrEnum):
    """Which object store."""

    local = "local"
    s3 = "s3"


class SandboxKind(StrEnum):
    """How local steps are isolated."""

    auto = "auto"
    bwrap = "bwrap"
    process = "process"


PipelineArg = Annotated[
    str | None,
    typer.Argument(
        help="A .py file exposing `pipeline` or `get_pipeline`, or a definition .json "
        "(default: app/sagemaker_pipeline.py)."
    ),
]
BackendOpt = Annotated[Backend, typer.Option(help="Local executions or SageMaker's.")]
StoreOpt = Annotated[StoreKind | None, typer.Option(help="local (default) or s3.")]
ParameterOpt = Annotated[
    list[str], typer.Option("-p", "--parameter", help="Name=Value; repeatable.")
]
BucketOpt = Annotated[
    str | None, typer.Option(help="Bucket for code and data (default: the configured one).")
]
RoleOpt = Annotated[
    str | None,
    typer.Option(help="IAM role ARN SageMaker runs the jobs as (or SAGEPIPE_ROLE_ARN)."),
]


def parse_pairs(
    pairs: list[str], what: str = "parameter", form: str = "Name=Value"
) -> dict[str, str]:
    """``Name=Value`` pairs (parameters, tags) to a dict."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} {pair!r} must look like {form}")
        out[name] = value
    return out


def output_file(path: Path) -> Path:
    """``path`` when a file can be written there; a UsageError naming the problem otherwise."""
    if path.is_dir():
        raise UsageError(f"-o {path}: is a folder; name a file")
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: folder {str(path.parent)!r} does not exist")
    return path


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (checked with :func:`output_file`)."""
    try:
        output_file(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write: {exc.strerror}") from None
