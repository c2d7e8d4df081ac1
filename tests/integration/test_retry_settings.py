"""A retried execution runs where the execution ran: on its store, in its sandbox.

``sagepipe run --store s3`` records outputs in S3; ``sagepipe executions retry ID`` (no store
option, no SAGEPIPE_STORE) must read them there, not look for them in the local store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sagepipe.cli.main import run_cli
from sagepipe.engine.history import History
from sagepipe.storage import open_store
from tests.integration.rerun_pipeline import set_mode, write_project


def test_a_retry_uses_the_store_and_sandbox_the_execution_ran_with(
    project: Path, seaweed: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in seaweed.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project)
    settings = write_project(project).with_overrides(store="s3")
    store = open_store(settings)
    store.ensure_bucket("test-bucket")
    store.put("s3://test-bucket/mode/mode.txt", b"fail")
    assert run_cli(["run", "rerun.py", "--sandbox", "process", "--store", "s3", "-q"]) == 1
    history = History(settings.history_path)
    failed = history.executions("rerun")[0]
    assert {s.name: s.status for s in history.steps(failed.id)}["work"] == "Failed"

    store.put("s3://test-bucket/mode/mode.txt", b"mended")
    assert run_cli(["executions", "retry", failed.id, "--quiet"]) == 0
    steps = {s.name: s for s in history.steps(failed.id)}
    assert (steps["work"].status, steps["work"].attempts) == ("Succeeded", 2)
    out = steps["work"].properties["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert store.get(f"{out}/r") == b"mended"
    assert not (settings.local_store_root / "test-bucket").exists()
    assert history.execution(failed.id).sandbox == "process"


def test_a_reference_on_another_store_is_refused(
    project: Path,
    seaweed: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A selective run reads the reference's outputs from its own store: a reference that ran
    on another store has none there, so it is refused in one line before anything runs."""
    monkeypatch.chdir(project)
    settings = write_project(project)
    set_mode(settings, "ok")
    assert run_cli(["run", "rerun.py", "--sandbox", "process", "-q"]) == 0
    reference = History(settings.history_path).executions("rerun")[0].id
    for key, value in seaweed.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    for extra in ([], ["--reference", reference]):
        args = ["run", "rerun.py", "--sandbox", "process", "--store", "s3", "--steps", "work"]
        assert run_cli([*args, *extra]) == 1
        err = capsys.readouterr().err
        assert "ran on the local store, not s3" in err and len(err.strip().splitlines()) == 1, err
    assert len(History(settings.history_path).executions("rerun")) == 1
