"""Which steps a local run leaves NotRun, and why, before anything starts."""

from __future__ import annotations

from typing import Any

from sagepipe.definition import load
from sagepipe.engine.engine import RUNNERS
from sagepipe.engine.unsupported import (
    NOT_RUN,
    not_runnable,
    ready_not_run,
    refusal,
    unsupported_steps,
)

UNSUPPORTED_TYPES = (
    "QualityCheck",
    "ClarifyCheck",
    "EMR",
    "EMRServerless",
    "Lambda",
    "Callback",
    "AutoML",
    "Tuning",
    "Notebook",
)


def step(name: str, kind: str, depends_on: list[str] | None = None) -> dict[str, Any]:
    args = {"ErrorMessage": "stop"} if kind == "Fail" else {}
    out: dict[str, Any] = {"Name": name, "Type": kind, "Arguments": args}
    if depends_on:
        out["DependsOn"] = depends_on
    return out


def definition(steps: list[dict[str, Any]]) -> Any:
    return load({"Version": "2020-12-01", "Parameters": [], "Steps": steps})


def test_every_sagemaker_only_step_type_has_its_reason() -> None:
    d = definition([step(f"s{i}", kind) for i, kind in enumerate(UNSUPPORTED_TYPES)])
    found = unsupported_steps(d, RUNNERS)
    assert [s.type for s in found] == list(UNSUPPORTED_TYPES)
    for s in found:
        assert s.reason.startswith(f"{s.type} ") and "has no local runner" not in s.reason
        assert s.reason.endswith(f"it runs only on SageMaker (locally: {', '.join(RUNNERS)})")
    odd = unsupported_steps(definition([step("x", "Brand-new")]), RUNNERS)
    assert odd[0].reason.startswith("Brand-new has no local runner; it runs only on SageMaker")


def test_the_steps_after_an_unsupported_one_are_listed_with_why_in_run_order() -> None:
    d = definition(
        [
            step("after", "Fail", ["check"]),
            step("check", "QualityCheck"),
            step("alone", "Fail"),
            step("later", "Fail", ["after", "notify"]),
            step("notify", "Lambda"),
        ]
    )
    got = {s.name: s.reason for s in not_runnable(d, RUNNERS)}
    assert set(got) == {"check", "after", "notify", "later"}
    assert got["after"] == "depends on 'check', which does not run locally"
    assert got["later"] == "depends on 'after', 'notify', which do not run locally"
    names = [s.name for s in not_runnable(d, RUNNERS)]
    assert names.index("check") < names.index("after") < names.index("later")


def test_a_ready_step_runs_unless_it_or_an_upstream_step_is_not_run() -> None:
    unsupported = {"check": "QualityCheck ..."}
    assert ready_not_run("check", [], {}, unsupported) == "QualityCheck ..."
    assert ready_not_run("b", ["a"], {"a": "Succeeded"}, unsupported) is None
    assert ready_not_run(
        "b", ["a", "check"], {"a": "Succeeded", "check": NOT_RUN}, unsupported
    ) == ("depends on 'check', which does not run locally")


def test_the_refusal_is_one_line_naming_each_step_why_and_the_flag() -> None:
    d = definition([step("check", "QualityCheck"), step("notify", "Lambda")])
    text = refusal(unsupported_steps(d, RUNNERS))
    assert "\n" not in text
    assert text.startswith(
        "steps 'check' (QualityCheck runs SageMaker Model Monitor's analyzer container), "
        "'notify' (Lambda invokes an AWS Lambda function) cannot run locally"
    )
    assert text.endswith(
        "run the other steps with `sagepipe run --skip-unsupported`, which marks these and the "
        "steps after them NotRun"
    )
    one = refusal(unsupported_steps(definition([step("x", "EMR")]), RUNNERS))
    assert one.startswith("step 'x' (EMR runs on an Amazon EMR cluster) cannot")
