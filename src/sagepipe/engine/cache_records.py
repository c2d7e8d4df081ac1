"""The history's cache tables: each step's cache decision, its inputs' fingerprints, and the
content hashes of stored objects (kept by size, ETag and mtime, so an object is read once).

``CacheRecords`` is a part of :class:`sagepipe.engine.history.History`; it uses its
connection and its transactions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sagepipe.engine.history_part import HistoryPart
from sagepipe.records import record

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_cache (
    execution_id TEXT, name TEXT, result TEXT, decision TEXT, fields TEXT,
    PRIMARY KEY (execution_id, name));
CREATE TABLE IF NOT EXISTS step_inputs (
    execution_id TEXT, name TEXT, uri TEXT, size INTEGER, etag TEXT, mtime REAL, hash TEXT,
    PRIMARY KEY (execution_id, name, uri));
CREATE TABLE IF NOT EXISTS object_hashes (
    uri TEXT PRIMARY KEY, size INTEGER, etag TEXT, mtime REAL, hash TEXT);
CREATE INDEX IF NOT EXISTS steps_name ON steps(name, started);
"""


@record
class Fingerprint:
    """What an input object was when a step read it: size, ETag, mtime and a content hash.

    ``hash`` is ``sha256:<hex>`` of the bytes, ``etag:<etag>`` where the store reports a
    content ETag and keeps no local file (S3), or "" where the object could not be read.
    """

    uri: str
    size: int
    etag: str
    mtime: float
    hash: str

    def same_version(self, size: int, etag: str, mtime: float) -> bool:
        """Whether the object still has the size, ETag and mtime it had (no read needed)."""
        return (self.size, self.etag, self.mtime) == (size, etag, mtime)


@record
class EarlierRun:
    """An earlier run of a step: where, how it ended, its cache fields and parameters."""

    execution_id: str
    status: str
    started: float
    cache_key: str | None
    cache_source: str | None
    engine_exited: bool
    fields: dict[str, Any] | None
    parameters: dict[str, Any]


class CacheRecords(HistoryPart):
    """Queries over the cache tables (mixed into History)."""

    def save_cache_decision(
        self,
        execution_id: str,
        name: str,
        result: str,
        decision: Mapping[str, Any],
        fields: Mapping[str, Any] | None,
    ) -> None:
        """Record how the cache decided for one step of one execution."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO step_cache VALUES (?,?,?,?,?)",
                (
                    execution_id,
                    name,
                    result,
                    json.dumps(dict(decision), default=str),
                    None if fields is None else json.dumps(dict(fields), default=str),
                ),
            )

    def cache_decisions(self, execution_id: str) -> dict[str, dict[str, Any]]:
        """Each step's recorded cache decision in ``execution_id``."""
        rows = self._query(
            "SELECT name, decision FROM step_cache WHERE execution_id=?", (execution_id,)
        )
        return {r["name"]: json.loads(r["decision"] or "{}") for r in rows}

    def earlier_runs(
        self, pipeline: str, name: str, before: str, cache_key: str | None = None, limit: int = 1
    ) -> list[EarlierRun]:
        """The newest runs of step ``name`` of ``pipeline`` in executions other than ``before``
        (only the runs that did the work, with ``cache_key`` when given), newest first."""
        sql = (
            "SELECT s.execution_id, s.status, s.started, s.cache_key, s.cache_source, "
            "e.status AS e_status, e.failure_reason, e.parameters, c.fields "
            "FROM steps s JOIN executions e ON e.id = s.execution_id "
            "LEFT JOIN step_cache c ON c.execution_id = s.execution_id AND c.name = s.name "
            "WHERE e.pipeline=? AND s.name=? AND s.execution_id<>? AND s.started IS NOT NULL"
        )
        args: tuple[Any, ...] = (pipeline, name, before)
        if cache_key is not None:
            sql += " AND s.cache_key=? AND s.cache_source IS NULL"
            args += (cache_key,)
        else:
            sql += " AND c.fields IS NOT NULL"
        rows = self._query(sql + " ORDER BY s.started DESC LIMIT ?", (*args, limit))
        from sagepipe.engine.history import ENGINE_EXITED  # history builds on this module

        return [
            EarlierRun(
                execution_id=r["execution_id"],
                status=r["status"],
                started=r["started"],
                cache_key=r["cache_key"],
                cache_source=r["cache_source"],
                engine_exited=r["e_status"] == "Failed" and r["failure_reason"] == ENGINE_EXITED,
                fields=json.loads(r["fields"]) if r["fields"] else None,
                parameters=json.loads(r["parameters"] or "{}"),
            )
            for r in rows
        ]

    def has_cache_source(self, pipeline: str, name: str, since: float) -> bool:
        """Whether some Succeeded run of step ``name`` since ``since`` did the work."""
        rows = self._query(
            "SELECT 1 FROM steps s JOIN executions e ON e.id = s.execution_id WHERE "
            "e.pipeline=? AND s.name=? AND s.status='Succeeded' AND s.cache_source IS NULL "
            "AND s.started>=? LIMIT 1",
            (pipeline, name, since),
        )
        return bool(rows)

    def save_step_inputs(self, execution_id: str, name: str, prints: Iterable[Fingerprint]) -> None:
        """Record the fingerprints of the objects a step read."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO step_inputs VALUES (?,?,?,?,?,?,?)",
                [(execution_id, name, f.uri, f.size, f.etag, f.mtime, f.hash) for f in prints],
            )

    def step_inputs(self, execution_id: str, name: str) -> dict[str, Fingerprint] | None:
        """The recorded input fingerprints of a step run; None when none were recorded."""
        rows = self._query(
            "SELECT uri, size, etag, mtime, hash FROM step_inputs WHERE execution_id=? AND name=?",
            (execution_id, name),
        )
        if not rows:
            return None
        return {r["uri"]: Fingerprint(*tuple(r)) for r in rows}

    def known_hashes(self, uris: Iterable[str]) -> dict[str, Fingerprint]:
        """The last hashed version of each of ``uris`` that has one."""
        wanted = list(dict.fromkeys(uris))
        out: dict[str, Fingerprint] = {}
        for i in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            chunk = wanted[i : i + 500]
            rows = self._query(
                "SELECT uri, size, etag, mtime, hash FROM object_hashes WHERE uri IN "
                f"({','.join('?' * len(chunk))})",
                tuple(chunk),
            )
            out.update({r["uri"]: Fingerprint(*tuple(r)) for r in rows})
        return out

    def save_object_hashes(self, prints: Iterable[Fingerprint]) -> None:
        """Keep the content hash of these versions of objects."""
        rows = [(f.uri, f.size, f.etag, f.mtime, f.hash) for f in prints]
        if rows:
            with self._tx() as db:
                db.executemany("INSERT OR REPLACE INTO object_hashes VALUES (?,?,?,?,?)", rows)
