"""``definition``, ``validate`` and ``graph``: what a pipeline is, before anything runs."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sagepipe.cli import render
from sagepipe.cli.consoles import console, err
from sagepipe.cli.loader import load_pipeline
from sagepipe.cli.options import BucketOpt, PipelineArg, RoleOpt, write_output
from sagepipe.cli.state import settings
from sagepipe.config import Settings
from sagepipe.definition import Definition, StepDef
from sagepipe.definition.service_limits import SUPPORTED_LOCALLY
from sagepipe.errors import ConfigError, DefinitionError


class GraphFormat(StrEnum):
    """How ``graph`` draws."""

    text = "text"
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"


def definition(
    ctx: typer.Context,
    pipeline: PipelineArg = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file.")
    ] = None,
    bucket: BucketOpt = None,
    role: RoleOpt = None,
) -> None:
    """Print the definition JSON: what runs locally and what `deploy` sends.

    For the same --bucket and --role it is byte for byte what `deploy` sends.
    """
    s = settings(ctx).with_overrides(bucket=bucket, role_arn=role)
    text = load_pipeline(pipeline, s).definition.dumps()
    if output:
        write_output(output, text)
        err.print(f"wrote {escape(str(output))} ({len(text.encode()):,} bytes)", highlight=False)
    else:
        sys.stdout.write(text)


def validate(ctx: typer.Context, pipeline: PipelineArg = None) -> None:
    """Validate a pipeline or definition; list every step that cannot run here, and why."""
    s = settings(ctx)
    loaded = load_pipeline(pipeline, s)
    d = loaded.definition
    console.print(
        f"[green]valid[/]: {escape(loaded.name)}: {len(list(d.all_steps()))} steps, "
        f"{len(d.parameters)} parameters",
        highlight=False,
    )
    problems = local_problems(d, s)
    for step, why in problems:
        console.print(
            f"[yellow]cannot run here[/]: step '{escape(step)}': {escape(why)}", highlight=False
        )
    if problems:
        noun = "step" if len(problems) == 1 else "steps"
        raise DefinitionError(f"{len(problems)} {noun} cannot run here (listed above)")


def local_problems(definition: Definition, s: Settings) -> list[tuple[str, str]]:
    """(step, why) for every step the local engine cannot run with these settings."""
    from sagepipe.engine.images import ImageMap

    images = ImageMap(s.python, s.images)
    problems = []
    for step in definition.all_steps():
        if not step.runnable_locally:
            problems.append(
                (
                    step.name,
                    f"{step.type} steps run only on SageMaker; locally: {', '.join(SUPPORTED_LOCALLY)}",
                )
            )
            continue
        image = _image(step)
        if image is None:
            continue
        try:
            images.runtime(image)
        except ConfigError as exc:
            problems.append((step.name, str(exc)))
    return problems


def _image(step: StepDef) -> str | None:
    """The step's container image when it is a plain string (a parameter is resolved at run time)."""
    args = step.arguments
    spec = (
        args.get("AppSpecification")
        if step.type == "Processing"
        else args.get("AlgorithmSpecification")
    )
    if not isinstance(spec, dict):
        return None
    image = spec.get("ImageUri" if step.type == "Processing" else "TrainingImage")
    return image if isinstance(image, str) else None


def graph(
    ctx: typer.Context,
    pipeline: PipelineArg = None,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="How to draw it.")
    ] = GraphFormat.text,
) -> None:
    """Show the steps, their types, edges and condition branches."""
    renderers = {
        GraphFormat.text: render.graph_text,
        GraphFormat.mermaid: render.graph_mermaid,
        GraphFormat.dot: render.graph_dot,
        GraphFormat.svg: render.graph_svg,
    }
    loaded = load_pipeline(pipeline, settings(ctx))
    sys.stdout.write(renderers[fmt](loaded.definition) + "\n")


def register(app: typer.Typer) -> None:
    """Add these commands to ``app``."""
    app.command()(definition)
    app.command()(validate)
    app.command()(graph)
