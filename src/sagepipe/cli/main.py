"""The ``sagepipe`` command. Exit codes: 0 ok, 1 user error (one line), 2 internal error."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sagepipe.cli import render
from sagepipe.cli.consoles import console, err
from sagepipe.cli.loader import Loaded, load_pipeline
from sagepipe.config import Settings
from sagepipe.errors import SagepipeError

app = typer.Typer(
    help="Author SageMaker pipelines, run them locally in seconds, deploy them to SageMaker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
executions_app = typer.Typer(help="Inspect local executions.", no_args_is_help=True)
models_app = typer.Typer(help="The local model registry.", no_args_is_help=True)
app.add_typer(executions_app, name="executions")
app.add_typer(models_app, name="models")


def _register_subcommands() -> None:
    from sagepipe.cli.bucket import bucket_app
    from sagepipe.cli.cloud import deploy_command
    from sagepipe.cli.doctor import doctor_command
    from sagepipe.cli.images import images_app

    app.add_typer(bucket_app, name="bucket")
    app.add_typer(images_app, name="images")
    app.command("deploy")(deploy_command)
    app.command("doctor")(doctor_command)


_state: dict[str, Any] = {"debug": False}

PipelineArg = Annotated[
    str | None,
    typer.Argument(
        help="A .py file exposing `pipeline` or `get_pipeline`, or a definition .json (default: app/sagemaker_pipeline.py)."
    ),
]


def settings(**overrides: Any) -> Settings:
    """The settings for this invocation, built once at the edge."""
    if "settings" not in _state:
        _state["settings"] = Settings.from_env(**overrides)
    return _state["settings"]  # type: ignore[no-any-return]


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """sagepipe."""
    _state["debug"] = debug
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def definition(
    pipeline: PipelineArg = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file.")
    ] = None,
) -> None:
    """Print the pipeline's definition JSON (what runs locally and what is deployed)."""
    loaded = load_pipeline(pipeline, settings())
    text = loaded.definition.dumps()
    if output:
        output.write_text(text)
        err.print(f"wrote {output} ({len(text.encode()):,} bytes)")
    else:
        sys.stdout.write(text)


@app.command()
def validate(pipeline: PipelineArg = None) -> None:
    """Validate a pipeline or definition; report steps that cannot run locally."""
    from sagepipe.definition.limits import SUPPORTED_LOCALLY

    loaded = load_pipeline(pipeline, settings())
    d = loaded.definition
    steps = list(d.all_steps())
    console.print(
        f"[green]valid[/]: {loaded.name}: {len(steps)} steps, {len(d.parameters)} parameters"
    )
    for step in d.unsupported_steps():
        console.print(
            f"[yellow]note[/]: step '{step.name}' ({step.type}) cannot run locally; "
            f"supported: {', '.join(SUPPORTED_LOCALLY)}"
        )


@app.command()
def graph(
    pipeline: PipelineArg = None,
    fmt: Annotated[str, typer.Option("--format", help="text, mermaid, dot or svg.")] = "text",
) -> None:
    """Show the steps, their types, edges and condition branches."""
    renderers = {
        "text": render.graph_text,
        "mermaid": render.graph_mermaid,
        "dot": render.graph_dot,
        "svg": render.graph_svg,
    }
    if fmt not in renderers:
        raise SagepipeError(f"--format {fmt!r} is unknown; use {', '.join(renderers)}")
    loaded = load_pipeline(pipeline, settings())
    sys.stdout.write(renderers[fmt](loaded.definition) + "\n")


