"""Parameter values for an execution: given ones converted to their Type, others their default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagepipe.definition.model import Definition
from sagepipe.errors import DefinitionError


def resolve_parameters(definition: Definition, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value; unknown names and required parameters not given are errors."""
    declared = {p.name: p for p in definition.parameters}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise DefinitionError(
            f"unknown parameters {unknown}; the pipeline declares: {', '.join(declared) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name in given:
            values[name] = param.convert(given[name])
        elif param.default_value is not None:
            values[name] = param.default_value
        else:
            raise DefinitionError(f"parameter '{name}' has no default; pass -p {name}=VALUE")
    return values
