"""``definition``, ``validate`` and ``graph``: what a pipeline is, before anything runs."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagepipe.cli import render
from sagepipe.cli.consoles import console, err, escape
from sagepipe.cli.loader import load_pipeline
from sagepipe.cli.options import BucketOpt, PipelineArg, RoleOpt, write_output
from sagepipe.cli.state import settings
from sagepipe.config import Settings
from sagepipe.errors import ConfigError, DefinitionError

if TYPE_CHECKING:
    from sagepipe.definition import Definition, StepDef
    from sagepipe.images import Interpreter


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
    """Validate a pipeline or definition; show each step's environment; list every step that
    cannot run here, and why."""
    s = settings(ctx)
    loaded = load_pipeline(pipeline, s)
    d = loaded.definition
    console.print(
        f"[green]valid[/]: {escape(loaded.name)}: {len(list(d.all_steps()))} steps, "
        f"{len(d.parameters)} parameters",
        highlight=False,
    )
    for step, line in step_environments(d, s):
        console.print(f"environment: step '{escape(step)}': {escape(line)}", highlight=False)
    problems = local_problems(d, s)
    for step, why in problems:
        console.print(
            f"[yellow]cannot run here[/]: step '{escape(step)}': {escape(why)}", highlight=False
        )
    if problems:
        noun = "step" if len(problems) == 1 else "steps"
        raise DefinitionError(f"{len(problems)} {noun} cannot run here (listed above)")


def step_environments(definition: Definition, s: Settings) -> list[tuple[str, str]]:
    """(step, "image -> environment, Python, exact or approximated, built or not") per step."""
    from sagepipe.cli.images import here
    from sagepipe.engine.environments import StepEnvironments, step_image
    from sagepipe.images import find_interpreters, uv_bin
    from sagepipe.images.algorithms import algorithm_mode

    environments = StepEnvironments(s)
    interpreters: list[Interpreter] | None = None
    out = []
    for step in definition.all_steps():
        image = step_image(step, lambda v: _parameter_default(definition, v))
        if image is None:
            continue
        try:
            spec = environments.spec(image)
            env = environments.cached(image)
        except ConfigError:
            continue  # listed with the problems
        if env is None and interpreters is None:
            interpreters = find_interpreters(uv_bin=uv_bin())
        built = "built" if env is not None else "not built (the run builds it)"
        python = env.python_version if env is not None and env.python_version else spec.python
        target = spec.name if spec.kind == "env" else f"{spec.kind} ({spec.name!r} entry)"
        if env is not None and env.kind == "env":
            target += f" in {env.prefix}"
        status = here(spec, env, interpreters or [])
        line = f"{image.rsplit('/', 1)[-1]} -> {target}, Python {python}, {status}, {built}"
        if step.type == "Training" and algorithm_mode(image, _hyperparameters(step)):
            line += "; runs the image's built-in algorithm"
        out.append((step.name, line))
    return out


def _hyperparameters(step: StepDef) -> dict[str, object]:
    hps = step.arguments.get("HyperParameters")
    return dict(hps) if isinstance(hps, dict) else {}


def local_problems(definition: Definition, s: Settings) -> list[tuple[str, str]]:
    """(step, why) for every step the local engine cannot run with these settings."""
    from sagepipe.definition.function_payloads import is_function_step, python_mismatch
    from sagepipe.engine.engine import RUNNERS
    from sagepipe.engine.environments import StepEnvironments, step_image
    from sagepipe.engine.transform import transform_problems
    from sagepipe.engine.unsupported import unsupported_steps

    environments = StepEnvironments(s)
    problems = [(u.name, u.reason) for u in unsupported_steps(definition, RUNNERS)]
    for step in definition.all_steps():
        if not step.runnable_locally or step.type not in RUNNERS:
            continue
        if step.type == "Transform":
            problems.extend((step.name, why) for why in transform_problems(dict(step.arguments)))
            image = _transform_image(step, definition)
        else:
            image = step_image(step, lambda v: _parameter_default(definition, v))
        if image is None:
            continue
        try:
            spec = environments.spec(image)
        except ConfigError as exc:
            problems.append((step.name, str(exc)))
            continue
        if step.type == "Training" and is_function_step(step.arguments):
            python = spec.python if spec.kind == "env" else None
            mismatch = python_mismatch(step.arguments, spec.name, python)
            if mismatch is not None:
                problems.append((step.name, mismatch))
    return problems


def _transform_image(step: StepDef, definition: Definition) -> str | None:
    """The image of the Model step whose model a Transform step serves."""
    args = step.arguments
    ref = args.get("ModelName")
    path = ref.get("Get") if isinstance(ref, dict) else None
    if not isinstance(path, str) or not path.startswith("Steps."):
        return None
    model = definition.step(path.split(".")[1]).arguments
    container = model.get("PrimaryContainer")
    image = container.get("Image") if isinstance(container, dict) else None
    return image if isinstance(image, str) else None


def _parameter_default(definition: Definition, value: object) -> object:
    """A ``{"Get": "Parameters.X"}`` image's default value (what a run without it uses)."""
    if isinstance(value, dict) and isinstance(value.get("Get"), str):
        name = value["Get"].removeprefix("Parameters.")
        for parameter in definition.parameters:
            if parameter.name == name:
                return parameter.default_value
    raise ValueError("not a parameter")


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


def _supported() -> tuple[str, ...]:
    from sagepipe.definition.service_limits import SUPPORTED_LOCALLY

    return SUPPORTED_LOCALLY
