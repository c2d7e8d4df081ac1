"""The JSON value type of definitions: what ``json.loads`` returns, recursively typed."""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]

__all__ = ["JSON", "JSONObject"]
