"""The Engine: schedules a definition's steps, in parallel where the graph allows.

``Engine(settings, store, history, sandbox, images).prepare(definition, ...)`` records an
execution and returns its handle; ``execute`` runs it. A failed step lets running steps
finish and starts nothing new; a stop kills every running process group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import string
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sagepipe.bucket_layout import log_key
from sagepipe.config import Settings
from sagepipe.definition import Definition, StepDef, resolve_parameters
from sagepipe.definition.cache import cache_key, cache_since
from sagepipe.engine.context import (
    ACCOUNT,
    ExecutionInfo,
    Processes,
    StepContext,
    StepLog,
    StepOutcome,
)
from sagepipe.engine.control import run_condition, run_fail, run_model, run_register_model
from sagepipe.engine.environments import StepEnvironments, definition_images
from sagepipe.engine.evaluation import Scope
from sagepipe.engine.history import History
from sagepipe.engine.jobs import stop_all
from sagepipe.engine.prewarm import Prewarmer, Warm
from sagepipe.engine.processing import run_processing
from sagepipe.engine.publishing import Publication
from sagepipe.engine.publishing import settle as settle_publication
from sagepipe.engine.sandbox import Sandbox
from sagepipe.engine.training import run_training
from sagepipe.engine.transform import run_transform
from sagepipe.engine.unsupported import NOT_RUN, ready_not_run, refusal, unsupported_steps
from sagepipe.errors import DefinitionError, ExecutionError, SagepipeError
from sagepipe.storage import ObjectStore, join_uri

log = logging.getLogger(__name__)
Runner = Callable[[StepContext], StepOutcome]
RUNNERS: dict[str, Runner] = {
    "Processing": run_processing,
    "Training": run_training,
    "Condition": run_condition,
    "Fail": run_fail,
    "RegisterModel": run_register_model,
    "Model": run_model,
    "CreateModel": run_model,
    "Transform": run_transform,
}
_ALPHABET = string.ascii_lowercase + string.digits
LineListener = Callable[[str, str], None]
ENGINE_LINES = "images"  # the listener's "step" for lines about the run's environments
StatusListener = Callable[[str, str, StepOutcome | None], None]


def new_id(length: int = 12) -> str:
    """A SageMaker-style id: lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class Run:
    """The mutable state of one execution while it runs."""

    info: ExecutionInfo
    definition: Definition
    scope: Scope
    max_parallel: int
    processes: Processes = field(default_factory=Processes)
    status: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    failure: str | None = None
    warm: dict[str, Warm] = field(default_factory=dict)
    warmed: set[str] = field(default_factory=set)  # steps that ran on a warm start
    unsupported: dict[str, str] = field(default_factory=dict)  # step -> why it will not run


