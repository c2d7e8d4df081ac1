"""Rolling back the S3 outputs of a step whose engine died while it published them.

Only objects the step wrote go: an object at a fixed destination that an earlier run put there
moments before (within S3's one-second clock, or a skewed clock) and that the step had not
reached yet stays as it was.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.engine.history import History
from sagepipe.engine.publishing import Publication, roll_back_leftovers
from sagepipe.engine.staging import publish_output
from sagepipe.storage import ObjectStore, open_store

BUCKET = "rollback"


def _store(seaweed: object, project: Path) -> tuple[Settings, ObjectStore]:
    env = {**seaweed.env(), "SAGEPIPE_STORE": "s3", "SAGEPIPE_BUCKET": BUCKET}  # type: ignore[attr-defined]
    settings = Settings.from_env(cwd=project, environ=env)
    store = open_store(settings)
    store.ensure_bucket(BUCKET)
    return settings, store


class _EngineDies(Exception):
    """Stands for the engine's death right after the step's first object is written."""


def test_an_earlier_runs_object_the_step_never_reached_survives(
    seaweed: object, project: Path, tmp_path: Path
) -> None:
    settings, store = _store(seaweed, project)
    destination = f"s3://{BUCKET}/fixed"
    store.put(f"{destination}/b.csv", b"the earlier run's\n")  # an instant before this step
    history = History(settings.history_path)
    history.create_execution("rollbackexec", "p", "arn:p/rollbackexec", {}, "{}", 1, "process")
    history.start_step("rollbackexec", "s", "Processing", None, None)
    outputs = tmp_path / "o"
    outputs.mkdir()
    (outputs / "a.csv").write_text("this run's a\n")
    (outputs / "b.csv").write_text("this run's b\n")

    written: list[str] = []

    class Dying(Publication):
        def wrote(self, uri: str) -> None:
            written.append(uri)
            raise _EngineDies

    publication = Dying(
        tmp_path / "staged",
        threading.Event(),
        lambda plan: history.update_step("rollbackexec", "s", publishing=plan),
    )
    with pytest.raises(_EngineDies):
        publish_output(store, outputs, destination, "/opt/ml/processing/o", None, publication)
    assert written == [f"{destination}/a.csv"]
    history.finish_execution("rollbackexec", "Failed", "the engine exited")

    assert roll_back_leftovers(history, lambda: store) == 1
    assert store.head(f"{destination}/a.csv") is None
    assert store.get(f"{destination}/b.csv") == b"the earlier run's\n"
    assert history.unfinished_publications() == []
