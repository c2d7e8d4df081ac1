"""The live view of a running execution: step statuses and elapsed times, log lines prefixed."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from sagepipe.cli.render import STATUS_STYLE
from sagepipe.core.status import StepStatus, is_terminal
from sagepipe.records import record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from sagepipe.engine.context import StepOutcome

_COLORS = ["cyan", "magenta", "green", "blue", "yellow", "bright_cyan", "bright_magenta"]


@record(frozen=False)
class _Row:
    """One step's line in the live view."""

    type: str = ""
    status: str = "Pending"
    start: float | None = None
    end: float | None = None
    reason: str | None = None


class LiveView:
    """Receives engine callbacks; renders a table on a terminal, plain lines elsewhere."""

    def __init__(self, console: Console, steps: list[tuple[str, str]], quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.rows: dict[str, _Row] = {name: _Row(kind) for name, kind in steps}
        self.colors = {name: _COLORS[i % len(_COLORS)] for i, (name, _) in enumerate(steps)}
        self.width = max((len(n) for n, _ in steps), default=4)
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            from rich.live import Live  # on a terminal only: elsewhere lines are printed

            self._live = Live(
                self._table(), console=self.console, refresh_per_second=8, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def on_line(self, step: str, line: str) -> None:
        """A log line of a step."""
        if self.quiet:
            return
        with self._lock:
            color = self.colors.get(step, "white")
            self.console.print(
                f"[{color}]{escape(step):<{self.width}}[/] | {escape(line)}",
                markup=True,
                highlight=False,
                soft_wrap=True,
            )
            if self._live is not None:
                self._live.update(self._table())

    def on_status(self, step: str, status: str, outcome: StepOutcome | None) -> None:
        """A step changed status."""
        with self._lock:
            row = self.rows.setdefault(step, _Row())
            row.status = status
            if status == StepStatus.EXECUTING:
                row.start = time.time()
            elif is_terminal(status):
                row.end = time.time()
                if outcome is not None and outcome.failure_reason:
                    row.reason = outcome.failure_reason
            if self._live is not None:
                self._live.update(self._table())
            else:
                failed = status in (StepStatus.FAILED, StepStatus.NOT_RUN)
                line = f"{step:<{self.width}} : {status}"
                if row.reason and failed:  # a reason is any text: rich makes it printable
                    self.console.print(f"{line}: {row.reason}", highlight=False, markup=False)
                else:  # a step name (SageMaker's [A-Za-z0-9_-]) and a status, as they are
                    self.console.file.write(line + "\n")

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("step")
        table.add_column("type")
        table.add_column("status")
        table.add_column("elapsed", justify="right")
        now = time.time()
        for name, row in self.rows.items():
            start, end = row.start, row.end
            elapsed = f"{((end or now) - start):.1f}s" if start else ""
            style = STATUS_STYLE.get(row.status, "dim")
            table.add_row(
                escape(name), escape(row.type), f"[{style}]{escape(row.status)}[/]", elapsed
            )
        return table
