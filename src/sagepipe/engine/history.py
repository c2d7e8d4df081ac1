"""SQLite history of pipelines, executions, steps and registered models (WAL, safe across processes).

State and keys live here; artifacts live in the object store.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sagepipe.engine.cache_records import CACHE_SCHEMA, CacheRecords
from sagepipe.engine.liveness import is_alive, this_process
from sagepipe.engine.model_records import MODEL_SCHEMA, ModelRecords
from sagepipe.engine.publishing import commit
from sagepipe.errors import ExecutionError, HistoryError
from sagepipe.records import record

# Why an execution whose engine process disappeared (killed, crashed) ended.
ENGINE_EXITED = "the engine exited"

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY, arn TEXT, created REAL, updated REAL, definition TEXT);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, pipeline TEXT, arn TEXT, status TEXT, failure_reason TEXT,
    created REAL, modified REAL, ended REAL, parameters TEXT, definition TEXT, sandbox TEXT,
    max_parallel INTEGER);
CREATE INDEX IF NOT EXISTS executions_pipeline ON executions(pipeline, created);
CREATE TABLE IF NOT EXISTS steps (
    execution_id TEXT, name TEXT, type TEXT, display_name TEXT, status TEXT, started REAL,
    ended REAL, failure_reason TEXT, metadata TEXT, properties TEXT, cache_key TEXT,
    cache_source TEXT, attempts INTEGER, log TEXT, PRIMARY KEY (execution_id, name));
CREATE INDEX IF NOT EXISTS steps_cache ON steps(cache_key, status);
"""
# Columns added after the first release; a history file from before gets them on open.
_ADDED_COLUMNS = {
    "executions": (
        ("engine_pid", "INTEGER"),
        ("engine_start", "INTEGER"),
        ("stop_requested", "INTEGER"),
        ("selective", "TEXT"),  # SelectiveExecutionConfig of a selective execution (JSON)
        ("store", "TEXT"),  # the store it ran on (local or s3): a retry runs on it again
    ),
    "steps": (("publishing", "TEXT"),),  # a commit plan (engine/publishing.py) under way
}
# Indexes on added columns, and those added later: made after the columns are.
_LATER_INDEXES = """
CREATE INDEX IF NOT EXISTS steps_publishing ON steps(execution_id) WHERE publishing IS NOT NULL;
CREATE INDEX IF NOT EXISTS steps_source ON steps(name, cache_key, status, started)
    WHERE cache_source IS NULL;
CREATE INDEX IF NOT EXISTS executions_status ON executions(status);
"""
# The layout above, as a number kept in the file (PRAGMA user_version): a history that has it
# is opened without running the set-up again. Raise it with every change to the layout.
SCHEMA_VERSION = 1
_RUNNING = ("Executing", "Stopping")
_LIVE: weakref.WeakSet[History] = weakref.WeakSet()  # every History not yet garbage
_INSERT_STEP = (
    "INSERT OR REPLACE INTO steps (execution_id, name, type, display_name, status, started, "
    "ended, failure_reason, metadata, properties, cache_key, cache_source, attempts, log) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


@record
class StepRecord:
    """One step of one execution as stored."""

    execution_id: str
    name: str
    type: str
    display_name: str | None
    status: str
    started: float | None
    ended: float | None
    failure_reason: str | None
    metadata: dict[str, Any]
    properties: dict[str, Any]
    cache_key: str | None
    cache_source: str | None
    attempts: int


@record
class ExecutionRecord:
    """One execution as stored."""

    id: str
    pipeline: str
    arn: str
    status: str
    failure_reason: str | None
    created: float
    modified: float
    ended: float | None
    parameters: dict[str, Any]
    definition: str
    max_parallel: int | None
    selective: dict[str, Any] | None = None
    sandbox: str | None = None
    store: str | None = None


class History(CacheRecords, ModelRecords):
    """The history database; one connection per instance, guarded by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._guard():
                self._open()
        except OSError as exc:
            raise HistoryError(f"cannot open the history {path}: {exc.strerror}") from None

    def _open(self) -> None:
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        # An sqlite3 connection refers to itself (its statement cache): left alone, only a
        # garbage collection would close it. It is closed as soon as this History goes instead.
        self._closer = weakref.finalize(self, self._db.close)
        self._closer.atexit = False
        _LIVE.add(self)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=30000")  # first: the next pragma may wait
        # Two processes creating the file at once can meet SQLITE_BUSY without the busy
        # handler being asked (switching to WAL); such set-up is retried.
        _retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")

        def create() -> None:
            with self._tx() as db:
                if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                    return  # set up by another process meanwhile (or by a newer sagepipe)
                for stmt in (SCHEMA + CACHE_SCHEMA + MODEL_SCHEMA).split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                for table, columns in _ADDED_COLUMNS.items():
                    have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns:
                        if name not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                for stmt in _LATER_INDEXES.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _retry_locked(create)
        self.reap()

    def close(self) -> None:
        """Close the connection."""
        self._closer()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged or unreadable file becomes one HistoryError saying what to do; the file
        is never replaced (it may be the only record of past executions)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise HistoryError(
                f"the history {self.path} cannot be read ({exc}); move it aside "
                f"(mv {self.path} {self.path}.broken) and sagepipe starts a new one"
            ) from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock, self._guard():
            return self._db.execute(sql, args).fetchall()

    # pipelines and executions -------------------------------------------------------------

    def save_pipeline(self, name: str, arn: str, definition: str) -> None:
        """Record (or update) a pipeline and its latest definition."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO pipelines VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "updated=excluded.updated, definition=excluded.definition",
                (name, arn, now, now, definition),
            )

    def create_execution(
        self,
        execution_id: str,
        pipeline: str,
        arn: str,
        parameters: Mapping[str, Any],
        definition: str,
        max_parallel: int,
        sandbox: str,
        store: str | None = None,
    ) -> None:
        """Record a new execution in status Executing, run by this process."""
        now = time.time()
        pid, started = this_process()
        with self._tx() as db:
            db.execute(
                "INSERT INTO executions (id, pipeline, arn, status, failure_reason, created, "
                "modified, ended, parameters, definition, sandbox, max_parallel, engine_pid, "
                "engine_start, store) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    execution_id,
                    pipeline,
                    arn,
                    "Executing",
                    None,
                    now,
                    now,
                    None,
                    json.dumps(dict(parameters)),
                    definition,
                    sandbox,
                    max_parallel,
                    pid,
                    started,
                    store,
                ),
            )

    def finish_execution(self, execution_id: str, status: str, failure_reason: str | None) -> None:
        """Set an execution's final status."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE executions SET status=?, failure_reason=?, modified=?, ended=? WHERE id=?",
                (status, failure_reason, now, now, execution_id),
            )

    def set_execution_status(self, execution_id: str, status: str) -> None:
        """Update the status of a running execution (e.g. Stopping)."""
        with self._tx() as db:
            db.execute(
                "UPDATE executions SET status=?, modified=? WHERE id=?",
                (status, time.time(), execution_id),
            )

    def set_selective(self, execution_id: str, config: Mapping[str, Any]) -> None:
        """Record the SelectiveExecutionConfig an execution runs under."""
        with self._tx() as db:
            db.execute(
                "UPDATE executions SET selective=? WHERE id=?", (json.dumps(config), execution_id)
            )

    def resume_execution(self, execution_id: str) -> bool:
        """Set a Failed or Stopped execution Executing again, run by this process.

        Returns False when it is in another status (another process may have resumed it).
        """
        pid, started = this_process()
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE executions SET status='Executing', failure_reason=NULL, ended=NULL, "
                "modified=?, engine_pid=?, engine_start=?, stop_requested=0 "
                "WHERE id=? AND status IN ('Failed', 'Stopped')",
                (time.time(), pid, started, execution_id),
            )
            return cursor.rowcount == 1

    def take_step(self, execution_id: str, source: StepRecord, source_arn: str, log: str) -> None:
        """Record step ``source`` of another execution as this one's, not run here (0 attempts)."""
        now = time.time()
        metadata = {k: v for k, v in source.metadata.items() if not k.startswith("_")}
        metadata["_selective_source"] = source_arn
        with self._tx() as db:
            db.execute(
                _INSERT_STEP,
                (
                    execution_id,
                    source.name,
                    source.type,
                    source.display_name,
                    source.status,
                    now,
                    now,
                    None,
                    json.dumps(metadata, default=str),
                    json.dumps(source.properties, default=str),
                    source.cache_key,
                    None,
                    0,
                    log,
                ),
            )

    def request_stop(self, execution_id: str) -> None:
        """Ask the engine running ``execution_id`` (in any process) to stop it."""
        with self._tx() as db:
            db.execute(
                "UPDATE executions SET stop_requested=1, modified=? WHERE id=? AND status IN "
                "('Executing', 'Stopping')",
                (time.time(), execution_id),
            )

    def stop_requested(self, execution_id: str) -> bool:
        """Whether a stop of ``execution_id`` was asked for."""
        rows = self._query("SELECT stop_requested FROM executions WHERE id=?", (execution_id,))
        return bool(rows and rows[0]["stop_requested"])

    def reap(self) -> list[str]:
        """Mark executions whose engine process is gone as Failed; returns their ids.

        Their running steps end as SageMaker ends them when a pipeline fails under them (a
        step being stopped is Stopped, any other Failed), and their work folders are removed.
        """
        rows = self._query(
            "SELECT id, engine_pid, engine_start FROM executions WHERE status IN (?, ?) "
            "AND engine_pid IS NOT NULL",
            _RUNNING,
        )
        dead = [r["id"] for r in rows if not is_alive(r["engine_pid"], r["engine_start"])]
        if not dead:
            return []
        now = time.time()
        with self._tx() as db:
            for execution_id in dead:
                db.execute(
                    "UPDATE steps SET status='Stopped', ended=? WHERE execution_id=? "
                    "AND status='Stopping'",
                    (now, execution_id),
                )
                db.execute(
                    "UPDATE steps SET status='Failed', ended=?, failure_reason=? "
                    "WHERE execution_id=? AND status IN ('Starting', 'Executing')",
                    (now, ENGINE_EXITED, execution_id),
                )
                db.execute(
                    "UPDATE executions SET status='Failed', failure_reason=?, modified=?, "
                    "ended=? WHERE id=? AND status IN (?, ?)",
                    (ENGINE_EXITED, now, now, execution_id, *_RUNNING),
                )
        for execution_id in dead:
            # A step killed while committing its outputs: finish, so that all of them are there.
            for row in self._query(
                "SELECT publishing FROM steps WHERE execution_id=? AND publishing IS NOT NULL",
                (execution_id,),
            ):
                with contextlib.suppress(OSError, ValueError):
                    commit(json.loads(row["publishing"]))
            shutil.rmtree(self.path.parent / "work" / execution_id, ignore_errors=True)
        return dead

    def unfinished_publications(
        self,
    ) -> list[tuple[str, str, list[str], float, dict[str, str] | None]]:
        """(execution, step, remote URIs, start, ETags before the first write, when recorded)
        of publications an engine died in the middle of."""
        rows = self._query(
            "SELECT s.execution_id, s.name, s.publishing FROM steps s JOIN executions e "
            "ON e.id = s.execution_id WHERE s.publishing IS NOT NULL AND e.status NOT IN (?, ?)",
            _RUNNING,
        )
        found = []
        for row in rows:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                plan = json.loads(row["publishing"])
                uris = [str(u) for u in plan.get("remote", [])]
                if uris:
                    since = float(plan.get("since", 0.0))
                    before = plan.get("before")
                    etags = None if before is None else {str(k): str(v) for k, v in before.items()}
                    found.append((str(row["execution_id"]), str(row["name"]), uris, since, etags))
        return found

    def execution(self, execution_id: str) -> ExecutionRecord:
        """One execution; an id prefix is enough when it is unique."""
        rows = self._query("SELECT * FROM executions WHERE id=?", (execution_id,))  # by key
        if not rows:  # a prefix or an ARN: every row is looked at
            rows = self._query(  # a plain prefix: '%' or '_' in a mistyped id is no pattern
                "SELECT * FROM executions WHERE (?1 != '' AND substr(id, 1, length(?1)) = ?1) "
                "OR arn=?1 ORDER BY created DESC",
                (execution_id,),
            )
        if not rows:
            raise ExecutionError(
                f"no local execution '{execution_id}'; 'sagepipe executions list' shows them"
            )
        if len(rows) > 1 and rows[0]["id"] != execution_id:
            raise ExecutionError(f"execution id '{execution_id}' is ambiguous; give more of it")
        return _execution(rows[0])

    def executions(self, pipeline: str | None = None, limit: int = 50) -> list[ExecutionRecord]:
        """The newest executions, of one pipeline or of all."""
        query = "SELECT * FROM executions"
        args: tuple[Any, ...] = ()
        if pipeline:
            query += " WHERE pipeline=?"
            args = (pipeline,)
        query += " ORDER BY created DESC LIMIT ?"
        rows = self._query(query, (*args, limit))
        return [_execution(r) for r in rows]

    # steps ---------------------------------------------------------------------------------

    def start_step(
        self,
        execution_id: str,
        name: str,
        kind: str,
        display_name: str | None,
        cache_key: str | None,
        attempt: int = 1,
    ) -> None:
        """Record a step as Executing, at its ``attempt`` (more than 1 when retried)."""
        with self._tx() as db:
            db.execute(
                _INSERT_STEP,
                (
                    execution_id,
                    name,
                    kind,
                    display_name,
                    "Executing",
                    time.time(),
                    None,
                    None,
                    "{}",
                    "{}",
                    cache_key,
                    None,
                    attempt,
                    None,
                ),
            )

    def update_step(self, execution_id: str, name: str, **fields: Any) -> None:
        """Update a step's columns (metadata and properties are JSON-encoded)."""
        for key in ("metadata", "properties", "publishing"):
            if fields.get(key) is not None:
                fields[key] = json.dumps(fields[key], default=str)
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(
                f"UPDATE steps SET {cols} WHERE execution_id=? AND name=?",
                (*fields.values(), execution_id, name),
            )
            db.execute("UPDATE executions SET modified=? WHERE id=?", (time.time(), execution_id))

    def steps(self, execution_id: str) -> list[StepRecord]:
        """The steps of an execution in start order."""
        rows = self._query(
            "SELECT * FROM steps WHERE execution_id=? ORDER BY started, name", (execution_id,)
        )
        return [_step(r) for r in rows]

    def step_log(self, execution_id: str, name: str) -> str | None:
        """The stored log text of a finished step."""
        rows = self._query(
            "SELECT log FROM steps WHERE execution_id=? AND name=?", (execution_id, name)
        )
        return rows[0]["log"] if rows else None

    def cache_hit(
        self, pipeline: str, name: str, cache_key: str, since: float
    ) -> StepRecord | None:
        """The newest Succeeded run of this step with this cache key, started after ``since``.

        Only a run that did the work is a source (a hit names the run it reused, as on
        SageMaker). An execution whose engine exited mid-run is never a source: nothing
        vouches for what it left in the store.
        """
        rows = self._query(
            "SELECT s.* FROM steps s JOIN executions e ON e.id = s.execution_id "
            "WHERE e.pipeline=? AND s.name=? AND s.cache_key=? AND s.status='Succeeded' "
            "AND s.cache_source IS NULL "
            "AND s.started>=? AND NOT (e.status='Failed' AND e.failure_reason IS ?) "
            "ORDER BY s.started DESC LIMIT 1",
            (pipeline, name, cache_key, since, ENGINE_EXITED),
        )
        return _step(rows[0]) if rows else None


