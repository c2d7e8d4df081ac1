"""Deploy: upload the code plan (content-addressed, skipping what is there), then create or
update the pipeline with exactly the definition text sagepipe prints and runs locally."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any

from sagepipe.cloud.client import Clients
from sagepipe.cloud.predict import Prediction, predict, resolved_inputs
from sagepipe.cloud.service_checks import check_for_service
from sagepipe.config import Settings
from sagepipe.core.json_types import JSON
from sagepipe.core.status import ExecutionStatus
from sagepipe.definition import Definition, Upload, load, resolve_parameters
from sagepipe.definition.service_limits import MAX_INLINE_DEFINITION_BYTES
from sagepipe.errors import SageMakerError, SagepipeError
from sagepipe.records import record
from sagepipe.storage import ObjectStore, put_missing
from sagepipe.storage.aws import aws_errors, is_not_found

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import DescribePipelineResponseTypeDef


@record(frozen=False)
class DeployResult:
    """What a deploy did (or, for a dry run, would do)."""

    pipeline_arn: str
    created: bool
    uploaded: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    definition_location: str = "inline"
    problems: list[str] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)


def _exists(clients: Clients, name: str) -> DescribePipelineResponseTypeDef | None:
    from botocore.exceptions import ClientError

    with aws_errors(f"describe pipeline {name}", "sagemaker"):
        try:
            return clients.sagemaker.describe_pipeline(PipelineName=name)
        except ClientError as exc:
            if is_not_found(exc.response.get("Error", {})):
                return None
            raise


def deploy(
    definition: Definition,
    uploads: Sequence[Upload],
    name: str,
    clients: Clients,
    store: ObjectStore,
    bucket: str,
    role_arn: str | None,
    tags: Mapping[str, str] | None = None,
    max_parallel: int | None = None,
    dry_run: bool = False,
    parameters: Mapping[str, JSON] | None = None,
) -> DeployResult:
    """Create or update pipeline ``name``; a dry run only checks, plans and predicts."""
    problems = check_for_service(definition, name, role_arn)
    if problems and not dry_run:
        raise SageMakerError("; ".join(problems))
    existing = _exists(clients, name)
    missing, present = put_missing(store, uploads, dry_run)
    text = definition.dumps()
    result = DeployResult(
        pipeline_arn=str(existing["PipelineArn"]) if existing else "",
        created=existing is None,
        uploaded=missing,
        already_present=present,
        problems=problems,
    )
    if dry_run:
        result.predictions = predict_next(clients, name, definition, parameters or {}, store)
        return result
    # Not CreatePipelineRequestTypeDef: it requires ClientRequestToken, which boto3 fills.
    request: dict[str, Any] = {"PipelineName": name, "RoleArn": role_arn}
    if len(text.encode()) <= MAX_INLINE_DEFINITION_BYTES:
        request["PipelineDefinition"] = text
    else:
        digest = hashlib.sha256(text.encode()).hexdigest()
        key = f"app/{name}/definitions/{digest}.json"
        store.ensure_bucket(bucket)
        store.put(f"s3://{bucket}/{key}", text.encode())
        request["PipelineDefinitionS3Location"] = {"Bucket": bucket, "ObjectKey": key}
        result.definition_location = f"s3://{bucket}/{key}"
    if max_parallel:
        request["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": max_parallel}
    if existing is None:
        if tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        with aws_errors(f"create pipeline {name}", "sagemaker"):
            resp = clients.sagemaker.create_pipeline(**request)
    else:
        with aws_errors(f"update pipeline {name}", "sagemaker"):
            resp = clients.sagemaker.update_pipeline(**request)
        if tags:
            with aws_errors("tag pipeline", "sagemaker"):
                clients.sagemaker.add_tags(
                    ResourceArn=resp["PipelineArn"],
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                )
    result.pipeline_arn = str(resp["PipelineArn"])
    return result


def predict_next(
    clients: Clients,
    name: str,
    definition: Definition,
    parameters: Mapping[str, JSON],
    store: ObjectStore | None = None,
) -> list[Prediction]:
    """Cache predictions against the last Succeeded execution of ``name`` on SageMaker.

    With ``store``, each predicted hit whose input objects were modified after that
    execution started names them: SageMaker keys its cache on the arguments, not the data.
    """
    new_params = resolve_parameters(definition, parameters)
    last = _last_succeeded(clients, name)
    if last is None:
        return predict(definition, new_params, None, {}, None)
    predictions = _predict_against(clients, definition, new_params, last)
    if store is None:
        return predictions
    return [
        replace(p, data_changed=_modified_since(store, definition, p.step, new_params, last[1]))
        if p.hit
        else p
        for p in predictions
    ]


def _modified_since(
    store: ObjectStore, definition: Definition, step: str, params: Mapping[str, Any], since: float
) -> tuple[str, ...]:
    """The input objects of ``step`` modified after ``since`` (as far as listing tells)."""
    out: list[str] = []
    for uri, kind in resolved_inputs(definition, step, params):
        try:
            found = [store.head(uri)] if kind == "ManifestFile" else list(store.list(uri))
        except SagepipeError:
            continue
        out += [
            o.uri for o in found if o is not None and not o.is_folder and o.last_modified > since
        ]
    return tuple(out)


def _predict_against(
    clients: Clients,
    definition: Definition,
    new_params: Mapping[str, Any],
    last: tuple[str, float],
) -> list[Prediction]:
    arn, created = last
    with aws_errors("describe the last execution's definition", "sagemaker"):
        text = clients.sagemaker.describe_pipeline_definition_for_execution(
            PipelineExecutionArn=arn
        )["PipelineDefinition"]
    old = load(text)
    with aws_errors("list the last execution's parameters", "sagemaker"):
        listed = clients.sagemaker.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=arn
        ).get("PipelineParameters", [])
    old_params = {p.name: p.default_value for p in old.parameters}
    for item in listed:
        try:
            old_params[item["Name"]] = old.parameter(item["Name"]).convert(item["Value"])
        except SagepipeError:  # a parameter the old definition lacks, or a value it refuses
            old_params[item["Name"]] = item["Value"]
    return predict(definition, new_params, old, old_params, time.time() - created)


def _last_succeeded(clients: Clients, name: str) -> tuple[str, float] | None:
    from botocore.exceptions import ClientError

    with aws_errors(f"list executions of {name}", "sagemaker"):
        try:
            summaries = clients.sagemaker.list_pipeline_executions(
                PipelineName=name, SortBy="CreationTime", SortOrder="Descending", MaxResults=50
            ).get("PipelineExecutionSummaries", [])
        except ClientError as exc:
            if is_not_found(exc.response.get("Error", {})):
                return None  # not deployed yet: nothing to compare with
            raise
    for summary in summaries:
        if summary.get("PipelineExecutionStatus") == ExecutionStatus.SUCCEEDED.value:
            return str(summary["PipelineExecutionArn"]), summary["StartTime"].timestamp()
    return None


def deploy_from_settings(
    definition: Definition,
    uploads: Sequence[Upload],
    name: str,
    settings: Settings,
    role_arn: str | None,
    **kwargs: Any,
) -> DeployResult:
    """``deploy`` with clients and the S3 store built from ``settings``."""
    from sagepipe.storage.s3 import S3Store

    return deploy(
        definition,
        uploads,
        name,
        Clients.from_settings(settings),
        S3Store.from_settings(settings),
        settings.bucket,
        role_arn,
        **kwargs,
    )
