"""Environment bookkeeping that needs no build: cache dir, keys, markers, argv, uv's errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sagepipe.images.environments import (
    MARKER,
    Environment,
    _relax,
    choose_cached,
    default_cache_dir,
    list_environments,
    spec_key,
)
from sagepipe.images.installer import EnvironmentBuildError, explain
from sagepipe.images.match import ImageSpec, resolve

SPEC = ImageSpec(image="i", name="t:1", kind="env", python="3.11", packages=("six==1.16.0",))


def test_cache_dir_precedence() -> None:
    assert default_cache_dir({"SAGEPIPE_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x"}) == Path("/c")
    assert default_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/sagepipe")
    assert default_cache_dir({"HOME": "/h"}) == Path("/h/.cache/sagepipe")


def test_the_key_follows_python_pins_and_requirements_content(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.16.0\n")
    own = ImageSpec("i", "p", "env", python="3.11", requirements=requirements, user=True)
    first = spec_key(own)
    requirements.write_text("six==1.15.0\n")
    assert spec_key(own) != first
    assert spec_key(SPEC) != spec_key(
        ImageSpec("i", "t:1", "env", python="3.10", packages=SPEC.packages)
    )
    assert spec_key(SPEC) == spec_key(
        ImageSpec("other", "u:2", "env", python="3.11", packages=SPEC.packages)
    )


def test_choose_cached_reads_one_marker(tmp_path: Path) -> None:
    assert choose_cached(SPEC, tmp_path) is None
    prefix = tmp_path / "envs" / spec_key(SPEC)
    prefix.mkdir(parents=True)
    assert choose_cached(SPEC, tmp_path) is None  # a folder without its marker is not an env
    marker = {"name": "t:1", "python_version": "3.11.7", "size": 5, "packages": {"six": "1.16.0"}}
    (prefix / MARKER).write_text(json.dumps(marker))
    env = choose_cached(SPEC, tmp_path)  # bench/images.py times it (about 0.03 ms)
    assert env is not None and env.exact and env.python == prefix / "bin" / "python"
    assert [e.name for e in list_environments(tmp_path)] == ["t:1"]


def test_host_and_command_are_ready_without_a_build(tmp_path: Path) -> None:
    host = choose_cached(resolve("x:1", {"x": "host"}), tmp_path)
    assert host is not None and host.python == Path(sys.executable) and not host.exact
    assert host.argv(["python3", "a.py"]) == [sys.executable, "a.py"]
    command = choose_cached(resolve("x:1", {"x": "{python} -X dev"}), tmp_path)
    assert command is not None
    assert command.argv(["python", "a.py"]) == [sys.executable, "-X", "dev", "a.py"]
    assert command.argv(["bash", "run.sh"]) == ["bash", "run.sh"]


def test_argv_runs_python_on_the_environment() -> None:
    env = Environment("n", "env", Path("/e/bin/python"), Path("/e"), "3.9.18")
    assert env.argv(["/usr/bin/python3", "-m", "x"]) == ["/e/bin/python", "-m", "x"]
    assert env.argv([]) == []


def test_relaxed_pins_point_towards_the_interpreter() -> None:
    assert _relax("pandas==1.1.3", newer=True) == "pandas>=1.1.3"
    assert _relax("dask[dataframe]==2024.11.2", newer=False) == "dask[dataframe]<=2024.11.2"


@pytest.mark.parametrize(
    ("stderr", "offline", "reason", "words"),
    [
        (
            "error: No solution found when resolving dependencies\n  cause: Because six==1.10.0 "
            "needs to be downloaded from a registry and you require six==1.10.0, we can conclude "
            "that your requirements are unsatisfiable.\n\nhint: Packages were unavailable because "
            "the network was disabled.",
            True,
            "offline",
            ["six==1.10.0", "sagepipe images build"],
        ),
        (
            "  \u00d7 No solution found when resolving dependencies:\n  ╰─▶ Because you require "
            "six==1.15.0 and six==1.16.0, we can conclude that your requirements are "
            "unsatisfiable.",
            False,
            "conflict",
            ["conflict", "six==1.15.0 and six==1.16.0"],
        ),
        (
            "error: No solution found when resolving dependencies\n  cause: Because pyyaml==5.4.1 "
            "has no usable wheels and you require pyyaml==5.4.1, we can conclude that your "
            "requirements are unsatisfiable.",
            False,
            "uninstallable",
            ["do not install", "pyyaml==5.4.1"],
        ),
    ],
)
def test_uv_failures_become_one_line(
    stderr: str, offline: bool, reason: str, words: list[str]
) -> None:
    error = explain(EnvironmentBuildError(stderr), offline, "the pins")
    assert error.reason == reason
    assert "\n" not in str(error)
    assert all(word in str(error) for word in words)


def test_the_key_follows_the_as_of_date() -> None:
    later = ImageSpec("i", "t:1", "env", python="3.11", packages=SPEC.packages, as_of="2025-01-01")
    assert spec_key(later) != spec_key(SPEC)
    assert resolve("sagemaker-scikit-learn:1.2-1", {}).as_of == "2025-09-22"
