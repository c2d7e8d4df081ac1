"""The run-time evaluator: Get, Std:Join, Std:JsonGet, property walks and conditions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagepipe.core.properties import PropertyPath
from sagepipe.engine.evaluation import ConditionError, Scope, evaluate, json_path, walk
from sagepipe.errors import ExecutionError

PREP = {
    "ProcessingOutputConfig": {
        "Outputs": [
            {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/train"}},
            {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/test"}},
        ]
    },
    "ProcessingJobStatus": "Completed",
}
TRAIN = {
    "FinalMetricDataList": [{"MetricName": "val:acc", "Value": 0.91}],
    "ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"},
    "HyperParameters": {"epochs": "3"},
}
REPORT = {"metrics": {"a.b": {"value": 0.5}, "mse": {"value": 12.5}}, "items": [1, 2, 3]}


def scope(**parameters: Any) -> Scope:
    return Scope(
        parameters={"Threshold": 0.8, "Name": "run", "Flag": True, **parameters},
        execution={"PipelineExecutionId": "abc123def456"},
        steps={"Prep": PREP, "Train": TRAIN},
        read_property_file=lambda step, name: REPORT if (step, name) == ("Eval", "Report") else {},
        read_uri=lambda uri: json.dumps({"uri": uri, "n": [7]}).encode(),
    )


def test_get_reads_parameters_execution_and_step_properties() -> None:
    s = scope()
    assert s.resolve({"Get": "Parameters.Threshold"}) == 0.8
    assert s.resolve({"Get": "Execution.PipelineExecutionId"}) == "abc123def456"
    got = s.resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"})
    assert got == "s3://b/test"
    assert s.resolve({"Get": "Steps.Prep.ProcessingOutputConfig.Outputs[0].OutputName"}) == "train"
    assert s.resolve({"Get": "Steps.Train.FinalMetricDataList['val:acc'].Value"}) == 0.91
    assert s.resolve({"Get": "Steps.Train.HyperParameters['epochs']"}) == "3"


@pytest.mark.parametrize(
    ("get", "message"),
    [
        ("Parameters.Nope", "unknown parameter 'Nope'"),
        ("Execution.Nope", "unknown execution variable 'Nope'"),
        ("Steps.Later.ModelArtifacts", "step 'Later' has not run"),
        ("Steps.Prep.ProcessingOutputConfig.Outputs['val'].S3Output", "no item named 'val'"),
        ("Steps.Prep.ProcessingOutputConfig.Outputs[5]", "index 5 is out of range"),
        ("Steps.Prep.FailureReason", "property 'FailureReason' has no value"),
        ("Params.X", "a Get starts with"),
        ("Steps.Prep.PropertyFiles.Report", "read it with Std:JsonGet"),
    ],
)
def test_get_failures_are_execution_errors(get: str, message: str) -> None:
    with pytest.raises(ExecutionError, match=message.replace("[", r"\[").replace("(", r"\(")):
        scope().resolve({"Get": get})


def test_resolve_walks_nested_values_and_keeps_plain_dicts() -> None:
    value = {
        "A": [{"Get": "Parameters.Name"}, 1, None],
        "B": {"Get": "Parameters.Flag", "Other": 1},  # two keys: not an expression
    }
    resolved = scope().resolve(value)
    assert resolved == {"A": ["run", 1, None], "B": {"Get": "Parameters.Flag", "Other": 1}}


def test_resolve_arguments_resolves_each_field() -> None:
    args = {"Environment": {"RUN": {"Get": "Parameters.Name"}}, "RoleArn": "arn"}
    assert scope().resolve_arguments(args) == {"Environment": {"RUN": "run"}, "RoleArn": "arn"}


def test_join_renders_values_as_the_service_does() -> None:
    join = {"Std:Join": {"On": "/", "Values": ["s3:/", {"Get": "Parameters.Name"}, True, 3, 0.5]}}
    assert scope().resolve(join) == "s3://run/true/3/0.5"
    assert scope().resolve({"Std:Join": {"Values": ["a", "b"]}}) == "ab"


def test_json_get_over_a_property_file_with_a_dotted_bracket_key() -> None:
    spec = {
        "PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"},
        "Path": "metrics['a.b'].value",
    }
    assert scope().resolve({"Std:JsonGet": spec}) == 0.5


def test_json_get_over_an_s3_uri() -> None:
    spec = {"S3Uri": {"Std:Join": {"On": "/", "Values": ["s3://b", "x.json"]}}, "Path": "n[0]"}
    assert scope().resolve({"Std:JsonGet": spec}) == 7


def test_json_get_needs_a_property_files_get() -> None:
    spec = {"PropertyFile": {"Get": "Steps.Eval.ModelArtifacts"}, "Path": "a"}
    with pytest.raises(ExecutionError, match="is not a PropertyFiles Get"):
        scope().resolve({"Std:JsonGet": spec})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metrics.mse.value", 12.5),
        ("metrics['a.b'].value", 0.5),
        ('metrics["a.b"]["value"]', 0.5),
        ("$.metrics.mse.value", 12.5),
        ("items[2]", 3),
        ("items[-1]", 3),
    ],
)
def test_json_path_reads_the_document(path: str, value: Any) -> None:
    assert json_path(REPORT, path) == value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("metrics.rmse.value", "has no value at 'rmse'"),
        ("metrics.a.b.value", "has no value at 'a'"),
        ("items[3]", "has no value at '3'"),
        ("items.first", "has no value at 'first'"),
        ("metrics[0]", "has no value at '0'"),
        ("metrics['mse", "is invalid at character 9"),
    ],
)
def test_json_path_failures(path: str, message: str) -> None:
    with pytest.raises(ExecutionError, match=message.replace("[", r"\[")):
        json_path(REPORT, path)


def test_walk_follows_a_parsed_path() -> None:
    path = PropertyPath.parse(".ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")
    assert walk(PREP, path, "x") == "s3://b/train"


def cmp(kind: str, left: Any, right: Any) -> dict[str, Any]:
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(
    ("condition", "outcome"),
    [
        (cmp("GreaterThan", 2, 1), True),
        (cmp("GreaterThan", 1, 1), False),
        (cmp("GreaterThanOrEqualTo", 1, 1.0), True),
        (cmp("LessThan", {"Get": "Parameters.Threshold"}, 0.9), True),
        (cmp("LessThanOrEqualTo", "0.8", {"Get": "Parameters.Threshold"}), True),
        (cmp("GreaterThan", "10", "9"), True),  # numeric strings compare as numbers
        (cmp("GreaterThan", "b", "a"), True),  # other strings compare as text
        (cmp("Equals", 1, 1.0), True),
        (cmp("Equals", "1.0", 1), True),
        (cmp("Equals", "abc", 1), False),
        (cmp("Equals", {"Get": "Parameters.Flag"}, "true"), True),
        (cmp("Equals", True, False), False),
        (cmp("Equals", "run", {"Get": "Parameters.Name"}), True),
        ({"Type": "In", "QueryValue": 2, "Values": [1, 2.0]}, True),
        ({"Type": "In", "QueryValue": "c", "Values": ["a", "b"]}, False),
        ({"Type": "Not", "Condition": cmp("Equals", 1, 2)}, True),
        ({"Type": "Or", "Conditions": [cmp("Equals", 1, 2), cmp("Equals", 2, 2)]}, True),
        ({"Type": "Or", "Conditions": [cmp("Equals", 1, 2)]}, False),
    ],
)
def test_conditions(condition: dict[str, Any], outcome: bool) -> None:
    assert evaluate(condition, scope()) is outcome


@pytest.mark.parametrize(
    ("left", "right", "shown"),
    [
        ("abc", 0.5, "cannot compare 'abc' (String) with 0.5 (Float)"),
        (0.5, "abc", "cannot compare 0.5 (Float) with 'abc' (String)"),
        (True, 1, "cannot compare true (Boolean) with 1 (Integer)"),
        (None, 1, "cannot compare null (null) with 1 (Integer)"),
        ({"Get": "Parameters.Name"}, {"Get": "Parameters.Threshold"}, "'run' (String) with 0.8"),
    ],
)
def test_an_ordering_of_a_non_number_fails_the_condition(left: Any, right: Any, shown: str) -> None:
    with pytest.raises(ConditionError) as info:
        evaluate(cmp("GreaterThanOrEqualTo", left, right), scope())
    message = str(info.value)
    assert message.startswith("ClientError: Failed to evaluate condition GreaterThanOrEqualTo: ")
    assert shown in message
    assert message.endswith("GreaterThanOrEqualTo compares numbers")


def test_a_json_get_string_compared_with_a_number_fails_the_condition() -> None:
    report = {"metrics": {"mse": {"value": "n/a"}}}
    s = Scope({}, {}, read_property_file=lambda step, name: report)
    left = {
        "Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"},
            "Path": "metrics.mse.value",
        }
    }
    with pytest.raises(ConditionError, match=r"'n/a' \(String\) with 6\.0 \(Float\)"):
        evaluate(cmp("LessThanOrEqualTo", left, 6.0), s)


@pytest.mark.parametrize(
    "condition",
    [
        {"Type": "Between", "LeftValue": 1, "RightValue": 2},
        {"Type": "Not", "Condition": 3},
        {"Type": "Or", "Conditions": {}},
        {"Type": "In", "QueryValue": 1, "Values": 1},
    ],
)
def test_malformed_conditions_fail_the_condition(condition: dict[str, Any]) -> None:
    with pytest.raises(ConditionError, match=r"^ClientError: Failed to evaluate condition"):
        evaluate(condition, scope())
