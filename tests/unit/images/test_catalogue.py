"""The packaged catalogue: the images issue 11 names, each citing its build files."""

from __future__ import annotations

import re

import pytest

from sagepipe.errors import ConfigError
from sagepipe.images.catalogue import load_catalogue, parse_entry

REQUIRED = {
    "sagemaker-scikit-learn": {"0.23-1", "1.0-1", "1.2-1", "1.4-2"},
    "sagemaker-xgboost": {"0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1", "1.7-1", "3.0-5"},
    "sagemaker-base-python-310": {"1.0"},
    "sagemaker-base-python-38": {"1.0"},
    "pytorch-training": {"2.8.0"},
    "tensorflow-training": {"2.19.0"},
}
COMMIT_URL = re.compile(r"^https://github\.com/aws/[\w.-]+/blob/[0-9a-f]{40}/\S+$")


def test_every_required_image_is_catalogued() -> None:
    have: dict[str, set[str]] = {}
    for entry in load_catalogue():
        have.setdefault(entry.repository, set()).add(entry.version)
    for repository, versions in REQUIRED.items():
        assert versions <= have.get(repository, set()), repository


def test_entries_are_unique_and_cite_build_files_at_a_commit() -> None:
    names = [entry.name for entry in load_catalogue()]
    assert len(names) == len(set(names))
    for entry in load_catalogue():
        assert entry.source, entry.name
        assert all(COMMIT_URL.match(url) for url in entry.source), entry.name
        assert re.fullmatch(r"3\.\d{1,2}", entry.python), entry.name
        assert entry.facts, entry.name


def test_scikit_learn_1_2_1_has_the_image_s_stack() -> None:
    entry = next(e for e in load_catalogue() if e.name == "sagemaker-scikit-learn:1.2-1")
    assert entry.python == "3.9"
    assert {"numpy==1.24.1", "pandas==1.1.3", "scikit-learn==1.2.1"} <= set(entry.packages)
    assert any("docker/1.2-1/base/Dockerfile.cpu" in url for url in entry.source)
    assert any(url.endswith("requirements.txt") for url in entry.source)


def test_xgboost_images_have_xgboost_and_frameworks_are_large() -> None:
    for entry in load_catalogue():
        if entry.family == "xgboost":
            assert any(p.startswith("xgboost==") for p in entry.packages), entry.name
            assert entry.mode == "algorithm"
        assert entry.large == (entry.family in ("pytorch", "tensorflow")), entry.name


def test_serving_and_toolkit_packages_are_dropped_not_installed() -> None:
    for entry in load_catalogue():
        names = {re.split(r"[=<>\[ ]", p, maxsplit=1)[0].lower() for p in entry.packages}
        assert not names & {d.lower() for d in entry.dropped}, entry.name
        assert "sagemaker-training" not in names and "multi-model-server" not in names


def test_a_bad_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no 'python'"):
        parse_entry(
            {"family": "x", "repository": "r", "version": "1", "packages": [], "source": []}
        )
    with pytest.raises(ConfigError, match="cites no source"):
        parse_entry(
            {"family": "x", "repository": "r", "version": "1", "python": "3.9",
             "packages": [], "source": []}
        )  # fmt: skip


def test_open_pins_resolve_as_of_the_source_commit() -> None:
    for entry in load_catalogue():
        if entry.family in ("sklearn", "xgboost"):
            assert entry.as_of and re.fullmatch(r"20\d\d-\d\d-\d\d", entry.as_of), entry.name
