"""``executions`` and ``logs``: inspect executions, local (the default) or on SageMaker."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sagepipe.cli import render
from sagepipe.cli.consoles import console, err, escape, new_table
from sagepipe.cli.loader import load_pipeline
from sagepipe.cli.options import Backend, BackendOpt
from sagepipe.cli.run import print_sagemaker_steps, print_steps, with_faults
from sagepipe.cli.state import settings
from sagepipe.config import Settings
from sagepipe.core.status import is_terminal
from sagepipe.errors import UsageError

if TYPE_CHECKING:
    from sagepipe.cloud.client import Clients
    from sagepipe.engine.history import History

executions_app = typer.Typer(
    help="Inspect executions (local by default; --backend sagemaker for SageMaker's).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
ExecutionArg = Annotated[
    str, typer.Argument(help="Execution id (a unique prefix is enough) or, on SageMaker, its ARN.")
]
StepArg = Annotated[str | None, typer.Argument(help="Only this step.")]


def _history(s: Settings) -> History:
    """The history, with executions whose engine is gone marked and their partial outputs gone."""
    from sagepipe.engine.history import History
    from sagepipe.engine.publishing import roll_back_leftovers
    from sagepipe.storage import open_store

    history = History(s.history_path)
    roll_back_leftovers(history, lambda: open_store(s))
    return history


def _clients(s: Settings) -> Clients:
    from sagepipe.cloud.client import Clients

    return Clients.from_settings(s)


def _arn(execution: str) -> str:
    if not execution.startswith("arn:"):
        raise UsageError(
            f"{execution!r} is not an execution ARN; SageMaker executions are named by ARN "
            "('sagepipe executions list --backend sagemaker' shows them)"
        )
    return execution


@executions_app.command("list")
def list_executions(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None, typer.Option(help="Only this pipeline (sagemaker: its name or file).")
    ] = None,
    backend: BackendOpt = Backend.local,
) -> None:
    """The newest executions."""
    s = settings(ctx)
    if backend is Backend.sagemaker:
        _list_sagemaker(s, pipeline)
        return
    table = new_table(title="executions")
    for col in ("id", "pipeline", "status", "started", "duration"):
        table.add_column(col)
    for e in _history(s).executions(pipeline):
        duration = f"{(e.ended - e.created):.2f}s" if e.ended else ""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created))
        style = render.STATUS_STYLE.get(e.status, "")
        table.add_row(
            e.id, escape(e.pipeline), f"[{style}]{escape(e.status)}[/]", started, duration
        )
    console.print(table)


def _list_sagemaker(s: Settings, pipeline: str | None) -> None:
    from sagepipe.cloud import executions as ex

    if pipeline is None or pipeline.endswith((".py", ".json")):
        name = load_pipeline(pipeline, s).name
    else:
        name = pipeline
    table = new_table(title=f"executions of {escape(name)} on SageMaker")
    for col in ("execution", "status", "started"):
        table.add_column(col)
    for e in ex.list_executions(_clients(s), name):
        table.add_row(
            escape(e["PipelineExecutionArn"]),
            escape(e["PipelineExecutionStatus"]),
            str(e.get("StartTime", "")),
        )
    console.print(table)


@executions_app.command("describe")
def describe(
    ctx: typer.Context, execution: ExecutionArg, backend: BackendOpt = Backend.local
) -> None:
    """DescribePipelineExecution as JSON."""
    s = settings(ctx)
    if backend is Backend.sagemaker:
        from sagepipe.cloud import executions as ex

        desc = ex.describe(_clients(s), _arn(execution))
    else:
        from sagepipe.engine.execution import describe_execution

        history = _history(s)
        record = history.execution(execution)
        desc = describe_execution(record)
        decisions = history.cache_decisions(record.id)
        if decisions:  # sagepipe's own: why each step hit or missed the cache
            desc["CacheDecisions"] = {name: decisions[name] for name in sorted(decisions)}
    sys.stdout.write(render.to_json(desc) + "\n")


@executions_app.command("steps")
def steps(
    ctx: typer.Context,
    execution: ExecutionArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="ListPipelineExecutionSteps JSON.")
    ] = False,
    backend: BackendOpt = Backend.local,
) -> None:
    """The steps of an execution, with each step's metrics and property files."""
    s = settings(ctx)
    if backend is Backend.sagemaker:
        from sagepipe.cloud import executions as ex

        clients, arn = _clients(s), _arn(execution)
        if as_json:
            listed = ex.list_steps(clients, arn)
            sys.stdout.write(render.to_json({"PipelineExecutionSteps": listed}) + "\n")
        else:
            print_sagemaker_steps(clients, arn)
        return
    from sagepipe.engine.execution import describe_steps, step_results

    history = _history(s)
    record = history.execution(execution)
    records = history.steps(record.id)
    entries = describe_steps(records)
    if as_json:
        sys.stdout.write(render.to_json({"PipelineExecutionSteps": entries}) + "\n")
        return
    from sagepipe.definition import load
    from sagepipe.storage import open_store

    definition = load(record.definition)
    names = {st.name for st in definition.all_steps()}
    store = open_store(s)
    results = {
        r.name: step_results(r, definition.step(r.name) if r.name in names else None, store)
        for r in records
    }
    rss = {r.name: int(r.metadata.get("_peak_rss_kb", 0)) for r in records}
    decisions = history.cache_decisions(record.id)
    title = f"execution {record.id} ({record.status})"
    print_steps(with_faults(entries, records), title, results, rss, decisions)


