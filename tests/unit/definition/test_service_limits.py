"""The loader enforces the service limits and sagepipe's bounds in definition/service_limits.py."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from sagepipe.definition import load
from sagepipe.definition.service_limits import (
    MAX_DEFINITION_BYTES,
    MAX_INTEGER_DIGITS,
    MAX_NESTING_DEPTH,
    SUPPORTED_LOCALLY,
    VERSION,
)
from sagepipe.definition.values import check_values, parse
from sagepipe.engine.engine import RUNNERS
from sagepipe.errors import DefinitionError
from tests.conftest import FIXTURES

BASE: dict[str, Any] = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_version_and_the_steps_run_locally() -> None:
    assert BASE["Version"] == VERSION
    assert set(SUPPORTED_LOCALLY) == set(RUNNERS)


def test_definition_size_limit_applies_to_text_and_to_dicts() -> None:
    blob = "x" * (MAX_DEFINITION_BYTES + 1)
    with pytest.raises(DefinitionError, match="SageMaker accepts at most 1,000,000"):
        load(json.dumps({**BASE, "Metadata": {"blob": blob}}))
    with pytest.raises(DefinitionError, match="SageMaker accepts at most 1,000,000"):
        load({**BASE, "Metadata": {"blob": blob}})


def test_nesting_up_to_the_limit_loads() -> None:
    # Metadata sits at depth 1 and its value at depth 2
    load({**BASE, "Metadata": {"deep": nested(MAX_NESTING_DEPTH - 2)}})


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH - 1, 10_000])
def test_deeper_nesting_is_refused_from_a_dict(levels: int) -> None:
    with pytest.raises(DefinitionError, match="more than 100 levels deep") as info:
        load({**BASE, "Metadata": {"deep": nested(levels)}})
    assert str(info.value).startswith("definition Metadata.deep[0][0]")
    assert len(str(info.value)) < 200


def test_deep_text_is_refused_without_a_recursion_error() -> None:
    text = '{"Version": "2020-12-01", "Steps": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(DefinitionError, match=r"the definition nests .* more than 100 levels"):
        load(text)


@pytest.mark.parametrize("digits", [MAX_INTEGER_DIGITS + 1, 5_000, 100_000])
def test_integers_wider_than_64_bits_are_refused(digits: int) -> None:
    text = json.dumps(BASE).replace('"DefaultValue": 2', f'"DefaultValue": {"9" * digits}', 1)
    with pytest.raises(
        DefinitionError, match=f"parameter 'Epochs' DefaultValue: an integer of {digits} digits"
    ):
        load(text)


def test_a_wide_integer_in_a_dict_is_refused_without_converting_it() -> None:
    data = json.loads(json.dumps(BASE))
    data["Parameters"][2]["DefaultValue"] = 10**5000
    with pytest.raises(
        DefinitionError, match="parameter 'Epochs' DefaultValue: an integer of more than 19"
    ):
        load(data)
    assert sys.get_int_max_str_digits() != 0  # the check needs no unlimited conversion


def test_64_bit_integers_load() -> None:
    check_values({"a": 2**63 - 1, "b": -(2**63)})
    with pytest.raises(DefinitionError):
        check_values({"a": 2**63})


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused(constant: str) -> None:
    with pytest.raises(DefinitionError, match=f"{constant} is not a JSON number"):
        parse('{"a": ' + constant + "}")


def test_an_overflowing_float_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"definition\.a: inf is not a finite number"):
        check_values(parse('{"a": 1e999}'), "definition")
