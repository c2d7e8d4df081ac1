"""The sync plan: what to transfer, delete, refuse or report, decided before anything is written.

Pure: it sees listings, the manifest and a way to hash a local file, and returns actions.
A path changed on one side since the last sync is transferred from that side; changed on both
is a conflict (skipped unless ``prefer`` says which side wins); keys that would escape the
destination, file/folder clashes and case-only clashes are refused.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sagepipe.errors import SyncError, UnsafeKeyError
from sagepipe.records import record
from sagepipe.storage import safe_key
from sagepipe.sync.manifest import Entry
from sagepipe.sync.scan import LocalFile, RemoteObject

TRANSFER, MKDIR, DELETE = "transfer", "mkdir", "delete"
UNCHANGED, SKIP, CONFLICT, REFUSED = "unchanged", "skip", "conflict", "refused"


# A plain frozen dataclass, not a record: a sync makes several per file, and dataclasses'
# own __init__ sets fields faster than a record's shared __setattr__ (sagepipe/records.py).
@dataclass(frozen=True)
class Action:
    """One decision about one relative path."""

    kind: str
    path: str
    reason: str = ""
    size: int = 0


@record(frozen=False)
class Plan:
    """Every action, grouped for reporting."""

    direction: str
    actions: list[Action] = field(default_factory=list)

    def of(self, kind: str) -> list[Action]:
        """The actions of one kind."""
        return [a for a in self.actions if a.kind == kind]


@record
class Options:
    """How to sync."""

    delete: bool = False
    max_delete: int | None = None
    prefer: str | None = None
    mirror: bool = False


def _remote_changed(r: RemoteObject, m: Entry | None) -> bool:
    return m is None or r.size != m.size or (bool(m.etag) and bool(r.etag) and r.etag != m.etag)


def _local_changed(
    rel: str,
    f: LocalFile,
    m: Entry | None,
    md5: Callable[[str], str],
    md5_etag: Callable[[str, str], str | None],
) -> bool:
    if m is None or f.size != m.size:
        return True
    if f.mtime == m.local_mtime:
        return False
    if m.md5:
        return md5(rel) != m.md5
    return md5_etag(rel, m.etag) != m.etag  # multipart objects are recorded by ETag only


def _same_content(
    rel: str, f: LocalFile, r: RemoteObject, md5_etag: Callable[[str, str], str | None]
) -> bool:
    if f.size != r.size:
        return False
    local = md5_etag(rel, r.etag)
    return local is not None and local == r.etag


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _name_problem(rel: str) -> str | None:
    try:
        safe_key(rel.rstrip("/") or ".")
    except UnsafeKeyError as exc:
        return str(exc)
    if _CONTROL.search(rel):
        return f"key {rel!r} contains control characters; refused"
    return None


def refuse_unsafe(
    remote: Mapping[str, RemoteObject],
    local: Mapping[str, LocalFile] | None = None,
    direction: str = "pull",
) -> dict[str, str]:
    """Paths that must not be transferred, with the reason.

    Names the destination cannot hold (``..``, absolute, backslash, drive letter, control
    characters), a path that is a file on one side and a folder on the other (or in the
    bucket both at once), and case-only clashes. Push checks local names by the rules pull
    applies, so what one pushes another can pull.
    """
    local = local or {}
    source: Mapping[str, object] = local if direction == "push" else remote
    refused: dict[str, str] = {}
    for rel in source:
        problem = _name_problem(rel)
        if problem:
            refused[rel] = problem
    files: dict[str, str] = {}  # path -> where it is a file
    folders: dict[str, str] = {}  # path -> a key showing it is a folder
    for side, entries in (("local", local), ("bucket", remote)):
        for rel, item in entries.items():
            parts = rel.rstrip("/").split("/")
            if getattr(item, "is_folder", False):
                folders.setdefault(rel.rstrip("/"), f"{side} '{rel}'")
            else:
                files.setdefault(rel, side)
            for depth in range(1, len(parts)):
                folders.setdefault("/".join(parts[:depth]), f"{side} '{rel}'")
    for path, side in files.items():
        shown = folders.get(path)
        if shown is None:
            continue
        reason = f"'{path}' is a file ({side}) and a folder ({shown}); resolve it by hand"
        refused[path] = reason
        for rel in (*local, *remote):
            if rel.startswith(path + "/"):
                refused.setdefault(rel, reason)
    by_case: dict[str, list[str]] = defaultdict(list)
    for rel in source:
        by_case[rel.lower()].append(rel)
    for group in by_case.values():
        if len(group) > 1:
            for rel in group:
                refused.setdefault(rel, f"case-only clash between {sorted(group)}")
    return refused


def make_plan(
    direction: str,
    local: Mapping[str, LocalFile],
    remote: Mapping[str, RemoteObject],
    manifest: Mapping[str, Entry],
    options: Options,
    md5: Callable[[str], str],
    md5_etag: Callable[[str, str], str | None],
) -> Plan:
    """Decide every path. ``direction`` is ``push`` (local -> remote) or ``pull``."""
    if direction not in ("push", "pull"):
        raise SyncError(f"direction {direction!r} is not push or pull")
    plan = Plan(direction)
    refused = refuse_unsafe(remote, local, direction)
    for rel, reason in sorted(refused.items()):
        plan.actions.append(Action(REFUSED, rel, reason))
    pushing = direction == "push"
    deletions: list[Action] = []
    for rel in sorted(set(local) | set(remote)):
        if rel in refused:
            continue
        f, r, m = local.get(rel), remote.get(rel), manifest.get(rel)
        if (f is not None and f.is_folder) or (r is not None and r.is_folder):
            _folder(plan, deletions, rel, f, r, pushing, options)
            continue
        src, dst = (f, r) if pushing else (r, f)
        src_changed = (
            _local_changed(rel, f, m, md5, md5_etag)
            if pushing and f
            else _remote_changed(r, m)
            if r
            else False
        )
        dst_changed = (
            _remote_changed(r, m)
            if pushing and r
            else _local_changed(rel, f, m, md5, md5_etag)
            if f
            else False
        )
        size = (f.size if f else 0) if pushing else (r.size if r else 0)
        if src is not None and dst is None:
            plan.actions.append(
                Action(TRANSFER, rel, "new" if m is None else "missing at destination", size)
            )
        elif src is not None and dst is not None:
            assert f is not None and r is not None
            if m is None or (src_changed and dst_changed):
                if _same_content(rel, f, r, md5_etag):
                    plan.actions.append(Action(UNCHANGED, rel, "same content"))
                elif options.prefer == ("local" if pushing else "remote"):
                    plan.actions.append(
                        Action(TRANSFER, rel, f"conflict resolved: --prefer {options.prefer}", size)
                    )
                elif options.prefer is not None:
                    plan.actions.append(
                        Action(SKIP, rel, f"conflict resolved: --prefer {options.prefer}")
                    )
                else:
                    why = (
                        "changed on both sides since the last sync"
                        if m
                        else "differs on both sides and no previous sync is recorded"
                    )
                    plan.actions.append(Action(CONFLICT, rel, why))
            elif src_changed:
                plan.actions.append(Action(TRANSFER, rel, "changed", size))
            elif dst_changed:
                other = "pull" if pushing else "push"
                plan.actions.append(
                    Action(SKIP, rel, f"changed only at the destination ({other} to bring it back)")
                )
            else:
                plan.actions.append(Action(UNCHANGED, rel))
        elif dst is not None:
            if m is not None and dst_changed:
                plan.actions.append(
                    Action(SKIP, rel, "deleted at the source but changed at the destination")
                )
            elif options.mirror:
                deletions.append(Action(DELETE, rel, "not at the source (--mirror)"))
            elif options.delete and m is not None:
                deletions.append(Action(DELETE, rel, "deleted at the source since the last sync"))
            elif options.delete:
                plan.actions.append(
                    Action(SKIP, rel, "never synced from here, kept (--mirror deletes it)")
                )
    _check_deletions(plan, deletions, local if not pushing else remote, options)
    return plan


def _folder(
    plan: Plan,
    deletions: list[Action],
    rel: str,
    f: LocalFile | None,
    r: RemoteObject | None,
    pushing: bool,
    options: Options,
) -> None:
    src, dst = (f, r) if pushing else (r, f)
    if src is not None and dst is None:
        plan.actions.append(Action(MKDIR, rel, "empty folder"))
    elif src is None and dst is not None and (options.mirror or options.delete):
        deletions.append(Action(DELETE, rel, "folder not at the source"))
    else:
        plan.actions.append(Action(UNCHANGED, rel))


def _check_deletions(
    plan: Plan, deletions: list[Action], destination: Mapping[str, object], options: Options
) -> None:
    if not deletions:
        return
    limit = options.max_delete
    total = max(1, len(destination))
    if limit is None and len(deletions) > total / 2:
        reason = (
            f"refusing to delete {len(deletions)} of {total} destination paths (more than half); "
            "pass --max-delete N to allow it"
        )
        plan.actions.extend(Action(REFUSED, a.path, reason) for a in deletions)
        return
    if limit is not None and len(deletions) > limit:
        reason = f"{len(deletions)} deletions exceed --max-delete {limit}"
        plan.actions.extend(Action(REFUSED, a.path, reason) for a in deletions)
        return
    plan.actions.extend(deletions)
