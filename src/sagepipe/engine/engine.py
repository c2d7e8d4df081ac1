"""The Engine: schedules a definition's steps, in parallel where the graph allows.

``Engine(settings, store, history, sandbox, images).prepare(definition, ...)`` records an
execution and returns its handle; ``execute`` runs it. A failed step lets running steps
finish and starts nothing new; a stop kills every running process group.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import string
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagepipe.bucket_layout import log_key
from sagepipe.config import Settings
from sagepipe.definition import Definition, StepDef, load, resolve_parameters
from sagepipe.definition.retry_policies import retry_policies
from sagepipe.engine.caching import CacheDecision, CachePolicy, decide, likely_hit
from sagepipe.engine.context import (
    ACCOUNT,
    ExecutionInfo,
    Processes,
    StepContext,
    StepLog,
    StepOutcome,
)
from sagepipe.engine.environments import StepEnvironments, definition_images
from sagepipe.engine.evaluation import Scope
from sagepipe.engine.history import History
from sagepipe.engine.prewarm import Prewarmer, Warm
from sagepipe.engine.publishing import Publication
from sagepipe.engine.publishing import settle as settle_publication
from sagepipe.engine.retries import Attempts, error_fault, job_fault, mark_fault
from sagepipe.engine.runners import RUNNERS, Runner
from sagepipe.engine.sandbox import Sandbox
from sagepipe.engine.unsupported import NOT_RUN, ready_not_run, refusal, unsupported_steps
from sagepipe.errors import DefinitionError, ExecutionError, SagepipeError
from sagepipe.records import record
from sagepipe.storage import ObjectStore, join_uri

if TYPE_CHECKING:  # a selective run or a retry loads it
    from sagepipe.engine.rerun import Selection

log = logging.getLogger(__name__)
_ALPHABET = string.ascii_lowercase + string.digits
_RANDOM = random.SystemRandom()  # os.urandom, as secrets.choice uses (without its imports)
LineListener = Callable[[str, str], None]
JOB_TYPES = frozenset({"Processing", "Training", "Transform"})  # steps that run a process
ENGINE_LINES = "images"  # the listener's "step" for lines about the run's environments
StatusListener = Callable[[str, str, StepOutcome | None], None]


def new_id(length: int = 12) -> str:
    """A SageMaker-style id: lowercase letters and digits."""
    return "".join(_RANDOM.choice(_ALPHABET) for _ in range(length))


@record(frozen=False)
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
    failing: threading.Event = field(default_factory=threading.Event)  # a step has failed
    attempts: dict[str, int] = field(default_factory=dict)  # attempts made before a retry
    cache: CachePolicy = field(default_factory=CachePolicy)  # --refresh, --no-cache
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
        selection: Selection | None = None,
        skip_unsupported: bool = False,
    ) -> Run:
        """Check parameters and step types, record the execution, return its run state.

        With ``selection`` only the selected steps run; the others they need are taken from
        the selection's reference execution (engine/rerun.py). A step type with no local
        runner stops here unless ``skip_unsupported``: then that step and those downstream of
        it end NotRun (see ``engine/unsupported.py``).
        """
        unsupported = _check_runnable(definition, skip_unsupported)
        values = resolve_parameters(definition, parameters)
        self._prepare_environments(definition, values)
        parallel = max_parallel or self.settings.max_parallel or os.cpu_count() or 1
        run = self._new_run(definition, pipeline_name, values, parallel, new_id(), time.time())
        run.unsupported = {s.name: s.reason for s in unsupported}
        text = definition.compact()
        self.history.save_pipeline(pipeline_name, run.info.pipeline_arn, text)
        self.history.create_execution(
            run.info.id,
            pipeline_name,
            run.info.arn,
            values,
            text,
            parallel,
            self.sandbox.name,
            self.settings.store,
        )
        if selection is not None:
            from sagepipe.engine.rerun import apply_selection

            apply_selection(self.history, run, selection)
            for step in selection.taken:
                self._notify(step.name, "Succeeded", None)
        return run

    def resume(self, execution_id: str) -> Run:
        """RetryPipelineExecution, locally: the same execution runs its failed, stopped and
        never reached steps again; its succeeded steps stay and feed them.

        Raises:
            ExecutionError: the execution is not Failed or Stopped (or is resumed elsewhere).
        """
        from sagepipe.engine.rerun import check_retryable, restore_run

        record = self.history.execution(execution_id)
        check_retryable(record)
        definition = load(record.definition)
        _check_runnable(definition)
        self._prepare_environments(definition, record.parameters)
        parallel = record.max_parallel or self.settings.max_parallel or os.cpu_count() or 1
        run = self._new_run(
            definition, record.pipeline, record.parameters, parallel, record.id, record.created
        )
        if not self.history.resume_execution(record.id):
            check_retryable(self.history.execution(record.id))
            raise ExecutionError(f"execution {record.id} is being retried already")
        restore_run(run, self.history.steps(record.id), record.selective)
        for name, status in run.status.items():
            self._notify(name, status, None)
        return run

    def _new_run(
        self,
        definition: Definition,
        pipeline_name: str,
        values: Mapping[str, Any],
        parallel: int,
        execution_id: str,
        started: float,
    ) -> Run:
        region = self.settings.region
        pipeline_arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{pipeline_name.lower()}"
        info = ExecutionInfo(
            execution_id,
            f"{pipeline_arn}/execution/{execution_id}",
            pipeline_name,
            pipeline_arn,
            region,
        )
        now = datetime.fromtimestamp(started, UTC).isoformat()
        scope = Scope(
            parameters=dict(values),
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineExecutionArn": info.arn,
                "PipelineName": pipeline_name,
                "PipelineArn": pipeline_arn,
                "StartDateTime": now,
                "CurrentDateTime": datetime.now(UTC).isoformat(),
            },
        )
        run = Run(info, definition, scope, parallel)
        scope.read_property_file = lambda step, name: self._property_file(run, step, name)
        scope.read_uri = self.store.get
        try:  # once per run: the step logs go there
            self.store.ensure_bucket(self.settings.bucket)
        except SagepipeError as exc:
            log.warning("bucket %s for step logs: %s", self.settings.bucket, exc)
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
            if likely_hit(self.history, (run.info.pipeline, run.info.id), step, ups, run.cache):
                continue  # a hit starts no process
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
        from sagepipe.engine.jobs import stop_all

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
            run.failing.set()

    def _run_step(self, run: Run, name: str) -> StepOutcome:
        step = run.definition.step(name)
        info = run.info
        workspace = self._workspace(run, name)
        warm = run.warm.pop(name, None)
        log_path = self.settings.home / "logs" / info.id / f"{name}.log"
        step_log = StepLog(log_path, name, self.on_line)
        outcome: StepOutcome
        key: str | None = None
        try:
            arguments = _resolve_arguments(run.scope, step)
            cached = self._cache_hit(run, step, arguments, step_log)
            key = cached.key
            attempt = run.attempts.get(name, 0) + 1
            self.history.start_step(info.id, name, step.type, step.display_name, key, attempt)
            self._notify(name, "Executing", None)
            if cached.outcome is not None:
                outcome = cached.outcome
                if warm is not None:
                    warm.discard()
                    warm = None
            else:
                given, warm = warm, None
                outcome = self._attempts(run, step, arguments, step_log, given)
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

    def _attempts(
        self,
        run: Run,
        step: StepDef,
        arguments: dict[str, Any],
        step_log: StepLog,
        warm: Warm | None,
    ) -> StepOutcome:
        """Run the step, and again as its RetryPolicies allow (engine/retries.py).

        Each attempt is a new job (name, workspace, publication), as SageMaker starts a new
        job per attempt; only the first may use the warm start.
        """
        info, name = run.info, step.name
        first = run.attempts.get(name, 0) + 1
        if first > 1:
            step_log.write(f"attempt {first}: the execution was retried")

        def attempt(number: int) -> tuple[StepOutcome, str]:
            nonlocal warm
            if number > first:
                shutil.rmtree(self._workspace(run, name), ignore_errors=True)
            given, warm = warm, None
            return self._attempt(run, step, arguments, step_log, given)

        attempts = Attempts(
            retry_policies(name, step.retry_policies),
            run.processes.stopping,
            run.failing,
            step_log.write,
            lambda number: self.history.update_step(info.id, name, attempts=number),
            first,
        )
        try:
            outcome, fault = attempts.run(attempt)
        finally:
            if warm is not None:
                warm.discard()
        return mark_fault(outcome, fault)

    def _attempt(
        self,
        run: Run,
        step: StepDef,
        arguments: dict[str, Any],
        step_log: StepLog,
        warm: Warm | None,
    ) -> tuple[StepOutcome, str]:
        """One attempt: a job of its own; returns its outcome and fault kind."""
        workspace = self._workspace(run, step.name)
        if step.type in JOB_TYPES or self.settings.keep_workspace:
            # a job's folders; a condition, fail or model step runs no job and uses none
            workspace.mkdir(parents=True, exist_ok=True)
        job_name = f"pipelines-{run.info.id}-{step.name}-{new_id(10)}"[:63].rstrip("-")
        ctx = StepContext(
            step,
            arguments,
            run.scope,
            run.info,
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
            run.warmed.add(step.name)
        publication = Publication(
            workspace.parent / f".publish-{step.name}",
            run.processes.stopping,
            functools.partial(self._record_publishing, run.info.id, step.name),
        )
        ctx.publication = publication
        try:
            outcome = settle_publication(ctx, RUNNERS[step.type](ctx))
        except SagepipeError as exc:
            publication.discard()
            step_log.write(f"error: {exc}")
            return StepOutcome("Failed", failure_reason=str(exc)), error_fault(exc)
        finally:
            if warm is not None and warm.proc.poll() is None:
                warm.discard()  # the runner failed before handing it the command
        job = ctx.job_result
        code = None if job is None else job.returncode
        return outcome, job_fault(outcome, code, bool(job is not None and job.timed_out))

    def _cache_hit(
        self, run: Run, step: StepDef, arguments: Mapping[str, Any], step_log: StepLog
    ) -> CacheDecision:
        """The step's cache decision (engine/caching.py), said in its log; a hit carries the
        outcome it reuses."""
        decision = decide(
            self.history,
            self.store,
            (run.info.pipeline, run.info.id),
            step,
            arguments,
            run.scope.parameters,
            run.cache,
        )
        if decision.result:
            step_log.write(f"cache {decision.summary()}")
        for warning in decision.warnings:
            step_log.write(f"warning: {warning}")
        return decision

    def _record_publishing(self, execution_id: str, name: str, plan: dict[str, Any]) -> None:
        self.history.update_step(execution_id, name, publishing=plan)

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


def _check_runnable(definition: Definition, skip_unsupported: bool = False) -> list[Any]:
    """Every step has a local runner (or ``skip_unsupported``) and valid RetryPolicies, or one
    line says which not; returns the steps that will not run."""
    unsupported = unsupported_steps(definition, RUNNERS)
    if unsupported and not skip_unsupported:
        raise DefinitionError(refusal(unsupported))
    for step in definition.all_steps():
        retry_policies(step.name, step.retry_policies)
    return list(unsupported)


def _resolve_arguments(scope: Scope, step: StepDef) -> dict[str, Any]:
    if step.type == "Condition":
        return dict(step.arguments)
    return scope.resolve_arguments(step.arguments)


__all__ = ["RUNNERS", "Engine", "Run", "Runner", "new_id", "resolve_parameters"]
