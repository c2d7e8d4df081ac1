"""The two path languages of a definition: ``Get`` references and JsonGet ``Path`` strings.

``Get`` reads ``Parameters.<name>``, ``Execution.<name>``, ``Steps.<step>.<property path>`` or
``Steps.<step>.PropertyFiles.<file>``. A JsonGet ``Path`` is the JsonPath subset SageMaker
documents: names joined by dots, ``['key']`` or ``["key"]`` for keys holding any character
(dots included), and ``[0]`` for list items. Both parsers live here so that the loader, the
graph and the evaluator read a reference the same way.
"""

from __future__ import annotations

import re
from typing import Literal

from sagepipe.errors import PipelineError
from sagepipe.records import record

_STEP_GET = re.compile(r"^Steps\.([^.\[]+)(.*)$", re.DOTALL)
_NAME = re.compile(r"[^.\[\]'\"]+")
_INDEX = re.compile(r"\[(-?\d+)\]")

GetKind = Literal["Parameters", "Execution", "Steps"]


@record
class GetRef:
    """One parsed ``Get``.

    Attributes:
        kind: ``Parameters``, ``Execution`` or ``Steps``.
        name: the parameter, execution variable or step name.
        path: for ``Steps``, the property path after the step name (``.A['x'].B``).
        property_file: for ``Steps.<step>.PropertyFiles.<file>``, the file's name.
    """

    kind: GetKind
    name: str
    path: str = ""
    property_file: str | None = None


def parse_get(text: str) -> GetRef:
    """Parse the value of a ``Get``.

    Raises:
        PipelineError: when it reads none of Parameters., Execution. or Steps.
    """
    if text.startswith("Parameters.") and len(text) > len("Parameters."):
        return GetRef("Parameters", text.removeprefix("Parameters."))
    if text.startswith("Execution.") and len(text) > len("Execution."):
        return GetRef("Execution", text.removeprefix("Execution."))
    m = _STEP_GET.match(text)
    if m is None:
        raise PipelineError(
            f"cannot read {text!r}; a Get starts with Parameters., Execution. or Steps."
        )
    step, rest = m.groups()
    if rest.startswith(".PropertyFiles."):
        return GetRef("Steps", step, property_file=rest.removeprefix(".PropertyFiles."))
    return GetRef("Steps", step, path=rest)


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """Split a JsonGet ``Path`` into keys and list indexes.

    ``metrics['a.b'].value`` is ``("metrics", "a.b", "value")``; ``$.items[0]`` is
    ``("items", 0)``.

    Raises:
        PipelineError: naming the position where the path stops making sense.
    """
    parts: list[str | int] = []
    pos = 0
    if path.startswith("$"):
        pos = 1
    expect_name = pos == 0  # a path may open with a bare name; after '$' a '.' or '[' follows
    while pos < len(path):
        char = path[pos]
        if char == "[":
            if (m := _INDEX.match(path, pos)) is not None:
                parts.append(int(m.group(1)))
                pos = m.end()
            elif pos + 1 < len(path) and path[pos + 1] in "'\"":
                key, pos = _quoted(path, pos + 1)
                if pos >= len(path) or path[pos] != "]":
                    raise _bad(path, pos, "a quoted key must be closed by ']'")
                parts.append(key)
                pos += 1
            else:
                raise _bad(path, pos, "use [0] for an item or ['key'] for a key")
            expect_name = False
            continue
        if char == "." and not expect_name:
            pos += 1
            expect_name = True
            continue
        if not expect_name:
            raise _bad(path, pos, "expected '.' or '['")
        m = _NAME.match(path, pos)
        if m is None:
            raise _bad(path, pos, "expected a name")
        parts.append(m.group(0))
        pos = m.end()
        expect_name = False
    if expect_name and parts:
        raise _bad(path, pos, "the path ends with '.'")
    if not parts:
        raise PipelineError(f"JsonGet Path {path!r} is empty; write e.g. metrics.accuracy.value")
    return tuple(parts)


def _quoted(path: str, pos: int) -> tuple[str, int]:
    """The quoted key starting at ``pos`` (its quote) and the position after it."""
    quote = path[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path):
            out.append(path[i + 1])
            i += 2
            continue
        if char == quote:
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise _bad(path, pos, "the quoted key is not closed")


def _bad(path: str, pos: int, why: str) -> PipelineError:
    return PipelineError(f"JsonGet Path {path!r} is invalid at character {pos + 1}: {why}")


__all__ = ["GetRef", "parse_get", "parse_json_path"]