@executions_app.command("result")
def result(
    ctx: typer.Context,
    execution: ExecutionArg,
    step: Annotated[str, typer.Argument(help="A @step function's step name.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Save the pickled return value to this file."),
    ] = None,
    backend: BackendOpt = Backend.local,
) -> None:
    """A function step's return value (its repr), like the SDK's execution.result(step)."""
    from sagepipe.engine.function_results import (
        function_result,
        read_result,
        save_result,
        show_result,
    )
    from sagepipe.storage import open_store

    s = settings(ctx)
    if backend is Backend.sagemaker:  # the job's S3OutputPath, read from S3
        from sagepipe.cloud import executions as ex

        uri, image = ex.function_output(_clients(s), _arn(execution), step)
        found = read_result(open_store(s, "s3"), step, uri, image)
    else:
        found = function_result(_history(s), open_store(s), execution, step)
    if output is not None:
        save_result(found, output)
        console.print(f"saved the return value of {step} to {output}", highlight=False)
        return
    sys.stdout.write(show_result(s, found) + "\n")


def logs(
    ctx: typer.Context,
    execution: ExecutionArg,
    step: StepArg = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the execution ends.")
    ] = False,
    backend: BackendOpt = Backend.local,
) -> None:
    """Print the logs of an execution's steps, prefixed by step."""
    s = settings(ctx)
    if backend is Backend.sagemaker:
        _sagemaker_logs(s, _arn(execution), step)
        return
    history = _history(s)
    record = history.execution(execution)
    folder = s.home / "logs" / record.id
    offsets: dict[str, int] = {}
    while True:
        if follow:
            history.reap()  # an execution whose engine is gone ends here, as Failed
        # Read the status first: lines written before the end are then all printed.
        finished = not follow or is_terminal(history.execution(record.id).status)
        names = [st.name for st in history.steps(record.id)]
        if step is not None:
            if step not in names and not follow:
                raise UsageError(
                    f"execution {record.id} has no step '{step}'; steps: {', '.join(names)}"
                )
            names = [step]
        for name in names:
            path = folder / f"{name}.log"
            text = (
                path.read_text(errors="replace")
                if path.is_file()
                else (history.step_log(record.id, name) or "")
            )
            new = text[offsets.get(name, 0) :]
            if not finished:
                new = new[: new.rfind("\n") + 1]  # a line still being written waits
            offsets[name] = offsets.get(name, 0) + len(new)
            for line in new.splitlines():
                console.print(f"{name} | {line}", highlight=False, markup=False)
        if finished:
            break
        time.sleep(0.5)


