"""The CLI's two consoles: results on stdout, progress and errors on stderr.

Piped output (CI logs, files) gets wide lines instead of rich's 80-column default. rich loads
when something is first printed through it: `sagepipe --help` and other commands that print
plain text never import it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class _DeferredConsole:
    """A rich Console made on first use; every attribute is the real console's."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            width = None if stream.isatty() else 200
            # No emoji codes: a step, pipeline or file named ':smile:' is printed as it is (and
            # rich's table of emoji codes, a millisecond and a half, is never loaded).
            console = Console(stderr=self._stderr, soft_wrap=True, width=width, emoji=False)
            if console.color_system is None:
                from rich.highlighter import NullHighlighter

                # No style reaches the stream (no colours, no bold): highlighting numbers and
                # strings in printed text would change nothing but cost its patterns' compiling.
                console.highlighter = NullHighlighter()
            self._console = console
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


console = cast("Console", _DeferredConsole(stderr=False))
err = cast("Console", _DeferredConsole(stderr=True))


def real_console(c: Console) -> Console:
    """The rich Console behind ``c`` (for code that needs the object itself: Live, logging)."""
    return c._real() if isinstance(c, _DeferredConsole) else c


def escape(text: str) -> str:
    """rich's markup escape, imported when first needed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def new_table(*columns: Any, **options: Any) -> Table:
    """A rich Table, imported when first needed."""
    from rich.table import Table

    return Table(*columns, **options)
