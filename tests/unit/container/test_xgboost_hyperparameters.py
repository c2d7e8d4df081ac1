"""The built-in XGBoost's hyperparameter checks, in process (the program runs them in the step)."""

from __future__ import annotations

from typing import Any

import pytest

from sagepipe.container.xgboost_hyperparameters import UserError, validate_hyperparameters


def test_values_are_typed_and_aliases_take_their_names() -> None:
    typed = validate_hyperparameters(
        {
            "num_round": "50",
            "learning_rate": "0.2",
            "reg_lambda": "1",
            "objective": "binary:logistic",
            "eval_metric": "auc,error@0.4",
            "monotone_constraints": "(1,0,-1)",
            "tree_method": "hist",
            "interaction_constraints": "[[1, 2], [3]]",  # 0 is out of its range there too
            "updater": "grow_colmaker,prune",
        }
    )
    assert typed == {
        "num_round": 50,
        "eta": 0.2,
        "lambda": 1.0,
        "objective": "binary:logistic",
        "eval_metric": ["auc", "error@0.4"],
        "monotone_constraints": (1, 0, -1),
        "tree_method": "hist",
        "interaction_constraints": [[1, 2], [3]],
        "updater": ["grow_colmaker", "prune"],
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "Missing required hyperparameter: num_round"),
        ({"num_round": "5", "eta": "1.5"}, "Hyperparameter eta: 1.5 is not in [0, 1]"),
        ({"num_round": "5", "subsample": "0"}, "Hyperparameter subsample: 0.0 is not in (0, 1]"),
        ({"num_round": "5.0"}, "Hyperparameter num_round: could not parse value (caused by"),
        (
            {"num_round": "5", "objective": "multi:softmax"},
            "Require input for parameter 'num_class' for multi-classification",
        ),
        (
            {"num_round": "5", "objective": "reg:squarederror", "eval_metric": "rmse@0.5"},
            "Metric 'rmse@0.5' is not supported. Parameter 'eval_metric' with customized",
        ),
        (
            {"num_round": "5", "objective": "reg:squarederror", "eval_metric": "error@x"},
            "Threshold value 't' in 'error@t' expects float input.",
        ),
        (
            {"num_round": "5", "objective": "binary:logistic", "eval_metric": "aft-nloglik"},
            "Metric 'aft-nloglik' can only be applied for 'survival:aft' objective.",
        ),
        (
            {"num_round": "5", "monotone_constraints": "(1,0)", "tree_method": "approx"},
            "monotone_constraints can be used only when the tree_method parameter is set to",
        ),
        (
            {"num_round": "5", "booster": "gblinear", "updater": "grow_colmaker"},
            "Linear updater should be one of these options:",
        ),
        (
            {"num_round": "5", "updater": "grow_colmaker,grow_histmaker"},
            "Only one tree grow plugin can be selected.",
        ),
        ({"num_round": "5", "booster": "gbforest"}, "Hyperparameter booster: gbforest is not in"),
    ],
)
def test_invalid_values_say_what_the_container_says(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as raised:
        validate_hyperparameters(given)
    assert raised.value.message.startswith(message)


def test_eval_metric_without_an_objective_fails_as_the_container_does() -> None:
    with pytest.raises(KeyError, match="objective"):  # the container's check reads it unguarded
        validate_hyperparameters({"num_round": "5", "eval_metric": "rmse"})
