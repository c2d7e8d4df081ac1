"""What every command shares, carried in typer's context: the settings, built once at the edge."""

from __future__ import annotations

from dataclasses import field

import typer

from sagepipe.config import Settings
from sagepipe.records import record


@record(frozen=False)
class CliState:
    """The invocation's state: ``--debug`` and the lazily built settings."""

    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """The settings from the environment, ``.env`` and pyproject (built on first use)."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings


def settings(ctx: typer.Context) -> Settings:
    """The settings of the command running in ``ctx``."""
    return ctx.ensure_object(CliState).settings()
