"""The Get and JsonGet Path parsers, and the did-you-mean helper."""

from __future__ import annotations

import pytest

from sagepipe.core.references import GetRef, parse_get, parse_json_path
from sagepipe.core.suggest import did_you_mean
from sagepipe.errors import PipelineError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Parameters.InputData", GetRef("Parameters", "InputData")),
        ("Execution.PipelineExecutionId", GetRef("Execution", "PipelineExecutionId")),
        (
            "Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri",
            GetRef("Steps", "Prep", ".ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"),
        ),
        ("Steps.Train.FinalMetricDataList[0]", GetRef("Steps", "Train", ".FinalMetricDataList[0]")),
        ("Steps.Eval.PropertyFiles.Report", GetRef("Steps", "Eval", property_file="Report")),
        ("Steps.Cond.Outcome", GetRef("Steps", "Cond", ".Outcome")),
    ],
)
def test_parse_get(text: str, expected: GetRef) -> None:
    assert parse_get(text) == expected


@pytest.mark.parametrize("text", ["Params.X", "Parameters.", "Execution.", "Steps.", "", "steps.X"])
def test_parse_get_refuses_other_roots(text: str) -> None:
    with pytest.raises(
        PipelineError, match=r"a Get starts with Parameters\., Execution\. or Steps\."
    ):
        parse_get(text)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("accuracy", ("accuracy",)),
        ("metrics.accuracy.value", ("metrics", "accuracy", "value")),
        ("metrics['a.b'].value", ("metrics", "a.b", "value")),
        ('metrics["a.b"].value', ("metrics", "a.b", "value")),
        ("metrics['it\\'s'].value", ("metrics", "it's", "value")),
        ("metrics['a]b[c']", ("metrics", "a]b[c")),
        ("items[0].name", ("items", 0, "name")),
        ("items[-1]", ("items", -1)),
        ("matrix[1][2]", ("matrix", 1, 2)),
        ("$.metrics.mse", ("metrics", "mse")),
        ("$['metrics']['mse']", ("metrics", "mse")),
        (
            "regression_metrics.mse.standard_deviation",
            ("regression_metrics", "mse", "standard_deviation"),
        ),
        ("a.b:c-d", ("a", "b:c-d")),
    ],
)
def test_parse_json_path(path: str, parts: tuple[str | int, ...]) -> None:
    assert parse_json_path(path) == parts


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "is empty"),
        ("$", "is empty"),
        ("metrics.", "ends with '.'"),
        ("metrics..mse", "expected a name"),
        (".metrics", "expected a name"),
        ("metrics['mse", "not closed"),
        ("metrics['mse'", "closed by ']'"),
        ("metrics[mse]", "use [0] for an item"),
        ("metrics[*]", "use [0] for an item"),
        ("metrics['a']b", "expected '.' or '['"),
        ("$metrics", "expected '.' or '['"),
    ],
)
def test_parse_json_path_names_the_problem(path: str, why: str) -> None:
    with pytest.raises(PipelineError, match="JsonGet Path") as info:
        parse_json_path(path)
    assert why in str(info.value)


def test_did_you_mean() -> None:
    assert did_you_mean("trian", ["train", "test"]) == " (did you mean train?)"
    assert did_you_mean("zzz", ["train", "test"]) == ""
    assert did_you_mean("x", []) == ""
    hint = did_you_mean(
        "ml.m5.xlarg", ["ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.large", "ml.m5.4xlarge"]
    )
    assert hint.startswith(" (did you mean ml.m5.xlarge")
    assert hint.count(",") <= 2  # three names at most


def test_json_get_checks_its_path_when_built() -> None:
    from sagepipe import JsonGet

    assert JsonGet("Eval", "Report", "metrics['a.b'].value").json_path == "metrics['a.b'].value"
    with pytest.raises(PipelineError, match=r"JsonGet Path 'metrics\.\.mse' is invalid"):
        JsonGet("Eval", "Report", "metrics..mse")
