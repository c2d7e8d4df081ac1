"""A step's outputs reach the local store all at once, or not at all.

While a step publishes, each output file is copied into a staging folder beside its work
folder (``work/<execution>/.publish-<step>/``), not into the store. When every file is there,
the plan (staged file → stored file) is recorded in the history and carried out with renames.
An engine killed while staging leaves nothing in the store (its work folder goes when the
execution is marked Failed); one killed while committing leaves the plan, which whoever marks
the execution Failed finishes. A remote store (S3) is still written object by object.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagepipe.errors import ExecutionError

if TYPE_CHECKING:
    from sagepipe.engine.context import StepContext, StepOutcome


class Publication:
    """The files and folder markers a step has staged for the store, in order."""

    def __init__(self, folder: Path, stopping: threading.Event | None = None) -> None:
        self.folder = folder
        self.stopping = stopping
        self.stopped = False
        self.files: list[tuple[str, str]] = []
        self.markers: list[str] = []

    def stage(self, final: Path) -> Path:
        """Where to write the file that becomes ``final`` in the store when committed."""
        if self.stopping is not None and self.stopping.is_set():
            self.stopped = True  # a stop does not wait for the rest of a long publication
            raise ExecutionError("stopped while publishing the outputs")
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


def settle(ctx: StepContext, outcome: StepOutcome) -> StepOutcome:
    """Commit what a succeeded step staged (recording the plan first), discard it otherwise."""
    from sagepipe.engine.context import StepOutcome

    publication = ctx.publication
    if publication is None:
        return outcome
    if publication.stopped or (outcome.status == "Succeeded" and ctx.processes.stopping.is_set()):
        publication.discard()  # stopped while publishing: nothing reaches the store
        return StepOutcome("Stopped", outcome.properties, outcome.metadata, "Stopped by user")
    try:
        if outcome.status == "Succeeded" and (publication.files or publication.markers):
            plan = publication.plan()
            ctx.history.update_step(ctx.execution.id, ctx.step.name, publishing=plan)
            commit(plan)
            ctx.history.update_step(ctx.execution.id, ctx.step.name, publishing=None)
    except OSError as exc:
        reason = f"publishing the outputs: {exc.strerror}: {exc.filename}"
        return StepOutcome("Failed", outcome.properties, outcome.metadata, reason)
    finally:
        publication.discard()
    return outcome


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
