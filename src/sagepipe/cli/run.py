"""``run``: run a pipeline locally with a live view, or start it on SageMaker and watch it."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagepipe.bucket_layout import LOGS_PREFIX
from sagepipe.cli import render
from sagepipe.cli.consoles import console, err, escape, real_console
from sagepipe.cli.loader import Loaded, load_pipeline
from sagepipe.cli.options import (
    Backend,
    BackendOpt,
    ParameterOpt,
    PipelineArg,
    SandboxKind,
    StoreOpt,
    parse_pairs,
)
from sagepipe.cli.state import settings
from sagepipe.config import Settings
from sagepipe.core.status import ExecutionStatus, is_terminal
from sagepipe.errors import UsageError
from sagepipe.records import record

if TYPE_CHECKING:
    from sagepipe.cloud.client import Clients
    from sagepipe.definition import Definition
    from sagepipe.engine.engine import Engine, Run
    from sagepipe.engine.execution import LocalExecution, StepResults
    from sagepipe.engine.history import History
    from sagepipe.engine.rerun import Selection

StepsOpt = Annotated[
    str | None,
    typer.Option(
        "--steps",
        help="Run only these steps (comma-separated); the steps they need come from --reference.",
    ),
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="Run this step and every step after it.")
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        help="With --steps/--from: the execution the other steps' results come from (default: "
        "the newest that has them; on SageMaker the newest execution)."
    ),
]


@record
class StepChoice:
    """``--steps``/``--from``/``--reference``: a selective execution when given."""

    steps: tuple[str, ...] | None = None
    from_step: str | None = None
    reference: str | None = None

    @classmethod
    def parse(cls, steps: str | None, from_step: str | None, reference: str | None) -> StepChoice:
        """Check the combination; ``--steps a,b`` becomes ``('a', 'b')``."""
        if steps is not None and from_step is not None:
            raise UsageError("give --steps or --from, not both")
        if reference is not None and steps is None and from_step is None:
            raise UsageError("--reference goes with --steps or --from")
        names = None if steps is None else tuple(n.strip() for n in steps.split(",") if n.strip())
        return cls(names, from_step, reference)

    @property
    def given(self) -> bool:
        """Whether a selective execution was asked for."""
        return self.steps is not None or self.from_step is not None

    def selected(self, definition: Definition) -> frozenset[str]:
        """The selected step names, checked against ``definition``."""
        from sagepipe.engine.rerun import select_steps

        return select_steps(definition, self.steps, self.from_step)

    def plan(
        self, history: History, definition: Definition, pipeline: str, store: str
    ) -> Selection:
        """The local selection: selected steps and the reference the others come from."""
        from sagepipe.engine.rerun import plan_selection

        return plan_selection(
            history, definition, pipeline, self.selected(definition), self.reference, store
        )


def run(
    ctx: typer.Context,
    pipeline: PipelineArg = None,
    parameter: ParameterOpt = [],  # noqa: B006
    sandbox: Annotated[SandboxKind | None, typer.Option(help="How steps are isolated.")] = None,
    max_parallel: Annotated[
        int | None, typer.Option(min=1, help="Steps run at once (default: CPU count).")
    ] = None,
    store: StoreOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream step logs.")] = False,
    backend: BackendOpt = Backend.local,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="sagemaker: print the execution ARN and return.")
    ] = False,
    steps: StepsOpt = None,
    from_step: FromOpt = None,
    reference: ReferenceOpt = None,
    refresh: Annotated[
        list[str],
        typer.Option(
            "--refresh",
            metavar="STEP",
            help="Rerun STEP even on a cache hit; repeatable or a comma list.",
        ),
    ] = [],  # noqa: B006
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="No cache hits in this run: every step runs.")
    ] = False,
    skip_unsupported: Annotated[
        bool,
        typer.Option(
            "--skip-unsupported",
            help="Run the steps that can run locally; the others, and the steps after them, "
            "end NotRun.",
        ),
    ] = False,
) -> None:
    """Run the pipeline (locally by default); exit 0 only when the execution Succeeded."""
    params = parse_pairs(parameter)
    choice = StepChoice.parse(steps, from_step, reference)
    if backend is Backend.sagemaker:
        if refresh or no_cache:
            raise UsageError(
                "--refresh and --no-cache apply to local runs; on SageMaker, turn caching off "
                "in the step's CacheConfig"
            )
        run_on_sagemaker(settings(ctx), pipeline, params, no_wait, choice)
        return
    s = settings(ctx).with_overrides(
        sandbox=sandbox.value if sandbox else None, store=store.value if store else None
    )
    run_locally(
        s, pipeline, params, max_parallel, quiet, choice, (refresh, no_cache), skip_unsupported
    )


def run_locally(
    s: Settings,
    pipeline: str | None,
    params: dict[str, str],
    max_parallel: int | None,
    quiet: bool,
    choice: StepChoice | None = None,
    cache: tuple[list[str], bool] = ([], False),
    skip_unsupported: bool = False,
) -> None:
    """Start a local execution, stream it, print the outcome; exit 1 unless it Succeeded.

    ``cache`` is (steps to refresh, no cache at all).
    """
    from sagepipe.cli.live import LiveView
    from sagepipe.engine.caching import CachePolicy
    from sagepipe.engine.factory import build_engine, upload_code
    from sagepipe.engine.sandbox import probe_sandbox

    probe = probe_sandbox(s.sandbox)  # bubblewrap's check runs while the pipeline loads
    try:
        loaded = load_pipeline(pipeline, s)
        policy = CachePolicy.build(loaded.definition, *cache)
        _say_not_runnable(loaded, skip_unsupported)
        steps = [(st.name, st.type) for st in loaded.definition.all_steps()]
        view = LiveView(real_console(console), steps, quiet=quiet)
        engine = build_engine(s, on_line=view.on_line, on_status=view.on_status, probe=probe)
    finally:
        if probe is not None:
            probe.works()  # waited for whatever happened
    selection = None
    if choice is not None and choice.given:
        selection = choice.plan(engine.history, loaded.definition, loaded.name, s.store)
    if loaded.compiled is not None:
        upload_code(loaded.compiled, engine.store)
    prepared = engine.prepare(
        loaded.definition,
        loaded.name,
        params,
        max_parallel,
        selection,
        skip_unsupported=skip_unsupported,
    )
    prepared.cache = policy
    # Said before any step starts, so it is the first line whatever the steps log.
    err.print(
        f"execution [bold]{prepared.info.id}[/] of {escape(loaded.name)} "
        f"({engine.sandbox.name} sandbox, {s.store} store)"
    )
    if selection is not None:
        source = selection.reference.id if selection.reference else "none needed"
        err.print(
            f"selective: runs {', '.join(sorted(selection.selected))}; reference {source}",
            highlight=False,
            markup=False,
        )
        for note in selection.notes:
            err.print(note, highlight=False, markup=False)
    follow_locally(engine, prepared, view, s)


def follow_locally(engine: Engine, prepared: Run, view: Any, s: Settings) -> None:
    """Run a prepared (or resumed) execution with its live view, stop on a signal, then
    print the steps and the outcome; exit 1 unless it Succeeded."""
    from sagepipe.engine.execution import LocalExecution

    execution = LocalExecution(engine, prepared).start()
    try:
        with view, _stop_signals() as stop:
            while not is_terminal(execution.wait(0.1)):
                if stop.is_set():
                    err.print("stopping: killing running steps ...")
                    execution.stop()
                    execution.wait()
                    break
        _finish(execution, prepared.info.pipeline, s)
    finally:
        execution.close()  # the history's connection, once the execution has ended


def _say_not_runnable(loaded: Loaded, skip: bool) -> None:
    """Before anything starts: each step that will not run here, and why (one line each).

    Without ``--skip-unsupported`` the engine refuses the run in one line that names them.
    """
    from sagepipe.engine.engine import RUNNERS
    from sagepipe.engine.unsupported import not_runnable

    for step in not_runnable(loaded.definition, RUNNERS) if skip else []:
        err.print(
            f"not run: '{step.name}' ({step.type}): {step.reason}", highlight=False, markup=False
        )


@contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal, ``kill``) all stop the run.

    The handler only sets an event that the waiting loop reads: an exception raised wherever
    the signal lands could leave a lock of the history held, and the run would never end.
    """
    stop = threading.Event()

    def request(signum: int, frame: object) -> None:
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, request) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _finish(execution: LocalExecution, pipeline: str, s: Settings) -> None:
    from sagepipe.engine.execution import step_results

    desc = execution.describe()
    records = execution.history.steps(execution.execution_id)
    results = {
        r.name: step_results(r, execution.run.definition.step(r.name), execution.engine.store)
        for r in records
    }
    rss = {r.name: int(r.metadata.get("_peak_rss_kb", 0)) for r in records}
    decisions = execution.history.cache_decisions(execution.execution_id)
    title = f"execution {execution.execution_id}"
    entries = with_faults(execution.list_steps(), records)
    print_steps(entries, title, results, rss, decisions)
    print_cache_warnings(decisions)
    status = desc["PipelineExecutionStatus"]
    print_status(status, desc.get("FailureReason"))
    console.print(
        f"logs: s3://{s.bucket}/{LOGS_PREFIX}/{pipeline}/{execution.execution_id}/",
        highlight=False,
        markup=False,
    )
    if status != ExecutionStatus.SUCCEEDED:
        raise typer.Exit(1)


