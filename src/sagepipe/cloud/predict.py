"""Predict which steps of the next SageMaker execution will be cache hits.

SageMaker reuses a step when its cache-relevant request fields (DESIGN: Processing:
AppSpecification, Environment, ProcessingInputs; Training: AlgorithmSpecification, ...) equal
those of a previous successful run within ExpireAfter. Here those fields are computed for the
definition about to run and for the last successful execution's definition and parameters,
with step references kept symbolic: a step reading an upstream step that will run again is a
miss too, since that step's outputs change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagepipe.core.graph import scan
from sagepipe.definition import Definition
from sagepipe.definition.cache import (
    cache_fields,
    describe_changes,
    expire_seconds,
    explain_miss,
    step_inputs,
)
from sagepipe.errors import DefinitionError
from sagepipe.records import record

# Execution variables whose value differs on every run (the pipeline's name and ARN do not).
_PER_RUN = frozenset(
    {"PipelineExecutionId", "PipelineExecutionArn", "StartDateTime", "CurrentDateTime"}
)


@record
class Prediction:
    """The predicted cache outcome of one step."""

    step: str
    hit: bool | None  # None: the step type never caches
    reason: str
    data_changed: tuple[str, ...] = ()  # a hit's input objects modified since the last run


def resolved_inputs(
    definition: Definition, name: str, params: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(S3 URI, data type) of each input of step ``name`` known before the run (a URI that
    reads another step's output is known only when that step has run)."""
    step = definition.step(name)
    arguments = _resolve(dict(step.arguments), params)
    return [(uri, kind) for _, uri, kind in step_inputs(step.type, arguments)]


def _resolve(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Get"} and isinstance(value["Get"], str):
            get = value["Get"]
            if get.startswith("Parameters."):
                return params.get(get.removeprefix("Parameters."))
            return value
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def _reads(value: Any) -> set[str]:
    """Upstream steps ``value`` reads, plus "@execution" when it reads a per-run variable."""
    refs = scan(value)
    out = {ref.target for ref in refs.steps}
    if any(name in _PER_RUN for name, _ in refs.execution):
        out.add("@execution")
    return out


def predict(
    new: Definition,
    new_params: Mapping[str, Any],
    old: Definition | None,
    old_params: Mapping[str, Any],
    old_age_seconds: float | None,
) -> list[Prediction]:
    """Predicted cache hits for every step of ``new`` in run order."""
    out: dict[str, Prediction] = {}
    for name in new.graph.order():
        step = new.step(name)
        fields = cache_fields(step.type, step.arguments)
        if fields is None:
            out[name] = Prediction(name, None, f"{step.type} steps are not cached")
            continue
        if not (step.cache_config or {}).get("Enabled"):
            out[name] = Prediction(name, False, "caching is off for this step")
            continue
        if old is None:
            out[name] = Prediction(name, False, "no previous successful execution")
            continue
        try:
            previous = old.step(name)
        except DefinitionError:
            out[name] = Prediction(name, False, "new step")
            continue
        window = expire_seconds((step.cache_config or {}).get("ExpireAfter"))
        if window is not None and old_age_seconds is not None and old_age_seconds > window:
            out[name] = Prediction(name, False, "the previous run is older than ExpireAfter")
            continue
        mine = _resolve(fields, new_params)
        theirs = _resolve(cache_fields(previous.type, previous.arguments), old_params)
        if mine != theirs:
            changes = explain_miss(
                step.type, step.arguments, theirs or {}, mine, old_params, new_params
            )
            changed = describe_changes(changes) or ", ".join(
                sorted(k for k in mine if mine.get(k) != (theirs or {}).get(k))
            )
            out[name] = Prediction(name, False, f"changed: {changed}")
            continue
        reads = _reads(mine)
        if "@execution" in reads:
            out[name] = Prediction(name, False, "its inputs depend on the execution id")
            continue
        rerun = sorted(r for r in reads if r in out and out[r].hit is False)
        if rerun:
            out[name] = Prediction(name, False, f"upstream step {', '.join(rerun)} will run")
            continue
        out[name] = Prediction(name, True, "same inputs as the last successful execution")
    return list(out.values())
