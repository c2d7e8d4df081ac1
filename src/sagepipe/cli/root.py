"""The ``sagepipe`` group's own option and set-up, run before any command."""

from __future__ import annotations

from typing import Annotated

import typer


def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """sagepipe."""
    from sagepipe.cli.logs import configure_logging
    from sagepipe.cli.state import CliState

    ctx.obj = CliState(debug=debug)
    configure_logging(debug)