def with_faults(entries: Sequence[Mapping[str, Any]], records: Sequence[Any]) -> list[Any]:
    """Entries whose FailureReason also names the fault kind and the attempts, for the table."""
    faults = {r.name: r.metadata.get("_fault") for r in records}
    out: list[Any] = []
    for entry in entries:
        fault = faults.get(entry["StepName"])
        if fault and entry.get("FailureReason"):
            attempts = entry.get("AttemptCount", 1)
            tries = f", {attempts} attempts" if attempts > 1 else ""
            entry = {**entry, "FailureReason": f"[{fault}{tries}] {entry['FailureReason']}"}
        out.append(entry)
    return out


def print_steps(
    steps: Sequence[Mapping[str, Any]],
    title: str,
    results: dict[str, StepResults],
    rss: dict[str, int] | None = None,
    cache: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """The steps table with metrics and cache decisions, then each model artifact and
    property file."""
    metrics = {name: r.metrics for name, r in results.items()}
    console.print(render.steps_table(steps, title, rss, metrics, cache))
    for name, r in results.items():
        if r.model:
            console.print(f"model ({name}): {r.model}", highlight=False, markup=False)
        for file_name, value in r.property_files.items():
            text = value if isinstance(value, str) else json.dumps(value)
            console.print(f"{name}/{file_name}: {text[:300]}", highlight=False, markup=False)


def print_cache_warnings(decisions: Mapping[str, Mapping[str, Any]]) -> None:
    """Each cache hit whose input data changed since the run it reuses, on stderr."""
    for name, decision in decisions.items():
        for warning in decision.get("Warnings") or ():
            err.print(f"[red]warning[/] ({escape(name)}): {escape(str(warning))}", highlight=False)


def print_status(status: str, reason: str | None) -> None:
    """``status: X`` in colour and the failure reason, escaped."""
    console.print(f"status: [{render.STATUS_STYLE.get(status, '')}]{status}[/]")
    if reason:
        console.print(f"reason: {reason}", highlight=False, markup=False)


def run_on_sagemaker(
    s: Settings,
    pipeline: str | None,
    params: dict[str, str],
    no_wait: bool,
    choice: StepChoice | None = None,
) -> None:
    """Start the deployed pipeline and watch it like a local run."""
    from sagepipe.cloud import executions as ex
    from sagepipe.cloud.client import Clients
    from sagepipe.definition import resolve_parameters

    loaded = load_pipeline(pipeline, s)
    resolve_parameters(loaded.definition, params)  # wrong names or values fail before any cost
    selected = choice.selected(loaded.definition) if choice and choice.given else None
    clients = Clients.from_settings(s)
    selective = None
    if selected is not None:
        source = choice.reference if choice else None
        selective = ex.selective_config(clients, loaded.name, sorted(selected), source)
    arn = ex.start(clients, loaded.name, params, selective=selective)
    if no_wait:
        console.print(arn, highlight=False, markup=False)
        return
    err.print(f"started {arn}", highlight=False, markup=False)
    width = max((len(st.name) for st in loaded.definition.all_steps()), default=4)
    try:
        desc = ex.watch(
            clients,
            arn,
            on_line=lambda step, line: console.print(
                f"{step:<{width}} | {line}", highlight=False, markup=False
            ),
            on_status=lambda step, status: console.print(
                f"{step:<{width}} : {status}", highlight=False, markup=False
            ),
        )
    except KeyboardInterrupt:
        err.print("stopped watching.")
        if typer.confirm("Stop the execution on SageMaker too?", default=False):
            ex.stop(clients, arn)
            err.print("stop requested")
        raise typer.Exit(130) from None
    print_sagemaker_steps(clients, arn)
    status = desc["PipelineExecutionStatus"]
    print_status(status, desc.get("FailureReason"))
    if status != ExecutionStatus.SUCCEEDED:
        raise typer.Exit(1)


def print_sagemaker_steps(clients: Clients, arn: str) -> None:
    """The steps of a SageMaker execution, with training metrics and model artifacts."""
    from sagepipe.cloud import executions as ex
    from sagepipe.engine.execution import StepResults

    steps = ex.list_steps(clients, arn)
    results = {}
    for step in steps:
        job = ex.training_job(clients, step)
        if job is not None:
            results[step["StepName"]] = StepResults(
                {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])},
                {},
                job.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
            )
    print_steps(steps, f"execution {arn.rsplit('/', 1)[-1]}", results)


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command()(run)
