"""The history's model registry: model package versions a RegisterModel step added, and the
models Model/CreateModel steps created.

``ModelRecords`` is a part of :class:`sagepipe.engine.history.History`; it uses its
connection and its transactions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sagepipe.engine.history_part import HistoryPart

MODEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    arn TEXT PRIMARY KEY, group_name TEXT, version INTEGER, approval TEXT, model_data_url TEXT,
    image TEXT, metrics TEXT, created REAL, execution_id TEXT, step TEXT);
"""


class ModelRecords(HistoryPart):
    """Queries over the models table (mixed into History)."""

    def register_model(
        self,
        group: str,
        arn_prefix: str,
        approval: str,
        model_data_url: str | None,
        image: str | None,
        metrics: Mapping[str, Any] | None,
        execution_id: str,
        step: str,
    ) -> tuple[str, int]:
        """Add a model package version to ``group``; returns its ARN and version."""
        with self._tx() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(version), 0) AS v FROM models WHERE group_name=?", (group,)
            ).fetchone()
            version = int(row["v"]) + 1
            arn = f"{arn_prefix}/{group.lower()}/{version}"
            db.execute(
                "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    arn,
                    group,
                    version,
                    approval,
                    model_data_url,
                    image,
                    json.dumps(metrics or {}),
                    time.time(),
                    execution_id,
                    step,
                ),
            )
        return arn, version

    def model_by_name(self, name: str) -> dict[str, Any] | None:
        """The properties of the newest succeeded Model/CreateModel step that created ``name``."""
        rows = self._query(
            "SELECT properties FROM steps WHERE type IN ('Model', 'CreateModel') "
            "AND status='Succeeded' AND json_extract(properties, '$.ModelName')=? "
            "ORDER BY ended DESC LIMIT 1",
            (name,),
        )
        return dict(json.loads(rows[0]["properties"])) if rows else None

    def models(self, group: str | None = None) -> list[dict[str, Any]]:
        """Registered model versions, newest first."""
        query = "SELECT * FROM models"
        args: tuple[Any, ...] = ()
        if group:
            query += " WHERE group_name=?"
            args = (group,)
        rows = self._query(query + " ORDER BY created DESC", args)
        out = []
        for r in rows:
            item = dict(r)
            item["metrics"] = json.loads(item["metrics"] or "{}")
            out.append(item)
        return out