class Engine:
    """Runs definitions locally with the collaborators it is given."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        history: History,
        sandbox: Sandbox,
        images: StepEnvironments | None = None,
        on_line: LineListener | None = None,
        on_status: StatusListener | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.history = history
        self.sandbox = sandbox
        self.images = images or StepEnvironments(settings)
        self.on_line = on_line
        self.on_status = on_status
        self.prewarmer = (
            Prewarmer(settings, store, sandbox, self.images) if settings.prewarm else None
        )

    def prepare(
        self,
        definition: Definition,
        pipeline_name: str,
        parameters: Mapping[str, Any],
        max_parallel: int | None = None,
        skip_unsupported: bool = False,
    ) -> Run:
        """Check parameters and step types, record the execution, return its run state.

        A step type with no local runner stops here unless ``skip_unsupported``: then that
        step and those downstream of it end NotRun (see ``engine/unsupported.py``).
        """
        unsupported = unsupported_steps(definition, RUNNERS)
        if unsupported and not skip_unsupported:
            raise DefinitionError(refusal(unsupported))
        values = resolve_parameters(definition, parameters)
        self._prepare_environments(definition, values)
        execution_id = new_id()
        region = self.settings.region
        pipeline_arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{pipeline_name.lower()}"
        info = ExecutionInfo(
            execution_id,
            f"{pipeline_arn}/execution/{execution_id}",
            pipeline_name,
            pipeline_arn,
            region,
        )
        now = datetime.now(UTC).isoformat()
        scope = Scope(
            parameters=values,
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineExecutionArn": info.arn,
                "PipelineName": pipeline_name,
                "PipelineArn": pipeline_arn,
                "StartDateTime": now,
                "CurrentDateTime": now,
            },
        )
        parallel = max_parallel or self.settings.max_parallel or os.cpu_count() or 1
        run = Run(info, definition, scope, parallel)
        run.unsupported = {s.name: s.reason for s in unsupported}
        scope.read_property_file = lambda step, name: self._property_file(run, step, name)
        scope.read_uri = self.store.get
        try:  # once per run: the step logs go there
            self.store.ensure_bucket(self.settings.bucket)
        except SagepipeError as exc:
            log.warning("bucket %s for step logs: %s", self.settings.bucket, exc)
        text = definition.dumps()
        self.history.save_pipeline(pipeline_name, pipeline_arn, text)
        self.history.create_execution(
            execution_id, pipeline_name, info.arn, values, text, parallel, self.sandbox.name
        )
        return run

    def _prepare_environments(self, definition: Definition, values: Mapping[str, Any]) -> None:
        """Build every step's image environment before any step runs (once; then reused)."""
        scope = Scope(parameters=dict(values), execution={})
        images = definition_images(definition, scope.resolve)
        self.images.prepare(images, self._say)

    def _say(self, line: str) -> None:
        """A line about the run as a whole (environment builds), before any step starts."""
        if self.on_line is not None:
            self.on_line(ENGINE_LINES, line)
        else:
            log.info("%s", line)

    def execute(self, run: Run) -> str:
        """Run every step that the graph and the condition outcomes select; return the status."""
        graph = run.definition.graph
        order = graph.order()
        futures: dict[Future[StepOutcome], str] = {}
        try:
            with ThreadPoolExecutor(max_workers=run.max_parallel) as pool:
                while True:
                    if run.failure is None and not run.processes.stopping.is_set():
                        for name in order:
                            if len(futures) >= run.max_parallel:
                                break
                            if name in run.status or name in run.skipped:
                                continue
                            if self._not_run(run, name):
                                continue
                            if all(run.status.get(u) == "Succeeded" for u in graph.upstream[name]):
                                run.status[name] = "Starting"
                                futures[pool.submit(self._run_step, run, name)] = name
                        self._prewarm(run, order)
                    else:
                        self._discard_warm(run)
                    if not futures:
                        break
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        name = futures.pop(fut)
                        self._settle(run, name, fut.result())
        finally:
            self._discard_warm(run)
            with contextlib.suppress(OSError):  # only when every step cleaned up after itself
                (self.settings.home / "work" / run.info.id).rmdir()
        status = self._final_status(run)
        self.history.finish_execution(run.info.id, status, run.failure)
        return status

    def _not_run(self, run: Run, name: str) -> bool:
        """Record a ready step that cannot run locally, or follows one, as NotRun."""
        ups = run.definition.graph.upstream[name]
        if not all(run.status.get(u) in ("Succeeded", NOT_RUN) for u in ups):
            return False
        why = ready_not_run(name, ups, run.status, run.unsupported)
        if why is None:
            return False
        step = run.definition.step(name)
        run.status[name] = NOT_RUN
        self.history.start_step(run.info.id, name, step.type, step.display_name, None)
        self.history.update_step(
            run.info.id, name, status=NOT_RUN, ended=time.time(), failure_reason=why
        )
        self._notify(name, NOT_RUN, StepOutcome(NOT_RUN, failure_reason=why))
        return True

    def _prewarm(self, run: Run, order: list[str]) -> None:
        """Start the steps about to become ready (every upstream running or done)."""
        if self.prewarmer is None:
            return
        graph = run.definition.graph
        for name in order:
            if len(run.warm) >= run.max_parallel:
                return
            if name in run.status or name in run.skipped or name in run.warm:
                continue
            ups = graph.upstream[name]
            states = [run.status.get(u) for u in ups]
            if not ups or not all(st in ("Starting", "Executing", "Succeeded") for st in states):
                continue
            if all(st == "Succeeded" for st in states):
                continue  # it starts right away anyway
            if any(run.definition.step(u).type == "Condition" for u in ups):
                continue  # the branch may not be taken
            step = run.definition.step(name)
            if not self.prewarmer.eligible(step):
                continue
            warm = self.prewarmer.start(step, self._workspace(run, name))
            if warm is not None:
                run.warm[name] = warm

    def _discard_warm(self, run: Run) -> None:
        for name in list(run.warm):
            run.warm.pop(name).discard()

    def _workspace(self, run: Run, name: str) -> Path:
        return self.settings.home / "work" / run.info.id / name

    def stop(self, run: Run) -> None:
        """Stop every running step (their process groups); the execution ends Stopped."""
        self.history.set_execution_status(run.info.id, "Stopping")
        stop_all(run.processes)

    def _final_status(self, run: Run) -> str:
        if run.processes.stopping.is_set():
            return "Stopped"
        if run.failure is not None:
            return "Failed"
        return "Succeeded"

    def _settle(self, run: Run, name: str, outcome: StepOutcome) -> None:
        run.status[name] = outcome.status
        step = run.definition.step(name)
        if outcome.status == "Succeeded":
            run.scope.steps[name] = outcome.properties
            if outcome.branch is not None:
                not_taken = step.else_steps if outcome.branch == "if" else step.if_steps
                run.skipped.update(s.name for s in not_taken)
        elif outcome.status == "Failed" and run.failure is None:
            run.failure = f"Step '{name}' failed with message: {outcome.failure_reason}"

    def _run_step(self, run: Run, name: str) -> StepOutcome:
        step = run.definition.step(name)
        info = run.info
        job_name = f"pipelines-{info.id}-{name}-{new_id(10)}"[:63].rstrip("-")
        workspace = self._workspace(run, name)
        warm = run.warm.pop(name, None)
        log_path = self.settings.home / "logs" / info.id / f"{name}.log"
        step_log = StepLog(log_path, name, self.on_line)
        outcome: StepOutcome
        key: str | None = None
        try:
            arguments = _resolve_arguments(run.scope, step)
            key = cache_key(step.type, arguments)
            hit = self._cache_hit(run, step, key)
            self.history.start_step(info.id, name, step.type, step.display_name, key)
            self._notify(name, "Executing", None)
            if hit is not None:
                step_log.write(f"cache hit: reusing the run of execution {hit[0]}")
                outcome = hit[1]
                if warm is not None:
                    warm.discard()
                    warm = None
            else:
                workspace.mkdir(parents=True, exist_ok=True)
                ctx = StepContext(
                    step,
                    arguments,
                    run.scope,
                    info,
                    job_name,
                    workspace,
                    self.store,
                    self.sandbox,
                    self.images,
                    step_log,
                    self.history,
                    self.settings,
                    run.processes,
                    warm,
                )
                if warm is not None:
                    run.warmed.add(name)
                ctx.publication = Publication(
                    workspace.parent / f".publish-{name}", run.processes.stopping
                )
                try:
                    outcome = settle_publication(ctx, RUNNERS[step.type](ctx))
                finally:
                    if warm is not None and warm.proc.poll() is None:
                        warm.discard()  # the runner failed before handing it the command
                    warm = None
        except SagepipeError as exc:
            if warm is not None:
                warm.discard()
            self.history.start_step(info.id, name, step.type, step.display_name, key)
            outcome = StepOutcome("Failed", failure_reason=str(exc))
            step_log.write(f"error: {exc}")
        except Exception as exc:  # a bug in sagepipe: keep the run going, report it
            log.exception("step %s crashed", name)
            self.history.start_step(info.id, name, step.type, step.display_name, key)
            outcome = StepOutcome("Failed", failure_reason=f"internal error: {exc!r}")
        text = step_log.close()
        self._store_log(run, name, log_path)
        self.history.update_step(
            info.id,
            name,
            status=outcome.status,
            ended=time.time(),
            failure_reason=outcome.failure_reason,
            metadata=outcome.metadata,
            properties=outcome.properties,
            cache_source=outcome.metadata.get("_cache_source"),
            log=text,
        )
        if not self.settings.keep_workspace:
            shutil.rmtree(workspace, ignore_errors=True)
        self._notify(name, outcome.status, outcome)
        return outcome

    def _cache_hit(
        self, run: Run, step: StepDef, key: str | None
    ) -> tuple[str, StepOutcome] | None:
        since = cache_since(step.cache_config)
        if key is None or since is None:
            return None
        record = self.history.cache_hit(run.info.pipeline, step.name, key, since)
        if record is None:
            return None
        source = self.history.execution(record.execution_id).arn
        metadata = {k: v for k, v in record.metadata.items() if not k.startswith("_")}
        metadata["_cache_source"] = source
        return record.execution_id, StepOutcome("Succeeded", record.properties, metadata)

    def _store_log(self, run: Run, name: str, path: Path) -> None:
        uri = f"s3://{self.settings.bucket}/{log_key(run.info.pipeline, run.info.id, name)}"
        try:
            self.store.put_file(uri, path)
        except SagepipeError as exc:
            log.warning("could not store the log of step %s at %s: %s", name, uri, exc)

    def _notify(self, name: str, status: str, outcome: StepOutcome | None) -> None:
        if self.on_status is not None:
            self.on_status(name, status, outcome)

    def _property_file(self, run: Run, step_name: str, file_name: str) -> Any:
        step = run.definition.step(step_name)
        entry = step.property_file(file_name)
        props = run.scope.steps.get(step_name)
        if props is None:
            raise ExecutionError(f"step '{step_name}' has not run; its property files are empty")
        outputs = props.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for out in outputs:
            if out.get("OutputName") == entry["OutputName"]:
                uri = join_uri(str(out["S3Output"]["S3Uri"]), str(entry["FilePath"]))
                try:
                    return json.loads(self.store.get(uri))
                except ValueError as exc:
                    raise ExecutionError(f"property file {uri} is not JSON: {exc}") from None
        raise ExecutionError(f"step '{step_name}' has no output '{entry['OutputName']}'")


def _resolve_arguments(scope: Scope, step: StepDef) -> dict[str, Any]:
    if step.type == "Condition":
        return dict(step.arguments)
    return scope.resolve_arguments(step.arguments)


__all__ = ["Engine", "Run", "new_id", "resolve_parameters"]
