"""Cache predictions for the next SageMaker execution (pure: definitions and parameters in)."""

from __future__ import annotations

import copy
import json
from typing import Any

from sagepipe.cloud.predict import Prediction, predict
from sagepipe.definition import Definition, load, resolve_parameters
from tests.conftest import FIXTURES

BASE: dict[str, Any] = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())
DAY = 86_400.0


def definition(change: Any = None) -> Definition:
    data = copy.deepcopy(BASE)
    if change is not None:
        change(data)
    return load(data)


def step(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["Steps"] if s["Name"] == name)


def by_step(predictions: list[Prediction]) -> dict[str, tuple[bool | None, str]]:
    return {p.step: (p.hit, p.reason) for p in predictions}


def params(d: Definition, **given: Any) -> dict[str, Any]:
    return dict(resolve_parameters(d, given))


def test_every_step_is_predicted_in_run_order() -> None:
    d = definition()
    names = [p.step for p in predict(d, params(d), None, {}, None)]
    assert names == d.graph.order()
    assert set(names) == {s.name for s in d.all_steps()}


def test_without_a_previous_execution_nothing_hits() -> None:
    d = definition()
    got = by_step(predict(d, params(d), None, {}, None))
    assert got["Preprocess"] == (False, "no previous successful execution")
    assert got["Evaluate"] == (False, "caching is off for this step")
    assert got["CheckMse"] == (None, "Condition steps are not cached")
    assert got["MseTooHigh"] == (None, "Fail steps are not cached")


def test_same_definition_and_parameters_hit() -> None:
    d = definition()
    got = by_step(predict(d, params(d), d, params(d), DAY))
    assert got["Preprocess"] == (True, "same inputs as the last successful execution")
    assert got["Train"] == (True, "same inputs as the last successful execution")


def test_a_changed_parameter_misses_and_so_does_what_reads_the_step() -> None:
    d = definition()
    new = params(d, InputData="s3://other/raw")
    got = by_step(predict(d, new, d, params(d), DAY))
    assert got["Preprocess"] == (
        False,
        "changed: parameter InputData s3://sdk-fixtures/data/raw → s3://other/raw",
    )
    assert got["Train"] == (False, "upstream step Preprocess will run")


def test_a_parameter_outside_the_cache_fields_keeps_the_hit() -> None:
    d = definition()
    got = by_step(predict(d, params(d, ProcessingInstanceType="ml.m5.2xlarge"), d, params(d), DAY))
    assert got["Preprocess"][0] is True  # the instance type is not a cache field


def test_a_changed_field_is_named() -> None:
    old = definition()
    new = definition(lambda d: step(d, "Preprocess")["Arguments"]["Environment"].update(MODE="x"))
    got = by_step(predict(new, params(new), old, params(old), DAY))
    assert got["Preprocess"] == (False, "changed: environment MODE fixture → x")


def test_an_old_run_past_expire_after_misses() -> None:
    d = definition()
    got = by_step(predict(d, params(d), d, params(d), 31 * DAY))
    assert got["Preprocess"] == (False, "the previous run is older than ExpireAfter")


def test_a_new_step_misses() -> None:
    def add(data: dict[str, Any]) -> None:
        extra = copy.deepcopy(step(data, "Preprocess"))
        extra["Name"] = "Preprocess2"
        data["Steps"].append(extra)

    old = definition()
    new = definition(add)
    got = by_step(predict(new, params(new), old, params(old), DAY))
    assert got["Preprocess2"] == (False, "new step")
    assert got["Preprocess"][0] is True


def test_inputs_reading_the_execution_id_always_miss() -> None:
    def per_run(data: dict[str, Any]) -> None:
        env = step(data, "Preprocess")["Arguments"]["Environment"]
        env["RUN"] = {"Get": "Execution.PipelineExecutionId"}

    d = definition(per_run)
    got = by_step(predict(d, params(d), d, params(d), DAY))
    assert got["Preprocess"] == (False, "its inputs depend on the execution id")
