"""A step's outputs reach the local store all at once, or not at all.

While a step publishes, each output file is copied into a staging folder beside its work
folder (``work/<execution>/.publish-<step>/``), not into the store. When every file is there,
the plan (staged file → stored file) is recorded in the history and carried out with renames.
An engine killed while staging leaves nothing in the store (its work folder goes when the
execution is marked Failed); one killed while committing leaves the plan, which whoever marks
the execution Failed finishes. A remote store (S3) offers no rename: there each output object is
written in place, but only after the list of every object the step is about to write is
recorded in the history, with the ETags of those already there. A step that fails or is stopped
while publishing deletes what it wrote; an engine killed meanwhile leaves the list, and the next
engine to start deletes the objects of it that are new or changed (``roll_back_leftovers``), so
a step's outputs stay in the store only when all of them are there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagepipe.errors import ExecutionError, SagepipeError

if TYPE_CHECKING:
    from sagepipe.engine.context import StepContext, StepOutcome
    from sagepipe.engine.history import History
    from sagepipe.storage import ObjectStore

log = logging.getLogger(__name__)
CLOCK_SLACK = 2.0  # seconds: S3's LastModified is whole seconds, from the server's clock


class Publication:
    """The files and folder markers a step has staged for the store, in order."""

    def __init__(
        self,
        folder: Path,
        stopping: threading.Event | None = None,
        record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.folder = folder
        self.stopping = stopping
        self.stopped = False
        self.record = record
        self.files: list[tuple[str, str]] = []
        self.markers: list[str] = []
        self.remote: list[str] = []  # every remote object the step is about to write
        self.before: dict[str, str] = {}  # the ETags of those already there, before any write
        self.written: list[str] = []  # those written so far
        self.since = time.time()

    def intend_remote(self, uris: list[str], before: Mapping[str, str] | None = None) -> None:
        """Record the remote objects about to be written, before the first of them is, with
        the ETags of those that exist already (``before``)."""
        if not uris:
            return
        self.remote.extend(uris)
        self.before.update(before or {})
        if self.record is not None:
            plan = {"remote": list(self.remote), "since": self.since, "before": self.before}
            self.record(plan)

    def wrote(self, uri: str) -> None:
        """A remote object is written."""
        self.written.append(uri)

    def roll_back(self, store: ObjectStore) -> None:
        """Delete the remote objects this step wrote; those it had not reached stay as they were."""
        delete_all(store, self.written)
        self.written.clear()

    def check_stop(self) -> None:
        """Raise when the run is stopping: a stop does not wait for a long publication."""
        if self.stopping is not None and self.stopping.is_set():
            self.stopped = True
            raise ExecutionError("stopped while publishing the outputs")

    def stage(self, final: Path) -> Path:
        """Where to write the file that becomes ``final`` in the store when committed."""
        self.check_stop()
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.folder / f"{len(self.files):06d}"
        self.files.append((str(staged), str(final)))
        return staged

    def marker(self, final: Path) -> None:
        """A folder marker (an empty folder in the local store) made when committed."""
        self.markers.append(str(final))

    def plan(self) -> dict[str, Any]:
        """The commit plan as recorded in the history."""
        return {"files": [list(pair) for pair in self.files], "markers": list(self.markers)}

    def discard(self) -> None:
        """Forget what was staged."""
        shutil.rmtree(self.folder, ignore_errors=True)


def delete_all(store: ObjectStore, uris: list[str]) -> None:
    """Delete ``uris``, those already gone included; a failure is logged, not raised."""
    for uri in uris:
        try:
            store.delete(uri)
        except SagepipeError as exc:
            log.warning("could not remove the partial output %s: %s", uri, exc)


def roll_back_leftovers(history: History, open_store: Callable[[], ObjectStore]) -> int:
    """Delete the remote outputs of steps whose engine died while publishing them.

    The store is opened only when there is something to delete.
    """
    count = 0
    leftovers = history.unfinished_publications()
    store = open_store() if leftovers else None
    for execution_id, step, uris, since, before in leftovers:
        assert store is not None
        written = [u for u in uris if _written_since(store, u, since, before)]
        delete_all(store, written)
        history.update_step(execution_id, step, publishing=None)
        count += len(written)
    return count


def _written_since(
    store: ObjectStore, uri: str, since: float, before: Mapping[str, str] | None
) -> bool:
    """Whether the step wrote ``uri``: an object the step had not reached (one an earlier run
    left at a fixed destination) is kept. With the ETags recorded before the first write, an
    object is the step's when it is new or its ETag changed; a plan without them goes by time
    (S3 times have 1 s resolution and come from the server's clock)."""
    try:
        info = store.head(uri)
    except SagepipeError as exc:
        log.warning("could not check the partial output %s: %s", uri, exc)
        return False
    if info is None:
        return False
    if before is not None:
        return before.get(uri) != info.etag
    return info.last_modified >= since - CLOCK_SLACK


def settle(ctx: StepContext, outcome: StepOutcome) -> StepOutcome:
    """Commit what a succeeded step staged (recording the plan first), discard it otherwise."""
    from sagepipe.engine.context import StepOutcome

    publication = ctx.publication
    if publication is None:
        return outcome
    if publication.stopped or (outcome.status == "Succeeded" and ctx.processes.stopping.is_set()):
        publication.discard()  # stopped while publishing: nothing reaches the store
        _forget_remote(ctx, publication)
        return StepOutcome("Stopped", outcome.properties, outcome.metadata, "Stopped by user")
    if outcome.status != "Succeeded":
        publication.discard()
        _forget_remote(ctx, publication)
        return outcome
    try:
        if publication.files or publication.markers:
            plan = publication.plan()
            ctx.history.update_step(ctx.execution.id, ctx.step.name, publishing=plan)
            commit(plan)
        if publication.files or publication.markers or publication.remote:
            ctx.history.update_step(ctx.execution.id, ctx.step.name, publishing=None)
    except OSError as exc:
        reason = f"publishing the outputs: {exc.strerror}: {exc.filename}"
        return StepOutcome("Failed", outcome.properties, outcome.metadata, reason)
    finally:
        publication.discard()
    return outcome


def _forget_remote(ctx: StepContext, publication: Publication) -> None:
    """A step that did not succeed leaves none of its remote outputs behind."""
    if publication.remote:
        publication.roll_back(ctx.store)
        ctx.history.update_step(ctx.execution.id, ctx.step.name, publishing=None)


def commit(plan: Mapping[str, Any]) -> None:
    """Move every staged file into place and make the markers; safe to repeat after a crash."""
    for staged, final in plan.get("files", []):
        if not os.path.lexists(staged):
            continue  # moved already
        target = Path(final)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staged, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_across(Path(staged), target)
    for final in plan.get("markers", []):
        Path(final).mkdir(parents=True, exist_ok=True)


def _copy_across(staged: Path, target: Path) -> None:
    """The store is on another file system: copy beside the target, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=".sagepipe-tmp-", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(staged, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    staged.unlink()
