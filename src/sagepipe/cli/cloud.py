"""CLI glue for the SageMaker backend: deploy, run and inspect executions on AWS."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from sagepipe.cli import render
from sagepipe.cli.consoles import console, err
from sagepipe.cli.loader import load_pipeline
from sagepipe.config import Settings
from sagepipe.errors import SagepipeError


def _settings() -> Settings:
    from sagepipe.cli.main import settings

    return settings()


def _clients(s: Settings) -> Any:
    from sagepipe.cloud.client import Clients

    return Clients.from_settings(s)


def deploy_command(
    pipeline: Annotated[
        str | None, typer.Argument(help="Pipeline .py or definition .json.")
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(help="IAM role ARN SageMaker runs the jobs as (or SAGEPIPE_ROLE_ARN)."),
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="Bucket for code (default: the configured one).")
    ] = None,
    tag: Annotated[list[str], typer.Option("--tag", help="Key=Value; repeatable.")] = [],  # noqa: B006
    max_parallel: Annotated[
        int | None, typer.Option(help="ParallelismConfiguration.MaxParallelExecutionSteps.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check limits, show the upload plan, predict cache hits; change nothing.",
        ),
    ] = False,
    parameter: Annotated[
        list[str], typer.Option("-p", "--parameter", help="Name=Value for the cache prediction.")
    ] = [],  # noqa: B006
) -> None:
    """Upload the code and create or update the pipeline on SageMaker."""
    from sagepipe.cli.main import parse_pairs, parse_parameters
    from sagepipe.cloud.deploy import deploy
    from sagepipe.storage.s3 import S3Store

    base = _settings()
    s = Settings(
        **{**base.__dict__, "bucket": bucket or base.bucket, "role_arn": role or base.role_arn}
    )
    loaded = load_pipeline(pipeline, s)
    uploads = loaded.compiled.uploads if loaded.compiled else ()
    result = deploy(
        loaded.definition,
        uploads,
        loaded.name,
        _clients(s),
        S3Store.from_settings(s),
        s.bucket,
        s.role_arn,
        tags=parse_pairs(tag, "tag", "Key=Value"),
        max_parallel=max_parallel,
        dry_run=dry_run,
        parameters=parse_parameters(parameter),
    )
    if dry_run:
        _print_dry_run(result, loaded.name)
        if result.problems:
            raise typer.Exit(1)
        return
    for uri in result.uploaded:
        err.print(f"uploaded {uri}", highlight=False)
    err.print(
        f"{len(result.uploaded)} code objects uploaded, {len(result.already_present)} already present"
    )
    err.print(f"definition: {result.definition_location}")
    console.print(result.pipeline_arn, highlight=False)


def _print_dry_run(result: Any, name: str) -> None:
    for problem in result.problems:
        console.print(f"[red]problem[/]: {problem}", highlight=False)
    if not result.problems:
        console.print(f"[green]ok[/]: {name} passes the service's checks")
    console.print(
        f"pipeline: {'would be created' if result.created else 'exists; would be updated'}"
    )
    for uri in result.uploaded:
        console.print(f"would upload {uri}", highlight=False)
    for uri in result.already_present:
        console.print(f"present      {uri}", highlight=False)
    table = Table(title="predicted cache results of the next execution")
    for col in ("step", "cache", "why"):
        table.add_column(col)
    for p in result.predictions:
        mark = "[dim]n/a[/]" if p.hit is None else "[green]hit[/]" if p.hit else "[yellow]miss[/]"
        table.add_row(p.step, mark, p.reason)
    console.print(table)


def run_on_sagemaker(pipeline: str | None, params: dict[str, str], no_wait: bool) -> None:
    """Start the deployed pipeline and watch it like a local run."""
    from sagepipe.cloud import executions as ex

    s = _settings()
    loaded = load_pipeline(pipeline, s)
    clients = _clients(s)
    for name in params:
        loaded.definition.parameter(name)  # unknown names fail here, before any cost
    arn = ex.start(clients, loaded.name, params)
    if no_wait:
        console.print(arn, highlight=False)
        return
    err.print(f"started {arn}", highlight=False)
    width = max((len(st.name) for st in loaded.definition.all_steps()), default=4)
    try:
        desc = ex.watch(
            clients,
            arn,
            on_line=lambda step, line: console.print(
                f"{step:<{width}} | {line}", highlight=False, markup=False
            ),
            on_status=lambda step, status: console.print(
                f"{step:<{width}} : {status}", highlight=False
            ),
        )
    except KeyboardInterrupt:
        err.print("stopped watching.")
        if typer.confirm("Stop the execution on SageMaker too?", default=False):
            ex.stop(clients, arn)
            err.print("stop requested")
        raise typer.Exit(130) from None
    _finish(clients, arn, desc)


def _finish(clients: Any, arn: str, desc: dict[str, Any]) -> None:
    from sagepipe.cloud import executions as ex

    steps = ex.list_steps(clients, arn)
    console.print(render.steps_table(steps, f"execution {arn.rsplit('/', 1)[-1]}"))
    status = desc["PipelineExecutionStatus"]
    console.print(f"status: [{render.STATUS_STYLE.get(status, '')}]{status}[/]")
    if desc.get("FailureReason"):
        console.print(f"reason: {desc['FailureReason']}", highlight=False)
    for step in steps:
        arn_ = (step.get("Metadata") or {}).get("TrainingJob", {}).get("Arn")
        if arn_:
            job = clients.sagemaker.describe_training_job(TrainingJobName=arn_.rsplit("/", 1)[-1])
            model = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
            if model:
                console.print(f"model ({step['StepName']}): {model}", highlight=False)
    if status != "Succeeded":
        raise typer.Exit(1)


def executions_cloud(
    action: str, pipeline: str | None, execution: str | None, step: str | None = None
) -> None:
    """list | describe | steps | logs | stop | retry on SageMaker."""
    from sagepipe.cloud import executions as ex

    s = _settings()
    clients = _clients(s)
    if action == "list":
        name = (
            load_pipeline(pipeline, s).name
            if pipeline is None or pipeline.endswith((".py", ".json"))
            else pipeline
        )
        table = Table(title=f"executions of {name} on SageMaker")
        for col in ("execution", "status", "started"):
            table.add_column(col)
        for e in ex.list_executions(clients, name):
            table.add_row(
                e["PipelineExecutionArn"], e["PipelineExecutionStatus"], str(e.get("StartTime", ""))
            )
        console.print(table)
        return
    if not execution:
        raise SagepipeError("give the execution ARN")
    if action == "describe":
        sys.stdout.write(render.to_json(ex.describe(clients, execution)) + "\n")
    elif action == "steps":
        console.print(
            render.steps_table(ex.list_steps(clients, execution), execution.rsplit("/", 1)[-1])
        )
    elif action == "logs":
        follower = ex.LogFollower(clients)
        for entry in reversed(ex.list_steps(clients, execution)):
            job = ex.job_of(entry)
            if job and (step is None or entry["StepName"] == step):
                follower.poll(
                    entry["StepName"],
                    *job,
                    lambda st, line: console.print(f"{st} | {line}", highlight=False, markup=False),
                )
    elif action == "stop":
        ex.stop(clients, execution)
        console.print(f"stop requested for {execution}", highlight=False)
    elif action == "retry":
        console.print(ex.retry(clients, execution), highlight=False)
