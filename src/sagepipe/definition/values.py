"""Reading definition JSON text and checking its values before the model is built.

``json.loads`` accepts what SageMaker refuses (NaN, Infinity) and fails in ways that are not
user errors (RecursionError on deep nesting, ValueError on integers of thousands of digits);
:func:`parse` and :func:`check_values` turn each into a one-line DefinitionError naming the place.
"""

from __future__ import annotations

import json
import math

from sagepipe.core.json_types import JSON
from sagepipe.core.references import parse_json_path
from sagepipe.definition.service_limits import MAX_INTEGER_DIGITS, MAX_NESTING_DEPTH
from sagepipe.errors import DefinitionError, PipelineError


class _WideInteger(str):
    """An integer literal too long to convert; kept as text until the check names its place."""


def _integer(text: str) -> int | _WideInteger:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _WideInteger(text)
    return int(text)


def _constant(name: str) -> JSON:
    raise DefinitionError(f"definition is not valid JSON: {name} is not a JSON number")


def parse(text: str | bytes) -> JSON:
    """JSON text as a value, refusing what SageMaker's parser refuses.

    Raises:
        DefinitionError: for text that is not JSON, not UTF-8, or nested too deep to read.
    """
    try:
        value: JSON = json.loads(text, parse_int=_integer, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"definition is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"definition is not UTF-8 text: {exc.reason}") from None
    except RecursionError:
        raise DefinitionError(_too_deep("the definition")) from None
    return value


def _too_deep(where: str) -> str:
    return (
        f"{where} nests objects and lists more than {MAX_NESTING_DEPTH} levels deep; "
        "flatten it (SageMaker SDK definitions nest about 12 levels)"
    )


def check_values(data: JSON, where: str = "definition", depth: int = 0) -> None:
    """Check every value of ``data``: nesting depth, number range, JsonGet Path syntax.

    Iterative, so a value nested far too deep is reported rather than exhausting the stack.

    Raises:
        DefinitionError: naming the place of the first bad value.
    """
    stack: list[tuple[JSON, str, int]] = [(data, where, depth)]
    while stack:
        value, at, depth = stack.pop()
        if depth > MAX_NESTING_DEPTH:
            raise DefinitionError(_too_deep(at))
        named = depth < _NAMED_DEPTH  # deeper places are named by their ancestor and "…"
        if isinstance(value, dict):
            if set(value) == {"Std:JsonGet"}:
                _check_json_get(value["Std:JsonGet"], f"{at}.Std:JsonGet")
            stack.extend(
                (v, _member(at, k) if named else _ellipsis(at), depth + 1)
                for k, v in reversed(value.items())
            )
        elif isinstance(value, list):
            stack.extend(
                (v, f"{at}[{i}]" if named else _ellipsis(at), depth + 1)
                for i, v in reversed(list(enumerate(value)))
            )
        elif isinstance(value, _WideInteger) or (
            isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63
        ):
            digits = len(value) if isinstance(value, str) else "more than 19"
            raise DefinitionError(
                f"{at}: an integer of {digits} digits is out of range; "
                "SageMaker integers are 64-bit (at most 19 digits)"
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise DefinitionError(f"{at}: {value} is not a finite number")


_NAMED_DEPTH = 8


def _member(where: str, key: str) -> str:
    return f"{where} {key}" if where.endswith("'") else f"{where}.{key}"


def _ellipsis(where: str) -> str:
    return where if where.endswith("…") else f"{where}…"


def _check_json_get(spec: JSON, at: str) -> None:
    path = spec.get("Path") if isinstance(spec, dict) else None
    if isinstance(path, str):
        try:
            parse_json_path(path)
        except PipelineError as exc:
            raise DefinitionError(f"{at}.Path: {exc}") from None


__all__ = ["check_values", "parse"]
