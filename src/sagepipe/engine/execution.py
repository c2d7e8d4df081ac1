"""A handle on a local execution, shaped like the SageMaker SDK's PipelineExecution."""

from __future__ import annotations

import json
import threading
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from sagepipe.definition import StepDef
from sagepipe.engine.engine import Engine, Run
from sagepipe.engine.history import ExecutionRecord, History, StepRecord
from sagepipe.errors import SagepipeError
from sagepipe.records import record
from sagepipe.storage import ObjectStore, join_uri


@record
class StepResults:
    """What a finished step produced besides its outputs: metrics and property files."""

    metrics: dict[str, Any] = field(default_factory=dict)
    property_files: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


def step_results(record: StepRecord, step: StepDef | None, store: ObjectStore) -> StepResults:
    """The metrics (FinalMetricDataList), property files and model artifact of a stored step.

    A property file that cannot be read is shown as the reason, not raised: inspecting an
    execution should not fail because an output was deleted since.
    """
    props = record.properties
    metrics = {
        str(m.get("MetricName")): m.get("Value")
        for m in props.get("FinalMetricDataList") or []
        if isinstance(m, dict)
    }
    files: dict[str, Any] = {}
    if step is not None and record.status == "Succeeded":
        outputs = {
            o.get("OutputName"): o.get("S3Output", {}).get("S3Uri")
            for o in props.get("ProcessingOutputConfig", {}).get("Outputs", [])
        }
        for entry in step.property_files or ():
            name = str(entry.get("PropertyFileName"))
            base = outputs.get(entry.get("OutputName"))
            if not base:
                continue
            uri = join_uri(str(base), str(entry.get("FilePath", "")))
            try:
                files[name] = json.loads(store.get(uri))
            except (SagepipeError, ValueError) as exc:
                files[name] = f"<unreadable: {exc}>"
    model = props.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    for container in props.get("InferenceSpecification", {}).get("Containers", []):
        model = model or container.get("ModelDataUrl")
    if record.status != "Succeeded":
        model = None
    return StepResults(metrics, files, model)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def describe_execution(record: ExecutionRecord) -> dict[str, Any]:
    """A DescribePipelineExecution response for a stored execution."""
    out: dict[str, Any] = {
        "PipelineArn": record.arn.split("/execution/")[0],
        "PipelineExecutionArn": record.arn,
        "PipelineExecutionDisplayName": f"execution-{record.id}",
        "PipelineExecutionStatus": record.status,
        "CreationTime": _time(record.created),
        "LastModifiedTime": _time(record.modified),
        "PipelineExperimentConfig": {"ExperimentName": record.pipeline, "TrialName": record.id},
        "ParallelismConfiguration": {"MaxParallelExecutionSteps": record.max_parallel or 1},
    }
    if record.failure_reason:
        out["FailureReason"] = record.failure_reason
    if record.selective:
        out["SelectiveExecutionConfig"] = record.selective
    return out


def describe_steps(steps: list[StepRecord]) -> list[dict[str, Any]]:
    """ListPipelineExecutionSteps entries, newest first as the service returns them."""
    out = []
    for s in sorted(steps, key=lambda r: (r.started or 0, r.name), reverse=True):
        entry: dict[str, Any] = {"StepName": s.name, "StepStatus": s.status}
        if s.attempts:  # 0: taken from a reference execution, not run here
            entry["AttemptCount"] = s.attempts
        if s.display_name:
            entry["StepDisplayName"] = s.display_name
        if s.started is not None:
            entry["StartTime"] = _time(s.started)
        if s.ended is not None:
            entry["EndTime"] = _time(s.ended)
        if s.failure_reason:
            entry["FailureReason"] = s.failure_reason
        metadata = {k: v for k, v in s.metadata.items() if not k.startswith("_")}
        if metadata:
            entry["Metadata"] = metadata
        if s.cache_source:
            entry["CacheHitResult"] = {"SourcePipelineExecutionArn": s.cache_source}
        if s.metadata.get("_selective_source"):
            source = s.metadata["_selective_source"]
            entry["SelectiveExecutionResult"] = {"SourcePipelineExecutionArn": source}
        out.append(entry)
    return out


class LocalExecution:
    """An execution started on this machine: ``wait``, ``describe``, ``list_steps``, ``stop``."""

    def __init__(self, engine: Engine, run: Run) -> None:
        self.engine = engine
        self.run = run
        self.arn = run.info.arn
        self.execution_id = run.info.id
        self._thread = threading.Thread(
            target=self._execute, name=f"sagepipe-{run.info.id}", daemon=True
        )
        self._status: str | None = None
        self._error: BaseException | None = None
        # An Event rather than Thread.join: a join interrupted by Ctrl-C can return early later.
        self._done = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch_stop_requests, name=f"sagepipe-stop-{run.info.id}", daemon=True
        )

    @property
    def history(self) -> History:
        """The history this execution is recorded in."""
        return self.engine.history

    def start(self) -> LocalExecution:
        """Start running in a background thread, and heed stops asked for from elsewhere."""
        self._thread.start()
        self._watcher.start()
        return self

    def _watch_stop_requests(self, interval: float = 0.3) -> None:
        """``sagepipe executions stop`` in another process sets a flag in the history."""
        while not self._done.wait(interval):
            if self.history.stop_requested(self.execution_id):
                self.stop()
                return

    def _execute(self) -> None:
        try:
            self._status = self.engine.execute(self.run)
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
            self.engine.history.finish_execution(
                self.execution_id, "Failed", f"internal error: {exc!r}"
            )
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the execution ends (or ``timeout``); returns its status."""
        self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return self.status

    @property
    def status(self) -> str:
        """The current PipelineExecutionStatus."""
        return self.history.execution(self.execution_id).status

    def describe(self) -> dict[str, Any]:
        """The DescribePipelineExecution shape."""
        return describe_execution(self.history.execution(self.execution_id))

    def list_steps(self) -> list[dict[str, Any]]:
        """The ListPipelineExecutionSteps entries."""
        return describe_steps(self.history.steps(self.execution_id))

    def stop(self) -> None:
        """Stop the running steps; the execution ends Stopped."""
        self.engine.stop(self.run)

    def close(self) -> bool:
        """Once the execution has ended: close the history's connection (the engine's, no
        longer usable) after the stop watcher is done with it. Returns whether it closed."""
        if not self._done.is_set():
            return False  # still running: its threads use the history
        self._thread.join()
        self._watcher.join()
        self.history.close()
        return True
