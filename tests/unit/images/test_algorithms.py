"""Which training steps run the built-in algorithm, its command and its metric definitions."""

from __future__ import annotations

import re

import pytest

from sagepipe.images.algorithms import (
    PROGRAMS,
    algorithm_command,
    algorithm_mode,
    metric_definitions,
)

XGB = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:{}"


@pytest.mark.parametrize("tag", ["1.0-1", "1.7-1", "1.7-1-cpu-py3", "3.0-5", "9.9-1"])
def test_an_xgboost_image_without_an_entry_point_runs_the_algorithm(tag: str) -> None:
    assert algorithm_mode(XGB.format(tag), {"num_round": "10"}) == "xgboost"


def test_an_entry_point_or_another_image_is_script_mode() -> None:
    hps = {"sagemaker_program": '"train.py"', "num_round": "10"}
    assert algorithm_mode(XGB.format("1.7-1"), hps) is None
    sklearn = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert algorithm_mode(sklearn, {}) is None
    assert algorithm_mode("my-registry.example.com/xgboost-trainer:1", {}) is None


def test_the_command_is_the_image_python_and_the_program_file() -> None:
    assert PROGRAMS["xgboost"] == "xgboost_algorithm.py"
    command = algorithm_command(
        "xgboost", ["/env/bin/python"], "/opt/sagepipe/xgboost_algorithm.py"
    )
    assert command == ["/env/bin/python", "/opt/sagepipe/xgboost_algorithm.py", "--root", "/opt/ml"]
    with pytest.raises(ValueError, match="no built-in algorithm 'kmeans'"):
        algorithm_command("kmeans", ["python"], "x")


def test_metric_definitions_read_the_image_s_round_lines() -> None:
    definitions = {d["Name"]: d["Regex"] for d in metric_definitions("xgboost")}
    assert {"train:rmse", "validation:rmse", "validation:auc", "validation:r2"} <= set(definitions)
    assert "train:r2" not in definitions
    assert definitions["validation:rmse"] == (
        r".*\[[0-9]+\].*#011validation-rmse:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*"
    )
    line = "[41]\ttrain-rmse:1.19876\tvalidation-rmse:2.31553\tvalidation-auc:9.1e-01"
    read = {
        name: float(m.group(1))
        for name, regex in definitions.items()
        if (m := re.search(regex.replace("#011", "\t"), line))
    }
    assert read == {"train:rmse": 1.19876, "validation:rmse": 2.31553, "validation:auc": 0.91}
    assert metric_definitions("other") == []
