"""Shared fixtures: a clean environment, settings over a temporary project, real S3 servers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from tests.servers import SEAWEED_ENDPOINT_VAR, MotoServer, SeaweedFS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
HAS_BWRAP = shutil.which("bwrap") is not None


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image-environment cache for the whole session: each environment is built once.

    uv's own package cache stays the user's, so a build after the first on a machine takes
    seconds. Every test's settings and every ``sagepipe`` it starts use this folder.
    """
    return tmp_path_factory.mktemp("image-envs")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, image_cache: Path) -> None:
    """Tests never see the developer's AWS or sagepipe settings; environments are the session's."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "SAGEPIPE_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SAGEPIPE_CACHE_DIR", str(image_cache))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty sagepipe project folder."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "test-bucket"\n')
    return root


@pytest.fixture
def settings(project: Path, image_cache: Path) -> Settings:
    """Settings for the temporary project (local store, auto sandbox, the session's images)."""
    return Settings.from_env(cwd=project, environ={"SAGEPIPE_CACHE_DIR": str(image_cache)})


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 server for the whole session (the parent run's, in a rerun as another user)."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweed"))
    parent = os.environ.get(SEAWEED_ENDPOINT_VAR)
    if parent:
        server.endpoint = parent
        yield server
        return
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for the whole session."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()
