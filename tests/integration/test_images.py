"""Image environments built for real by uv: the image's results, one-line failures, races, kills.

Builds go into one cache folder for the session; uv's own package cache (the user's) makes
each build take seconds after the first run on a machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sagepipe.errors import ConfigError
from sagepipe.images import (
    Environment,
    EnvironmentBuildError,
    ImageSpec,
    choose_cached,
    derived_environment,
    ensure_environment,
    find_interpreters,
    resolve,
)
from sagepipe.images.environments import MARKER, spec_key
from tests.conftest import ROOT

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"
HOST = f"{sys.version_info.major}.{sys.version_info.minor}"
SMALL = ImageSpec("small", "small:1", "env", python=HOST, packages=("six==1.16.0",))
EXE = str(Path(sys.executable).parent / "sagepipe")


@pytest.fixture(scope="session")
def cache(image_cache: Path) -> Path:
    """The session's environment cache (tests/conftest.py): each image is built once."""
    return image_cache


@pytest.fixture(scope="session")
def sklearn_env(cache: Path) -> Environment:
    return ensure_environment(resolve(SKLEARN, {}), cache)


def run(env: Environment, code: str) -> str:
    done = subprocess.run(
        env.argv(["python", "-c", textwrap.dedent(code)]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_scikit_learn_1_2_1_runs_with_the_image_s_python_and_pandas_semantics(
    sklearn_env: Environment,
) -> None:
    assert sklearn_env.exact and sklearn_env.python_version.startswith("3.9.")
    out = run(
        sklearn_env,
        """
        import sys, numpy as np, pandas as pd, sklearn
        df = pd.DataFrame({"a": range(6), "b": range(6)})
        parts = np.split(df, [2, 4])
        print(sys.version_info[:2], np.__version__, pd.__version__, sklearn.__version__,
              type(parts[0]).__name__, parts[1].to_csv(index=False).count("\\n"))
        """,
    )
    assert out == "(3, 9) 1.24.1 1.1.3 1.2.1 DataFrame 3"


def test_a_cached_environment_is_chosen_without_a_build(
    sklearn_env: Environment, cache: Path
) -> None:
    spec = resolve(SKLEARN.replace("us-east-1", "eu-west-1"), {})
    assert choose_cached(spec, cache) == sklearn_env
    assert ensure_environment(spec, cache, progress=pytest.fail) == sklearn_env


def test_xgboost_1_7_1_trains_a_model(cache: Path) -> None:
    env = ensure_environment(resolve(XGBOOST, {}), cache)
    out = run(
        env,
        """
        import sys, numpy as np, xgboost as xgb
        x = np.arange(40, dtype=float).reshape(20, 2)
        booster = xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(x, label=x[:, 0]), 3)
        print(sys.version_info[:2], xgb.__version__, booster.predict(xgb.DMatrix(x)).shape)
        """,
    )
    assert out == "(3, 9) 1.7.4 (20,)"


def test_no_interpreter_of_the_image_s_python_approximates_in_one_line_or_fails_strict(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / f"python{HOST}").symlink_to(sys.executable)
    only_host = find_interpreters(search_path=[folder], pyenv_roots=[])
    # PyYAML 5.4.1 has wheels up to CPython 3.9: on this newer Python its nearest is taken.
    spec = ImageSpec("old", "old:1", "env", python="3.9", packages=("pyyaml==5.4.1",))
    env = ensure_environment(spec, tmp_path / "cache", interpreters=only_host)
    assert env.approximated is not None and "\n" not in env.approximated
    assert "3.9" in env.approximated and HOST in env.approximated
    assert "pyyaml 5.4.1 -> " in env.approximated
    with pytest.raises(ConfigError, match=f"needs Python 3.9 .*nearest: {HOST}"):
        ensure_environment(spec, tmp_path / "cache", interpreters=only_host, strict=True)
    with pytest.raises(ConfigError, match="no Python interpreter was found"):
        ensure_environment(spec, tmp_path / "other", interpreters=[])


def test_a_conflicting_requirements_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.15.0\nsix==1.16.0\n")
    spec = resolve(
        "my-trainer:latest",
        {"my-trainer": {"python": HOST, "requirements": "requirements.txt"}},
        project_root=tmp_path,
    )
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_environment(spec, tmp_path / "cache")
    assert caught.value.reason == "conflict" and "\n" not in str(caught.value)
    assert "six==1.15.0 and six==1.16.0" in str(caught.value)
    assert not list((tmp_path / "cache" / "envs").glob(".build-*"))


def test_offline_with_an_uncached_package_is_one_line(tmp_path: Path) -> None:
    spec = ImageSpec("old", "ancient:1", "env", python=HOST, packages=("six==1.10.0",))
    with pytest.raises(EnvironmentBuildError) as caught:
        ensure_environment(spec, tmp_path, offline=True)
    message = str(caught.value)
    assert caught.value.reason == "offline" and "\n" not in message
    assert "six==1.10.0" in message and "sagepipe images build" in message


def test_offline_from_the_package_cache_works(cache: Path, tmp_path: Path) -> None:
    ensure_environment(SMALL, cache)  # puts six 1.16.0 in uv's cache
    env = ensure_environment(SMALL, tmp_path, offline=True)
    assert env.packages["six"] == "1.16.0"


def test_requirements_in_source_dir_make_a_derived_environment(cache: Path, tmp_path: Path) -> None:
    base = ensure_environment(SMALL, cache)
    source = tmp_path / "code"
    source.mkdir()
    (source / "requirements.txt").write_text("six==1.15.0\nsix==1.16.0\n")
    with pytest.raises(EnvironmentBuildError, match=r"requirements file .* conflict"):
        derived_environment(base, source / "requirements.txt", cache)
    (source / "requirements.txt").write_text("six==1.15.0\n")
    lines: list[str] = []
    derived = derived_environment(base, source / "requirements.txt", cache, log=lines.append)
    assert lines[0] == "Installing dependencies from requirements.txt"
    assert derived.prefix != base.prefix and derived.packages["six"] == "1.15.0"
    assert run(derived, "import six; print(six.__version__)") == "1.15.0"
    again: list[str] = []
    assert (
        derived_environment(base, source / "requirements.txt", cache, log=again.append) == derived
    )
    assert again == []
    assert derived_environment(base, tmp_path / "none.txt", cache) == base


BUILD = """
import os, signal, sys
from pathlib import Path
from sagepipe.images import ImageSpec, ensure_environment
spec = ImageSpec("small", "small:race", "env", python=sys.argv[2], packages=("six==1.16.0",))
def progress(line):
    print(line, flush=True)
    if sys.argv[3] == "kill" and line.startswith("Installed"):
        os.kill(os.getpid(), signal.SIGKILL)
env = ensure_environment(spec, Path(sys.argv[1]), progress=progress)
print("ready", env.prefix, flush=True)
"""


def _builder(cache: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BUILD, str(cache), HOST, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_two_concurrent_builds_of_one_spec_build_once(tmp_path: Path) -> None:
    builders = [_builder(tmp_path, "race"), _builder(tmp_path, "race")]
    outputs = [b.communicate(timeout=240) for b in builders]
    assert all(b.returncode == 0 for b in builders), outputs
    readies = {line for out, _ in outputs for line in out.splitlines() if line.startswith("ready")}
    assert len(readies) == 1
    assert sum(out.count("building small:race") for out, _ in outputs) == 1


def test_a_killed_build_leaves_nothing_that_is_used(tmp_path: Path) -> None:
    killed = _builder(tmp_path, "kill")
    killed.communicate(timeout=240)
    assert killed.returncode == -signal.SIGKILL
    spec = ImageSpec("small", "small:race", "env", python=HOST, packages=("six==1.16.0",))
    leftovers = list((tmp_path / "envs").glob(f".build-{spec_key(spec)}-*"))
    assert leftovers and not (leftovers[0] / MARKER).exists()
    assert choose_cached(spec, tmp_path) is None
    env = ensure_environment(spec, tmp_path)
    assert (env.prefix / MARKER).is_file() and env.packages["six"] == "1.16.0"
    assert not list((tmp_path / "envs").glob(".build-*"))


def _cli(project: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    env["SAGEPIPE_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [EXE, "images", *args], cwd=project, capture_output=True, text=True, timeout=300, env=env
    )


def test_cli_build_list_and_doctor(project: Path, cache: Path, sklearn_env: Environment) -> None:
    (project / "requirements.txt").write_text("six==1.16.0\n")
    (project / "pyproject.toml").write_text(
        '[tool.sagepipe]\nbucket = "my-bucket"\n[tool.sagepipe.images]\n'
        f'"my-trainer" = {{ python = "{HOST}", requirements = "requirements.txt" }}\n'
    )
    built = _cli(project, cache, "build", SKLEARN, "my-trainer:latest")
    assert built.returncode == 0, built.stderr
    assert "ready sagemaker-scikit-learn:1.2-1: Python 3.9" in built.stdout
    assert str(sklearn_env.prefix) in built.stdout and "ready my-trainer" in built.stdout
    listed = _cli(project, cache, "list", "--no-large")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "scikit-learn:1.2-1" in line)
    assert "pandas 1.1.3" in row and "exact" in row and "MB" in row
    assert "my-trainer (yours)" in listed.stdout and "pytorch" not in listed.stdout
    doctor = _cli(project, cache, "doctor")
    assert doctor.returncode == 0 and "Python 3.9" in doctor.stdout
    assert re.search(r"^uv: uv \d+\.\d+", doctor.stdout, re.M)


def test_cli_unknown_image_is_one_line_and_exit_1(project: Path, cache: Path) -> None:
    done = _cli(project, cache, "build", "111122223333.dkr.ecr.eu-west-1.amazonaws.com/mine:2")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[tool.sagepipe.images]" in lines[0], done.stderr