def _sagemaker_logs(s: Settings, arn: str, step: str | None) -> None:
    from sagepipe.cloud import executions as ex

    clients = _clients(s)
    follower = ex.LogFollower(clients)
    entries = ex.list_steps(clients, arn)
    if step is not None and step not in {e["StepName"] for e in entries}:
        raise UsageError(f"execution has no step '{step}'")
    for entry in reversed(entries):
        job = ex.job_of(entry)
        if job and (step is None or entry["StepName"] == step):
            follower.poll(
                entry["StepName"],
                *job,
                lambda st, line: console.print(f"{st} | {line}", highlight=False, markup=False),
            )


@executions_app.command("stop")
def stop(ctx: typer.Context, execution: ExecutionArg, backend: BackendOpt = Backend.local) -> None:
    """Stop a running execution: its running steps are stopped, it ends Stopped."""
    if backend is Backend.local:
        _stop_local(settings(ctx), execution)
        return
    from sagepipe.cloud import executions as ex

    arn = _arn(execution)
    ex.stop(_clients(settings(ctx)), arn)
    console.print(f"stop requested for {arn}", highlight=False, markup=False)


def _stop_local(s: Settings, execution: str, timeout: float = 60.0) -> None:
    """Ask the engine that runs ``execution`` to stop it, and wait until it has."""
    history = _history(s)
    record = history.execution(execution)
    if is_terminal(record.status):
        raise UsageError(f"execution {record.id} has ended already ({record.status})")
    history.request_stop(record.id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history.reap()
        status = history.execution(record.id).status
        if is_terminal(status):
            console.print(f"execution {record.id}: {status}", highlight=False, markup=False)
            return
        time.sleep(0.2)
    console.print(
        f"stop requested for execution {record.id}; it is still stopping",
        highlight=False,
        markup=False,
    )


@executions_app.command("retry")
def retry(
    ctx: typer.Context,
    execution: ExecutionArg,
    backend: BackendOpt = Backend.local,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream step logs.")] = False,
) -> None:
    """Retry a Failed or Stopped execution: the same execution runs its failed, stopped and
    never reached steps again, keeping those that succeeded (RetryPipelineExecution)."""
    if backend is Backend.local:
        _retry_local(settings(ctx), execution, quiet)
        return
    from sagepipe.cloud import executions as ex

    arn = ex.retry(_clients(settings(ctx)), _arn(execution))
    console.print(arn, highlight=False, markup=False)


def _retry_local(s: Settings, execution: str, quiet: bool) -> None:
    from sagepipe.cli.live import LiveView
    from sagepipe.cli.run import follow_locally
    from sagepipe.definition import load
    from sagepipe.engine.factory import build_engine
    from sagepipe.engine.rerun import check_retryable

    record = _history(s).execution(execution)
    check_retryable(record)  # before any environment is prepared
    # Where it ran: its succeeded steps' outputs are in that store.
    s = s.with_overrides(store=record.store, sandbox=record.sandbox)
    definition = load(record.definition)
    view = LiveView(console, [(st.name, st.type) for st in definition.all_steps()], quiet=quiet)
    engine = build_engine(s, on_line=view.on_line, on_status=view.on_status)
    resumed = engine.resume(record.id)
    err.print(
        f"retrying execution [bold]{record.id}[/] of {escape(record.pipeline)} "
        f"({engine.sandbox.name} sandbox, {s.store} store)"
    )
    follow_locally(engine, resumed, view, s)


executions_app.command("logs")(logs)  # also a top-level command


def register(app: typer.Typer) -> None:
    """Add ``executions`` and ``logs`` to ``app``."""
    app.add_typer(executions_app, name="executions")
    app.command("logs")(logs)