def parse_pairs(
    pairs: list[str], what: str = "parameter", form: str = "Name=Value"
) -> dict[str, str]:
    """``Name=Value`` pairs (parameters, tags) to a dict."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SagepipeError(f"{what} {pair!r} must look like {form}")
        out[name] = value
    return out


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """``-p Name=Value`` options to a dict."""
    return parse_pairs(pairs)


@app.command()
def run(
    pipeline: PipelineArg = None,
    parameter: Annotated[
        list[str], typer.Option("-p", "--parameter", help="Name=Value; repeatable.")
    ] = [],  # noqa: B006
    sandbox: Annotated[str | None, typer.Option(help="auto, bwrap or process.")] = None,
    max_parallel: Annotated[
        int | None, typer.Option(help="Steps run at once (default: CPU count).")
    ] = None,
    store: Annotated[str | None, typer.Option(help="local (default) or s3.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream step logs.")] = False,
    backend: Annotated[str, typer.Option(help="local or sagemaker.")] = "local",
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="sagemaker: print the execution ARN and return.")
    ] = False,
) -> None:
    """Run the pipeline (locally by default); exit 0 only when the execution Succeeded."""
    from sagepipe.cli.live import LiveView
    from sagepipe.engine.runner import build_engine, start_definition, upload_code

    params = parse_parameters(parameter)
    if backend == "sagemaker":
        from sagepipe.cli.cloud import run_on_sagemaker

        settings()
        run_on_sagemaker(pipeline, params, no_wait)
        return
    if backend != "local":
        raise SagepipeError(f"--backend {backend!r} is unknown; use local or sagemaker")
    s = settings(sandbox=sandbox, store=store)
    loaded = load_pipeline(pipeline, s)
    steps = [(st.name, st.type) for st in loaded.definition.all_steps()]
    view = LiveView(console, steps, quiet=quiet)
    engine = build_engine(s, on_line=view.on_line, on_status=view.on_status)
    if loaded.compiled is not None:
        upload_code(loaded.compiled, engine.store)
    execution = start_definition(engine, loaded.definition, loaded.name, params, max_parallel)
    err.print(
        f"execution [bold]{execution.execution_id}[/] of {loaded.name} ({engine.sandbox.name} sandbox, {s.store} store)"
    )
    with view:
        try:
            while execution.wait(0.2) not in ("Succeeded", "Failed", "Stopped"):
                pass
        except KeyboardInterrupt:
            err.print("stopping: killing running steps ...")
            execution.stop()
            execution.wait()
    finish(execution, loaded)


def finish(execution: Any, loaded: Loaded) -> None:
    """Print the outcome and exit with 0 only on Succeeded."""
    desc = execution.describe()
    steps = execution.list_steps()
    rss = {
        r.name: int(r.metadata.get("_peak_rss_kb", 0))
        for r in execution.history.steps(execution.execution_id)
    }
    console.print(render.steps_table(steps, f"execution {execution.execution_id}", rss))
    status = desc["PipelineExecutionStatus"]
    style = render.STATUS_STYLE.get(status, "")
    console.print(f"status: [{style}]{status}[/]")
    if desc.get("FailureReason"):
        console.print(f"reason: {desc['FailureReason']}", highlight=False)
    _print_artifacts(execution, loaded)
    if status != "Succeeded":
        raise typer.Exit(1)


def _print_artifacts(execution: Any, loaded: Loaded) -> None:
    from sagepipe.layout import LOGS_PREFIX

    s = settings()
    for record in execution.history.steps(execution.execution_id):
        props = record.properties
        model = props.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        for container in props.get("InferenceSpecification", {}).get("Containers", []):
            model = model or container.get("ModelDataUrl")
        if model and record.status == "Succeeded":
            console.print(f"model ({record.name}): {model}", highlight=False)
        _print_property_files(execution, record)
    console.print(
        f"logs: s3://{s.bucket}/{LOGS_PREFIX}/{loaded.name}/{execution.execution_id}/",
        highlight=False,
    )


def _print_property_files(execution: Any, record: Any) -> None:
    import json

    step = execution.run.definition.step(record.name)
    for entry in step.property_files or ():
        try:
            value = execution.run.scope.read_property_file(record.name, entry["PropertyFileName"])
        except SagepipeError:
            continue
        text = json.dumps(value)
        console.print(
            f"{record.name}/{entry['PropertyFileName']}: {text[:300]}",
            highlight=False,
            markup=False,
        )


def _history() -> Any:
    from sagepipe.engine.history import History

    return History(settings().history_path)


BackendOpt = Annotated[str, typer.Option(help="local or sagemaker.")]


def _cloud(
    action: str, pipeline: str | None, execution: str | None, step: str | None = None
) -> None:
    from sagepipe.cli.cloud import executions_cloud

    executions_cloud(action, pipeline, execution, step)


@executions_app.command("list")
def executions_list(
    pipeline: Annotated[
        str | None, typer.Option(help="Only this pipeline (sagemaker: its name or file).")
    ] = None,
    backend: BackendOpt = "local",
) -> None:
    """The newest executions."""
    from rich.table import Table

    if backend == "sagemaker":
        _cloud("list", pipeline, None)
        return

    table = Table(title="executions")
    for col in ("id", "pipeline", "status", "started", "duration"):
        table.add_column(col)
    for e in _history().executions(pipeline):
        duration = f"{(e.ended - e.created):.2f}s" if e.ended else ""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created))
        style = render.STATUS_STYLE.get(e.status, "")
        table.add_row(e.id, e.pipeline, f"[{style}]{e.status}[/]", started, duration)
    console.print(table)


@executions_app.command("describe")
def executions_describe(execution_id: str, backend: BackendOpt = "local") -> None:
    """DescribePipelineExecution as JSON."""
    from sagepipe.engine.execution import describe_execution

    if backend == "sagemaker":
        _cloud("describe", None, execution_id)
        return

    sys.stdout.write(render.to_json(describe_execution(_history().execution(execution_id))) + "\n")


@executions_app.command("steps")
def executions_steps(
    execution_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="ListPipelineExecutionSteps JSON.")
    ] = False,
) -> None:
    """The steps of an execution."""
    from sagepipe.engine.execution import describe_steps

    history = _history()
    record = history.execution(execution_id)
    steps = describe_steps(history.steps(record.id))
    if as_json:
        sys.stdout.write(render.to_json({"PipelineExecutionSteps": steps}) + "\n")
    else:
        records = history.steps(record.id)
        rss = {r.name: int(r.metadata.get("_peak_rss_kb", 0)) for r in records}
        console.print(render.steps_table(steps, f"execution {record.id} ({record.status})", rss))


@app.command()
def logs(
    execution_id: str,
    step: Annotated[str | None, typer.Argument(help="Only this step.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the execution ends.")
    ] = False,
) -> None:
    """Print the logs of an execution's steps, prefixed by step."""
    history = _history()
    record = history.execution(execution_id)
    folder = settings().home / "logs" / record.id
    offsets: dict[str, int] = {}
    terminal = ("Succeeded", "Failed", "Stopped")
    while True:
        # Read the status first: lines written before the end are then all printed.
        finished = not follow or history.execution(record.id).status in terminal
        names = [s.name for s in history.steps(record.id)]
        if step is not None:
            if step not in names and not follow:
                raise SagepipeError(
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


@executions_app.command("stop")
def executions_stop(execution_id: str, backend: BackendOpt = "sagemaker") -> None:
    """Stop a running execution (SageMaker; local runs stop with Ctrl-C)."""
    if backend != "sagemaker":
        raise SagepipeError("local executions stop with Ctrl-C in the terminal that runs them")
    _cloud("stop", None, execution_id)


@executions_app.command("retry")
def executions_retry(execution_id: str, backend: BackendOpt = "sagemaker") -> None:
    """Retry the failed steps of a failed execution (SageMaker)."""
    if backend != "sagemaker":
        raise SagepipeError("retry is a SageMaker operation; rerun locally with 'sagepipe run'")
    _cloud("retry", None, execution_id)


@models_app.command("list")
def models_list(
    group: Annotated[str | None, typer.Option(help="Only this model package group.")] = None,
) -> None:
    """Model versions registered by local executions."""
    from rich.table import Table

    table = Table(title="models")
    for col in ("group", "version", "approval", "model data", "execution"):
        table.add_column(col)
    for m in _history().models(group):
        table.add_row(
            m["group_name"],
            str(m["version"]),
            m["approval"],
            m["model_data_url"] or "",
            m["execution_id"],
        )
    console.print(table)


@app.command()
def predict(
    model_uri: Annotated[str, typer.Argument(help="s3:// URI (or local path) of a model.tar.gz.")],
    data: Annotated[Path, typer.Argument(help="CSV of raw rows.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: stdout).")
    ] = None,
    store: Annotated[str | None, typer.Option(help="local (default) or s3.")] = None,
) -> None:
    """Score raw rows with a model artifact of the example app (runs app/src/predict.py)."""
    import subprocess
    import tempfile

    from sagepipe.storage import open_store

    s = settings()
    scorer = s.project_root / "app" / "src" / "predict.py"
    if not scorer.is_file():
        raise SagepipeError(f"{scorer} not found; predict scores models of the example app")
    if not data.is_file():
        raise SagepipeError(f"{data} is not a file")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(model_uri)
        if model_uri.startswith("s3://"):
            local = Path(tmp) / "model.tar.gz"
            open_store(s, store).get_file(model_uri, local)
        elif not local.exists():
            raise SagepipeError(f"{model_uri} is neither an s3:// URI nor a local file")
        cmd = [
            s.python,
            str(scorer),
            "--model",
            str(local),
            "--data",
            str(data),
            "--output",
            str(output or "-"),
        ]
        done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise typer.Exit(1)


_register_subcommands()


def run_cli(argv: list[str] | None = None) -> int:
    """Entry point: map errors to exit codes (1 user error, 2 internal) and one-line messages."""
    _state.clear()
    _state["debug"] = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = app(args=argv, standalone_mode=False)
        if isinstance(result, int):  # click returns Exit codes when not standalone
            return result
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: bad options or arguments
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {exc}", highlight=False)
        return 1
    except SagepipeError as exc:
        if _state.get("debug"):
            err.print_exception()
        err.print(f"[red]error[/]: {escape(str(exc))}", highlight=False)
        return 1
    except Exception as exc:
        if _state.get("debug"):
            err.print_exception()
        err.print(
            f"[red]internal error[/]: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
        )
        return 2
    return 0


def entry() -> None:
    """Console script."""
    sys.exit(run_cli())
