"""Job step Arguments are checked against SageMaker's request shapes, taken from botocore."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sagepipe.definition.requests import check_request, checked_step_types, is_expression
from sagepipe.errors import DefinitionError
from tests.conftest import FIXTURES
from tests.fixtures.make_shapes import OUT, extract, service_model

SDK = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())


def arguments(name: str) -> dict[str, Any]:
    for step in SDK["Steps"]:
        if step["Name"] == name:
            return copy.deepcopy(step["Arguments"])
    raise KeyError(name)


def test_processing_and_training_are_checked() -> None:
    assert set(checked_step_types()) == {"Processing", "Training"}


@pytest.mark.parametrize("name", ["Preprocess", "Train", "Evaluate"])
def test_sdk_arguments_pass(name: str) -> None:
    kind = "Training" if name == "Train" else "Processing"
    check_request(name, kind, arguments(name))


def test_other_step_types_are_not_checked() -> None:
    check_request("x", "RegisterModel", {"anything": ["goes"]})


@pytest.mark.parametrize(
    "value",
    [
        {"Get": "Parameters.Runtime"},
        {"Std:Join": {"On": "", "Values": ["1", "2"]}},
        {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.B"}, "Path": "x"}},
    ],
)
def test_an_expression_stands_for_any_value(value: dict[str, Any]) -> None:
    args = arguments("Train")
    args["StoppingCondition"]["MaxRuntimeInSeconds"] = value
    args["AlgorithmSpecification"]["ContainerEntrypoint"] = value
    args["ResourceConfig"] = value
    args["HyperParameters"] = value
    check_request("Train", "Training", args)
    assert is_expression(value)


def test_a_dict_with_more_keys_is_not_an_expression() -> None:
    assert not is_expression({"Get": "Parameters.X", "Other": 1})
    args = arguments("Train")
    args["StoppingCondition"]["MaxRuntimeInSeconds"] = {"Get": "Parameters.X", "Other": 1}
    with pytest.raises(DefinitionError, match=r"MaxRuntimeInSeconds is .*; it must be an integer"):
        check_request("Train", "Training", args)


def test_resolved_arguments_are_checked_the_same_way() -> None:
    args = arguments("Preprocess")
    args["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.m5.huge"
    with pytest.raises(DefinitionError, match=r"InstanceType is the string 'ml\.m5\.huge'"):
        check_request("Preprocess", "Processing", args)


def test_booleans_are_not_integers() -> None:
    args = arguments("Preprocess")
    args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = True
    with pytest.raises(DefinitionError, match="InstanceCount is true; it must be an integer"):
        check_request("Preprocess", "Processing", args)


def test_unknown_fields_far_from_known_ones_are_left_to_sagemaker() -> None:
    args = arguments("Train")
    args["SomeFutureField"] = {"x": 1}
    check_request("Train", "Training", args)


def test_long_values_are_shortened_in_the_message() -> None:
    args = arguments("Preprocess")
    args["AppSpecification"]["ContainerEntrypoint"] = "x" * 500
    with pytest.raises(DefinitionError) as info:
        check_request("Preprocess", "Processing", args)
    assert len(str(info.value)) < 250
    assert "…" in str(info.value)


def test_the_snapshot_matches_the_installed_botocore() -> None:
    """Regenerate with `python tests/fixtures/make_shapes.py` when SageMaker's API changes."""
    snapshot = json.loads(OUT.read_text())
    current = extract(service_model())
    assert snapshot["operations"] == current["operations"]
    for name, shape in snapshot["shapes"].items():
        now = current["shapes"].get(name)
        assert now is not None, f"{name} is gone from botocore's model"
        for key in ("type", "required", "min", "max", "pattern"):
            assert shape.get(key) == now.get(key), f"{name}.{key} changed"
        # the service adds enum values (instance types) and members; it does not remove them
        assert set(shape.get("enum", ())) <= set(now.get("enum", ())), f"{name}.enum shrank"
        assert set(shape.get("members", {})) <= set(now.get("members", {})), name
