"""Executions on SageMaker: start, inspect, stop, retry, and watch them with their job logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, cast

from sagepipe.cloud.client import Clients
from sagepipe.core.expressions import render
from sagepipe.core.status import is_terminal
from sagepipe.definition.function_payloads import is_function_step
from sagepipe.errors import ExecutionError, UsageError
from sagepipe.records import record
from sagepipe.storage.aws import aws_errors, is_not_found

if TYPE_CHECKING:
    from mypy_boto3_logs.type_defs import GetLogEventsRequestTypeDef
    from mypy_boto3_sagemaker.type_defs import (
        DescribeTrainingJobResponseTypeDef,
        ListPipelineExecutionStepsRequestTypeDef,
        PipelineExecutionStepTypeDef,
        PipelineExecutionSummaryTypeDef,
    )

LOG_GROUPS = {
    "ProcessingJob": "/aws/sagemaker/ProcessingJobs",
    "TrainingJob": "/aws/sagemaker/TrainingJobs",
}


def start(
    clients: Clients,
    name: str,
    parameters: Mapping[str, object],
    display_name: str | None = None,
    selective: Mapping[str, Any] | None = None,
) -> str:
    """Start an execution; returns its ARN. Parameter values are sent as strings.

    ``selective`` is a SelectiveExecutionConfig (see :func:`selective_config`).
    """
    # Not StartPipelineExecutionRequestTypeDef: it requires ClientRequestToken, which boto3 fills.
    request: dict[str, Any] = {
        "PipelineName": name,
        "PipelineParameters": [{"Name": k, "Value": render(v)} for k, v in parameters.items()],
    }
    if display_name:
        request["PipelineExecutionDisplayName"] = display_name
    if selective is not None:
        request["SelectiveExecutionConfig"] = dict(selective)
    with aws_errors(f"start pipeline {name}", "sagemaker"):
        resp = clients.sagemaker.start_pipeline_execution(**request)
    return str(resp["PipelineExecutionArn"])


def selective_config(
    clients: Clients, name: str, steps: list[str], reference: str | None
) -> dict[str, Any]:
    """A SelectiveExecutionConfig running ``steps``; without ``reference``, the pipeline's
    newest execution is the reference (as the SDK's ``reference_latest_execution``)."""
    if reference is not None and not reference.startswith("arn:"):
        raise UsageError(
            f"--reference {reference!r}: on SageMaker give the execution's ARN "
            "('sagepipe executions list --backend sagemaker' shows them)"
        )
    if reference is None:
        newest = list_executions(clients, name, limit=1)
        reference = newest[0]["PipelineExecutionArn"] if newest else None
    config: dict[str, Any] = {"SelectedSteps": [{"StepName": step} for step in steps]}
    if reference is not None:
        config["SourcePipelineExecutionArn"] = reference
    return config


def describe(clients: Clients, arn: str) -> dict[str, Any]:
    """DescribePipelineExecution."""
    with aws_errors("describe execution", "sagemaker"):
        resp = clients.sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def list_executions(
    clients: Clients, name: str, limit: int = 50
) -> list[PipelineExecutionSummaryTypeDef]:
    """The newest executions of pipeline ``name``."""
    with aws_errors(f"list executions of {name}", "sagemaker"):
        resp = clients.sagemaker.list_pipeline_executions(
            PipelineName=name,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=min(limit, 100),
        )
    return list(resp.get("PipelineExecutionSummaries", []))


def list_steps(clients: Clients, arn: str) -> list[PipelineExecutionStepTypeDef]:
    """ListPipelineExecutionSteps, every page."""
    steps: list[PipelineExecutionStepTypeDef] = []
    token: str | None = None
    while True:
        kwargs: ListPipelineExecutionStepsRequestTypeDef = {
            "PipelineExecutionArn": arn,
            "SortOrder": "Descending",
        }
        if token:
            kwargs["NextToken"] = token
        with aws_errors("list execution steps", "sagemaker"):
            resp = clients.sagemaker.list_pipeline_execution_steps(**kwargs)
        steps.extend(resp.get("PipelineExecutionSteps", []))
        token = resp.get("NextToken")
        if not token:
            return steps


def stop(clients: Clients, arn: str) -> None:
    """StopPipelineExecution."""
    with aws_errors("stop execution", "sagemaker"):
        # boto3 fills the idempotency token (ClientRequestToken) that the stubs call required
        clients.sagemaker.stop_pipeline_execution(PipelineExecutionArn=arn)  # type: ignore[call-arg]


def retry(clients: Clients, arn: str) -> str:
    """RetryPipelineExecution: run the failed steps of a failed execution again."""
    with aws_errors("retry execution", "sagemaker"):
        # boto3 fills the idempotency token (ClientRequestToken) that the stubs call required
        resp = clients.sagemaker.retry_pipeline_execution(PipelineExecutionArn=arn)  # type: ignore[call-arg]
    return str(resp["PipelineExecutionArn"])


def job_of(step: PipelineExecutionStepTypeDef) -> tuple[str, str] | None:
    """(log group, job name) of a processing or training step, from its Metadata."""
    metadata = step.get("Metadata") or {}
    arns = {
        "ProcessingJob": metadata.get("ProcessingJob", {}).get("Arn"),
        "TrainingJob": metadata.get("TrainingJob", {}).get("Arn"),
    }
    for kind, group in LOG_GROUPS.items():
        arn = arns[kind]
        if arn:
            return group, str(arn).rsplit("/", 1)[-1]
    return None


def training_job(
    clients: Clients, step: PipelineExecutionStepTypeDef
) -> DescribeTrainingJobResponseTypeDef | None:
    """DescribeTrainingJob of a training step (None for other steps)."""
    arn = (step.get("Metadata") or {}).get("TrainingJob", {}).get("Arn")
    if not arn:
        return None
    with aws_errors("describe training job", "sagemaker"):
        return clients.sagemaker.describe_training_job(TrainingJobName=str(arn).rsplit("/", 1)[-1])


def function_output(clients: Clients, arn: str, step: str) -> tuple[str, str]:
    """Where a SageMaker execution's function step left its return value: the S3OutputPath
    and the TrainingImage of its training job (a cache hit's: the job it reused).

    Raises:
        ExecutionError: no such step, one that failed (its FailureReason) or has not
            succeeded, or one that is not a ``@step`` function.
    """
    entries = {e["StepName"]: e for e in list_steps(clients, arn)}
    entry = entries.get(step)
    if entry is None:
        names = ", ".join(sorted(entries)) or "none"
        raise ExecutionError(f"the execution ran no step '{step}'; its steps: {names}")
    status = entry.get("StepStatus", "")
    if status == "Failed":
        raise ExecutionError(f"step '{step}' failed: {entry.get('FailureReason', '')}")
    job = training_job(clients, entry)
    if job is None or not is_function_step(cast("dict[str, Any]", job)):
        raise ExecutionError(
            f"step '{step}' is not a @step function: only function steps have a return value"
        )
    if status != "Succeeded":
        raise ExecutionError(f"step '{step}' is {status}: it has no return value yet")
    return job["OutputDataConfig"]["S3OutputPath"], job["AlgorithmSpecification"].get(
        "TrainingImage", ""
    )


@record(frozen=False)
class LogFollower:
    """Follows the CloudWatch log streams of each job (streams start with the job name)."""

    clients: Clients
    tokens: dict[str, str | None] = field(default_factory=dict)

    def poll(self, step: str, group: str, job: str, emit: Callable[[str, str], None]) -> None:
        """Print new events of every stream of ``job``, prefixed by ``step``."""
        from botocore.exceptions import ClientError

        with aws_errors(f"logs of {job}", "sagemaker"):
            try:
                streams = self.clients.logs.describe_log_streams(
                    logGroupName=group, logStreamNamePrefix=job
                ).get("logStreams", [])
            except ClientError as exc:
                if is_not_found(exc.response.get("Error", {})):
                    return  # the group or stream appears once the job has started
                raise
        for stream in streams:
            name = stream["logStreamName"]
            kwargs: GetLogEventsRequestTypeDef = {
                "logGroupName": group,
                "logStreamName": name,
                "startFromHead": True,
            }
            known = self.tokens.get(name)
            if known:
                kwargs["nextToken"] = known
            while True:
                with aws_errors(f"logs of {job}", "sagemaker"):
                    resp = self.clients.logs.get_log_events(**kwargs)
                for event in resp.get("events", []):
                    emit(step, str(event.get("message", "")).rstrip("\n"))
                token = resp.get("nextForwardToken")
                if not token or token == kwargs.get("nextToken"):
                    break
                kwargs["nextToken"] = token
                self.tokens[name] = token


def watch(
    clients: Clients,
    arn: str,
    on_line: Callable[[str, str], None],
    on_status: Callable[[str, str], None],
    interval: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the execution ends: step statuses, job logs; returns the final description."""
    follower = LogFollower(clients)
    seen: dict[str, str] = {}
    while True:
        desc = describe(clients, arn)
        steps = list_steps(clients, arn)
        for step in reversed(steps):
            name, status = step["StepName"], step["StepStatus"]
            if seen.get(name) != status:
                seen[name] = status
                on_status(name, status)
            job = job_of(step)
            if job is not None:
                follower.poll(name, *job, on_line)
        if is_terminal(desc["PipelineExecutionStatus"]):
            return desc
        sleep(interval)
