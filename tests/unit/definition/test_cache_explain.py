"""Why a step missed the cache: the field-level comparison of two runs (pure)."""

from __future__ import annotations

from typing import Any

from sagepipe.definition.cache import describe_changes, explain_miss, field_changes

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def processing(code: str, uri: str, args: list[Any], env: dict[str, Any]) -> dict[str, Any]:
    return {
        "AppSpecification": {
            "ImageUri": IMAGE,
            "ContainerEntrypoint": ["python3", f"/opt/ml/processing/input/code/{code}"],
            "ContainerArguments": args,
        },
        "Environment": env,
        "ProcessingInputs": [
            {"InputName": "data", "S3Input": {"S3Uri": uri, "LocalPath": "/opt/ml/processing/d"}},
            {
                "InputName": "code",
                "S3Input": {"S3Uri": f"s3://b/app/p/code/abc/{code}", "LocalPath": "/c"},
            },
        ],
    }


def test_parameters_are_named_old_to_new() -> None:
    unresolved = processing("a.py", "s3://b/in", ["--k", {"Get": "Parameters.K"}], {})
    old = processing("a.py", "s3://b/in", ["--k", "1"], {})
    new = processing("a.py", "s3://b/in", ["--k", "2"], {})
    changes = explain_miss("Processing", unresolved, old, new, {"K": 1, "J": 0}, {"K": 2, "J": 5})
    assert describe_changes(changes) == "parameter K 1 → 2"


def test_script_image_environment_and_input_are_named() -> None:
    old = processing("a.py", "s3://b/in", [], {"A": "1", "B": "x"})
    new = processing("b.py", "s3://b/other", [], {"A": "2", "C": "y"})
    new["AppSpecification"]["ImageUri"] = IMAGE.replace("1.2-1", "1.0-1")
    text = describe_changes(explain_miss("Processing", new, old, new, {}, {}))
    assert "script b.py changed" in text
    assert "input data s3://b/in → s3://b/other" in text
    assert "environment A 1 → 2" in text and "environment B removed (was x)" in text
    assert "environment C added (y)" in text
    assert "image " in text and "1.0-1" in text


def test_an_input_from_an_upstream_step_says_the_step_ran_again() -> None:
    ref = {"Get": "Steps.prep.ProcessingOutputConfig.Outputs['o'].S3Output.S3Uri"}
    unresolved = processing("a.py", ref, [], {})  # type: ignore[arg-type]
    old = processing("a.py", "s3://b/out/e1/prep/o", [], {})
    new = processing("a.py", "s3://b/out/e2/prep/o", [], {})
    text = describe_changes(explain_miss("Processing", unresolved, old, new, {}, {}))
    assert text == "input data: step prep ran again"


def test_training_hyperparameters_and_program() -> None:
    def training(program: str, hps: dict[str, str]) -> dict[str, Any]:
        return {
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "HyperParameters": {
                "sagemaker_program": f'"{program}"',
                "sagemaker_submit_directory": f'"s3://b/code/{program}.tar.gz"',
                **hps,
            },
        }

    old, new = training("train.py", {"epochs": "1"}), training("train2.py", {"epochs": "3"})
    changes = field_changes("Training", old, new)
    assert [c.text() for c in changes] == [
        "script train2.py changed",
        "hyperparameter epochs 1 → 3",
    ]
    assert field_changes("Training", old, old) == []
