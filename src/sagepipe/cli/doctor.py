"""``sagepipe doctor``: which sandbox steps get on this machine, and what it guarantees."""

from __future__ import annotations

from typing import Annotated

import typer

from sagepipe.cli.consoles import console, escape, new_table
from sagepipe.cli.state import settings


def doctor_command(
    ctx: typer.Context,
    sandbox: Annotated[str | None, typer.Option(help="auto, bwrap or process.")] = None,
) -> None:
    """Say which sandbox steps run in here and which container guarantees hold."""
    from sagepipe.engine.sandbox import sandbox_report

    report = sandbox_report(settings(ctx).with_overrides(sandbox=sandbox).sandbox)
    console.print(f"sandbox: [bold]{report.sandbox}[/] (engine runs as {report.user})")
    table = new_table("guarantee", "holds", "how")
    for item in report.guarantees:
        table.add_row(
            item.name, "[green]yes[/]" if item.holds else "[red]no[/]", escape(item.detail)
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor")(doctor_command)
