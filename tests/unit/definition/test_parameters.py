"""Parameter values of an execution: conversion from start-time strings and defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagepipe.definition import load, resolve_parameters
from sagepipe.definition.model import ParameterDef
from sagepipe.errors import DefinitionError
from tests.conftest import FIXTURES

DEFINITION = load(FIXTURES / "sdk" / "v2_full.json")
DEFAULTS = {
    "InputData": "s3://sdk-fixtures/data/raw",
    "ProcessingInstanceType": "ml.m5.xlarge",
    "Epochs": 2,
    "MseThreshold": 1000.0,
    "Strict": False,
}


def test_defaults_fill_what_is_not_given() -> None:
    assert resolve_parameters(DEFINITION, {}) == DEFAULTS
    assert DEFINITION.resolve_parameters({}) == DEFAULTS


def test_given_strings_are_converted_to_the_declared_type() -> None:
    given = {"Epochs": "5", "MseThreshold": "2.5", "Strict": "True", "InputData": "s3://b/k"}
    values = resolve_parameters(DEFINITION, given)
    assert values == {
        **DEFAULTS,
        "Epochs": 5,
        "MseThreshold": 2.5,
        "Strict": True,
        "InputData": "s3://b/k",
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"Epoch": "3"},
            r"unknown parameters \['Epoch'\] \(did you mean Epochs\?\); the pipeline declares: InputData",
        ),
        ({"A": "1", "B": "2"}, r"unknown parameters \['A', 'B'\]; the pipeline declares"),
        ({"Epochs": "two"}, "parameter 'Epochs': 'two' is not a valid Integer"),
        ({"Epochs": "2.5"}, "parameter 'Epochs': '2.5' is not a valid Integer"),
        ({"Epochs": "9" * 5000}, "is not a valid Integer"),
        ({"Epochs": str(2**63)}, "is not a valid Integer"),
        ({"MseThreshold": "inf"}, "is not a valid Float"),
        ({"Strict": "yes"}, "parameter 'Strict': 'yes' is not a valid Boolean"),
        (
            {"ProcessingInstanceType": "ml.c5.large"},
            "is not one of \\['ml.m5.xlarge', 'ml.m5.2xlarge'\\]",
        ),
    ],
)
def test_bad_values_name_the_parameter(given: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        resolve_parameters(DEFINITION, given)


def test_a_parameter_without_default_must_be_given() -> None:
    data = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())
    del data["Parameters"][0]["DefaultValue"]
    definition = load(data)
    with pytest.raises(
        DefinitionError, match="parameter 'InputData' has no default; pass -p InputData=VALUE"
    ):
        resolve_parameters(definition, {})
    assert resolve_parameters(definition, {"InputData": "s3://x/y"})["InputData"] == "s3://x/y"


@pytest.mark.parametrize(
    ("kind", "value", "converted"),
    [
        ("Integer", 3.0, 3),
        ("Integer", " 7 ", 7),
        ("Float", 2, 2.0),
        ("String", 5, "5"),
        ("Boolean", "false", False),
        ("Boolean", True, True),
    ],
)
def test_convert(kind: str, value: Any, converted: Any) -> None:
    assert ParameterDef("p", kind).convert(value) == converted


def test_unknown_parameter_lookup_suggests() -> None:
    with pytest.raises(
        DefinitionError, match=r"unknown parameter 'Epoch' \(did you mean Epochs\?\)"
    ):
        DEFINITION.parameter("Epoch")
