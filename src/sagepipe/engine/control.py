"""Steps that run no container: Condition, Fail, Model and RegisterModel (local registry)."""

from __future__ import annotations

import json
import time
from typing import Any

from sagepipe.engine.context import StepContext, StepOutcome
from sagepipe.engine.evaluation import ConditionError, evaluate, render
from sagepipe.errors import SagepipeError


def run_condition(ctx: StepContext) -> StepOutcome:
    """Evaluate every condition (all must hold); the outcome picks IfSteps or ElseSteps.

    Values that cannot be compared (a non-numeric string against a number) fail the step, as
    on SageMaker, rather than picking a branch.
    """
    try:
        outcome = all(evaluate(c, ctx.scope) for c in ctx.step.arguments["Conditions"])
    except ConditionError as exc:
        ctx.log.write(str(exc))
        return StepOutcome("Failed", failure_reason=str(exc))
    text = "True" if outcome else "False"
    ctx.log.write(f"conditions evaluated to {text}")
    return StepOutcome(
        "Succeeded",
        {"Outcome": text},
        {"Condition": {"Outcome": text}},
        branch="if" if outcome else "else",
    )


def run_fail(ctx: StepContext) -> StepOutcome:
    """Fail the execution with the step's ErrorMessage."""
    message = render(ctx.arguments.get("ErrorMessage", ""))
    ctx.log.write(message)
    return StepOutcome("Failed", {}, {"Fail": {"ErrorMessage": message}}, message)


def run_register_model(ctx: StepContext) -> StepOutcome:
    """Record a model package version in the local registry."""
    args = ctx.arguments
    group = str(args.get("ModelPackageGroupName", ""))
    if not group:
        return StepOutcome("Failed", failure_reason="ModelPackageGroupName is missing")
    containers = (args.get("InferenceSpecification") or {}).get("Containers", [])
    first = containers[0] if containers else {}
    metrics = _metrics(ctx, args.get("ModelMetrics") or {})
    approval = str(args.get("ModelApprovalStatus", "PendingManualApproval"))
    prefix = ctx.execution.arn_for("model-package", "").rstrip("/")
    arn, version = ctx.history.register_model(
        group,
        prefix,
        approval,
        first.get("ModelDataUrl"),
        first.get("Image"),
        metrics,
        ctx.execution.id,
        ctx.step.name,
    )
    ctx.log.write(f"registered {group} version {version} ({approval}): {first.get('ModelDataUrl')}")
    props = {
        **args,
        "ModelPackageName": f"{group}/{version}",
        "ModelPackageGroupName": group,
        "ModelPackageVersion": version,
        "ModelPackageArn": arn,
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": approval,
        "CreationTime": time.time(),
    }
    return StepOutcome("Succeeded", props, {"RegisterModel": {"Arn": arn}})


def _metrics(ctx: StepContext, model_metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, entries in model_metrics.items():
        if not isinstance(entries, dict):
            continue
        for name, source in entries.items():
            uri = source.get("S3Uri") if isinstance(source, dict) else None
            if not uri:
                continue
            try:
                out[f"{section}.{name}"] = json.loads(ctx.store.get(str(uri)))
            except (SagepipeError, ValueError) as exc:
                out[f"{section}.{name}"] = {"S3Uri": uri, "error": str(exc)}
    return out


def run_model(ctx: StepContext) -> StepOutcome:
    """Record a model (CreateModel) so that later steps can read its properties."""
    name = f"{ctx.execution.pipeline}-{ctx.step.name}-{ctx.execution.id}".lower()[:63]
    arn = ctx.execution.arn_for("model", name)
    props = {**ctx.arguments, "ModelName": name, "ModelArn": arn, "CreationTime": time.time()}
    ctx.log.write(f"created model {name}")
    return StepOutcome("Succeeded", props, {"Model": {"Arn": arn}})
