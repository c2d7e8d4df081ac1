"""The base of History's parts (cache records, model records): queries over its tables that use
History's connection and transactions."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any


class HistoryPart:
    """Mixed into :class:`sagepipe.engine.history.History`, which provides these two."""

    if TYPE_CHECKING:

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]: ...
