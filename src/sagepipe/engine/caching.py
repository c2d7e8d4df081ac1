"""The cache decision of each step, explained, and the data check SageMaker does not make.

A hit names the run it reuses; a miss names what changed since the most recent earlier run
of the step in the same pipeline (definition/cache.py compares the fields). SageMaker keys
its cache on a step's arguments, never on the data they point at, so a hit can reuse a run
whose input objects have changed since: each input object's fingerprint (size, ETag, mtime
and a content hash) is recorded when a step runs, and a hit whose inputs differ says which.
An object is hashed once per version: its hash is kept by size, ETag and mtime.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sagepipe.definition import Definition, StepDef
from sagepipe.definition.cache import (
    cache_fields,
    cache_key,
    cache_since,
    describe_changes,
    explain_miss,
    step_inputs,
)
from sagepipe.engine.cache_records import EarlierRun, Fingerprint
from sagepipe.engine.context import StepOutcome
from sagepipe.engine.history import History
from sagepipe.errors import DefinitionError, SagepipeError, UsageError
from sagepipe.records import record
from sagepipe.storage import ObjectInfo, ObjectStore

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
MAX_NAMED = 5  # objects named in one warning; the rest are counted


@record
class CachePolicy:
    """How one run uses the cache: steps to rerun even on a hit, or no hits at all."""

    refresh: frozenset[str] = frozenset()
    disabled: bool = False

    @classmethod
    def build(cls, definition: Definition, refresh: Iterable[str], disabled: bool) -> CachePolicy:
        """A policy for ``definition``; ``refresh`` items may be comma lists.

        Raises:
            UsageError: a step name the definition does not have.
        """
        names = {n.strip() for item in refresh for n in item.split(",") if n.strip()}
        known = {s.name for s in definition.all_steps()}
        unknown = sorted(names - known)
        if unknown:
            raise UsageError(
                f"--refresh {', '.join(unknown)}: no such step; steps are: {', '.join(sorted(known))}"
            )
        return cls(frozenset(names), disabled)


@record(frozen=False)
class CacheDecision:
    """What the cache decided for one step, and why."""

    key: str | None
    result: str  # hit | miss | off | "" (the step type never caches)
    reason: str
    source: str | None = None  # the execution whose run a hit reuses
    outcome: StepOutcome | None = None
    warnings: list[str] = field(default_factory=list)
    fields: dict[str, Any] | None = None

    def summary(self) -> str:
        """One line: ``hit: run of execution X`` or ``miss: script train.py changed``."""
        return f"{self.result}: {self.reason}" if self.result else ""

    def to_json(self) -> dict[str, Any]:
        """The decision as stored in the history and shown by ``executions describe``."""
        out: dict[str, Any] = {"Result": self.result, "Reason": self.reason}
        if self.source:
            out["SourceExecutionId"] = self.source
        if self.warnings:
            out["Warnings"] = list(self.warnings)
        return out


def decide(
    history: History,
    store: ObjectStore,
    execution: tuple[str, str],
    step: StepDef,
    arguments: Mapping[str, Any],
    parameters: Mapping[str, Any],
    policy: CachePolicy,
) -> CacheDecision:
    """The cache decision for ``step`` with its resolved ``arguments``; recorded in the history.

    ``execution`` is (pipeline name, execution id). A miss of a step that caches records the
    fingerprints of the objects it is about to read.
    """
    pipeline, execution_id = execution
    decision = _decide(history, store, pipeline, execution_id, step, arguments, parameters, policy)
    if decision.result:
        history.save_cache_decision(
            execution_id, step.name, decision.result, decision.to_json(), decision.fields
        )
    if decision.result == "miss":  # this run may be the source of later hits
        inputs = [(uri, kind) for _, uri, kind in step_inputs(step.type, arguments)]
        history.save_step_inputs(execution_id, step.name, fingerprints(store, history, inputs))
    return decision


def likely_hit(
    history: History,
    execution: tuple[str, str],
    step: StepDef,
    upstream: Iterable[str],
    policy: CachePolicy,
) -> bool:
    """Whether ``step`` will probably be a cache hit (so starting its process early is waste):
    it caches, an earlier run can serve it, and no step it reads from ran in this execution."""
    if policy.disabled or step.name in policy.refresh or cache_fields(step.type, {}) is None:
        return False
    try:
        since = cache_since(step.cache_config)
    except DefinitionError:
        return False
    if since is None:
        return False
    pipeline, execution_id = execution
    decided = history.cache_decisions(execution_id)
    if any(decided.get(u, {}).get("Result") in ("miss", "off") for u in upstream):
        return False
    return history.has_cache_source(pipeline, step.name, since)


def _decide(
    history: History,
    store: ObjectStore,
    pipeline: str,
    execution_id: str,
    step: StepDef,
    arguments: Mapping[str, Any],
    parameters: Mapping[str, Any],
    policy: CachePolicy,
) -> CacheDecision:
    fields = cache_fields(step.type, arguments)
    key = cache_key(step.type, arguments)
    if fields is None or key is None:
        return CacheDecision(None, "", "")
    since = cache_since(step.cache_config)  # a malformed ExpireAfter fails the step, naming it
    if since is None:
        return CacheDecision(key, "off", "cache disabled for this step", fields=fields)
    if policy.disabled:
        return CacheDecision(key, "miss", "cache disabled for this run (--no-cache)", fields=fields)
    if step.name in policy.refresh:
        return CacheDecision(key, "miss", "refreshed (--refresh)", fields=fields)
    record = history.cache_hit(pipeline, step.name, key, since)
    if record is not None:
        source = history.execution(record.execution_id)
        metadata = {k: v for k, v in record.metadata.items() if not k.startswith("_")}
        metadata["_cache_source"] = source.arn
        decision = CacheDecision(
            key,
            "hit",
            f"reuses the run of execution {record.execution_id}",
            record.execution_id,
            StepOutcome("Succeeded", record.properties, metadata),
            fields=fields,
        )
        decision.warnings = data_warnings(store, history, record.execution_id, step, arguments)
        return decision
    reason = _miss_reason(history, pipeline, execution_id, step, key, since, fields, parameters)
    return CacheDecision(key, "miss", reason, fields=fields)


def _miss_reason(
    history: History,
    pipeline: str,
    execution_id: str,
    step: StepDef,
    key: str,
    since: float,
    fields: Mapping[str, Any],
    parameters: Mapping[str, Any],
) -> str:
    same = history.earlier_runs(pipeline, step.name, execution_id, cache_key=key)
    if same:
        run = same[0]
        if run.status == "Succeeded" and run.started < since:
            expire = (step.cache_config or {}).get("ExpireAfter")
            return f"expired: the run of execution {run.execution_id} ({_when(run)}) is older than ExpireAfter {expire}"
        if run.engine_exited:
            return f"the run of execution {run.execution_id} with these arguments ended when its engine exited"
        if run.status != "Succeeded":
            return f"the run of execution {run.execution_id} with these arguments did not succeed ({run.status})"
    earlier = history.earlier_runs(pipeline, step.name, execution_id)
    if not earlier or earlier[0].fields is None:
        return "no earlier run"
    previous = earlier[0]
    changes = explain_miss(
        step.type,
        step.arguments,
        previous.fields or {},
        fields,
        previous.parameters,
        parameters,
    )
    if not changes:  # same fields as a run that is no source (stopped, say): say which
        return f"the run of execution {previous.execution_id} is not reusable ({previous.status})"
    return f"changed since execution {previous.execution_id}: {describe_changes(changes)}"


def _when(run: EarlierRun) -> str:
    return datetime.fromtimestamp(run.started, UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- input fingerprints ----------------------------------------------------------------------


def objects_of(store: ObjectStore, uri: str, data_type: str) -> list[ObjectInfo]:
    """The objects an input names now: every object under an S3Prefix, or the manifest."""
    try:
        if data_type == "ManifestFile":
            info = store.head(uri)
            return [info] if info is not None else []
        return [o for o in store.list(uri) if not o.is_folder]
    except SagepipeError:  # a URI the store refuses: the step says so when it stages it
        return []


def fingerprints(
    store: ObjectStore, history: History, inputs: Iterable[tuple[str, str]]
) -> list[Fingerprint]:
    """The fingerprint of every object the ``(uri, data type)`` inputs name now."""
    found: dict[str, ObjectInfo] = {}
    for uri, data_type in inputs:
        for info in objects_of(store, uri, data_type):
            found.setdefault(info.uri, info)
    return list(hashed(store, history, found.values()).values())


def hashed(
    store: ObjectStore, history: History, infos: Iterable[ObjectInfo]
) -> dict[str, Fingerprint]:
    """Each object's fingerprint; only a version never hashed before is read (one lookup and
    one write in the history for all of them)."""
    infos = list(infos)
    known = history.known_hashes(i.uri for i in infos)
    out: dict[str, Fingerprint] = {}
    new: list[Fingerprint] = []
    for info in infos:
        was = known.get(info.uri)
        if was is not None and was.same_version(info.size, info.etag, info.last_modified):
            out[info.uri] = was
            continue
        digest = content_hash(store, info)
        out[info.uri] = Fingerprint(info.uri, info.size, info.etag, info.last_modified, digest)
        if digest:
            new.append(out[info.uri])
    history.save_object_hashes(new)
    return out


def content_hash(store: ObjectStore, info: ObjectInfo) -> str:
    """``sha256:<hex>`` of the object's bytes; ``etag:<etag>`` for a remote object whose
    store reports one (S3 computes it from the bytes); "" when it cannot be read.

    A local file is opened without following a link: a symlink in the store is not read.
    """
    path = store.local_path(info.uri)
    if path is not None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return ""
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    if info.etag:
        return f"etag:{info.etag}"
    with tempfile.TemporaryDirectory(prefix="sagepipe-hash-") as tmp:
        target = Path(tmp) / "object"
        try:
            store.get_file(info.uri, target, info)
        except SagepipeError:
            return ""
        with target.open("rb") as fh:
            return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def data_changes(
    store: ObjectStore,
    history: History,
    recorded: Mapping[str, Fingerprint],
    inputs: Iterable[tuple[str, str]],
) -> list[str]:
    """The objects under ``inputs`` that differ from ``recorded``: changed, added, deleted.

    An object with its recorded size, ETag and mtime is unchanged without a read; one whose
    size, ETag or mtime moved is hashed (once per version) and compared by content.
    """
    out: list[str] = []
    seen: dict[str, ObjectInfo] = {}
    for uri, data_type in inputs:
        for info in objects_of(store, uri, data_type):
            seen.setdefault(info.uri, info)
    moved = [
        info
        for uri, info in seen.items()
        if uri in recorded
        and not recorded[uri].same_version(info.size, info.etag, info.last_modified)
    ]
    now = hashed(store, history, moved)
    for uri in seen:
        if uri not in recorded:
            out.append(f"{uri} (added)")
        elif uri in now and (not now[uri].hash or now[uri].hash != recorded[uri].hash):
            out.append(f"{uri} (changed)")
    out += [f"{uri} (deleted)" for uri in recorded if uri not in seen]
    return out


def data_warnings(
    store: ObjectStore, history: History, source: str, step: StepDef, arguments: Mapping[str, Any]
) -> list[str]:
    """A warning when a hit's input objects changed since the run it reuses."""
    recorded = history.step_inputs(source, step.name)
    inputs = [(uri, kind) for _, uri, kind in step_inputs(step.type, arguments)]
    if recorded is None or not inputs:
        return []
    changed = data_changes(store, history, recorded, inputs)
    if not changed:
        return []
    named = ", ".join(changed[:MAX_NAMED])
    more = f" and {len(changed) - MAX_NAMED} more" if len(changed) > MAX_NAMED else ""
    return [
        f"input data changed since the run of execution {source} that this hit reuses: "
        f"{named}{more}; rerun the step with --refresh {step.name}"
    ]