def _retry_locked(action: Callable[[], object], attempts: int = 50) -> None:
    """Run ``action``, retrying while SQLite says the database is locked (up to ~10 s)."""
    for attempt in range(attempts):
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 + 0.01 * attempt)


def _execution(row: sqlite3.Row) -> ExecutionRecord:
    return ExecutionRecord(
        id=row["id"],
        pipeline=row["pipeline"],
        arn=row["arn"],
        status=row["status"],
        failure_reason=row["failure_reason"],
        created=row["created"],
        modified=row["modified"],
        ended=row["ended"],
        parameters=json.loads(row["parameters"] or "{}"),
        definition=row["definition"],
        max_parallel=row["max_parallel"],
        selective=json.loads(row["selective"]) if row["selective"] else None,
        sandbox=row["sandbox"],
        store=row["store"],
    )


def _step(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        execution_id=row["execution_id"],
        name=row["name"],
        type=row["type"],
        display_name=row["display_name"],
        status=row["status"],
        started=row["started"],
        ended=row["ended"],
        failure_reason=row["failure_reason"],
        metadata=json.loads(row["metadata"] or "{}"),
        properties=json.loads(row["properties"] or "{}"),
        cache_key=row["cache_key"],
        cache_source=row["cache_source"],
        attempts=1 if row["attempts"] is None else row["attempts"],
    )


def any_open() -> bool:
    """Whether some History of this process still has its connection open."""
    return any(history._closer.alive for history in list(_LIVE))
