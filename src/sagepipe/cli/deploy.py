"""``deploy``: upload the code and create or update the pipeline on SageMaker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sagepipe.cli.consoles import console, err, escape, new_table
from sagepipe.cli.loader import load_pipeline
from sagepipe.cli.options import BucketOpt, ParameterOpt, PipelineArg, RoleOpt, parse_pairs
from sagepipe.cli.state import settings

if TYPE_CHECKING:
    from sagepipe.cloud.deploy import DeployResult


def deploy(
    ctx: typer.Context,
    pipeline: PipelineArg = None,
    role: RoleOpt = None,
    bucket: BucketOpt = None,
    tag: Annotated[list[str], typer.Option("--tag", help="Key=Value; repeatable.")] = [],  # noqa: B006
    max_parallel: Annotated[
        int | None,
        typer.Option(min=1, help="ParallelismConfiguration.MaxParallelExecutionSteps."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check limits, show the upload plan, predict cache hits; change nothing.",
        ),
    ] = False,
    parameter: ParameterOpt = [],  # noqa: B006
) -> None:
    """Upload the code and create or update the pipeline on SageMaker.

    It sends exactly what `sagepipe definition` prints for the same --bucket and --role.
    """
    from sagepipe.cloud.deploy import deploy_from_settings

    s = settings(ctx).with_overrides(bucket=bucket, role_arn=role)
    tags = parse_pairs(tag, "tag", "Key=Value")
    params = parse_pairs(parameter)
    loaded = load_pipeline(pipeline, s)
    result = deploy_from_settings(
        loaded.definition,
        loaded.compiled.uploads if loaded.compiled else (),
        loaded.name,
        s,
        s.role_arn,
        tags=tags,
        max_parallel=max_parallel,
        dry_run=dry_run,
        parameters=params,
    )
    if dry_run:
        _print_dry_run(result, loaded.name)
        if result.problems:
            raise typer.Exit(1)
        return
    for uri in result.uploaded:
        err.print(f"uploaded {uri}", highlight=False, markup=False)
    err.print(
        f"{len(result.uploaded)} code objects uploaded, {len(result.already_present)} already present"
    )
    err.print(f"definition: {result.definition_location}", highlight=False, markup=False)
    console.print(result.pipeline_arn, highlight=False, markup=False)


def _print_dry_run(result: DeployResult, name: str) -> None:
    for problem in result.problems:
        console.print(f"[red]problem[/]: {escape(problem)}", highlight=False)
    if not result.problems:
        console.print(f"[green]ok[/]: {escape(name)} passes the service's checks")
    console.print(
        f"pipeline: {'would be created' if result.created else 'exists; would be updated'}"
    )
    for uri in result.uploaded:
        console.print(f"would upload {uri}", highlight=False, markup=False)
    for uri in result.already_present:
        console.print(f"present      {uri}", highlight=False, markup=False)
    table = new_table(title="predicted cache results of the next execution")
    for col in ("step", "cache", "why"):
        table.add_column(col)
    for p in result.predictions:
        mark = "[dim]n/a[/]" if p.hit is None else "[green]hit[/]" if p.hit else "[yellow]miss[/]"
        table.add_row(escape(p.step), mark, escape(p.reason))
    console.print(table)
    for p in result.predictions:
        if p.data_changed:
            named = ", ".join(p.data_changed[:5])
            more = f" and {len(p.data_changed) - 5} more" if len(p.data_changed) > 5 else ""
            console.print(
                f"[red]warning[/]: SageMaker would serve {escape(p.step)} from its cache although "
                f"its input data changed after the last successful execution started: "
                f"{escape(named)}{more} (its cache key is the arguments, not the data; turn "
                "the step's caching off or change an argument to rerun it)",
                highlight=False,
            )


def register(app: typer.Typer) -> None:
    """Add ``deploy`` to ``app``."""
    app.command()(deploy)
