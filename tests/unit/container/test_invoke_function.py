"""The function-step invoker, run as a program the way the engine starts it in a step."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import pkgutil
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROGRAM = (
    Path(__file__).resolve().parents[3] / "src" / "sagepipe" / "container" / "invoke_function.py"
)
MODULE = "sagemaker.remote_function.core.pipeline_variables"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def sdk_variables() -> Iterator[types.SimpleNamespace]:
    """Classes named as the SDK's pickled placeholders, so pickles reference the SDK's module."""
    module = types.ModuleType(MODULE)
    classes: dict[str, type] = {}

    def make(name: str, fields: tuple[str, ...], base: type = object) -> type:
        cls = dataclasses.make_dataclass(name, fields, bases=(base,))
        cls.__module__ = MODULE
        setattr(module, name, cls)
        classes[name] = cls
        return cls

    parameter = make("_Parameter", ("name",))
    for kind in ("Integer", "Float", "String", "Boolean"):
        make(f"_Parameter{kind}", (), parameter)
    make("_Properties", ("path",))
    make("_ExecutionVariable", ("name",))
    make("_DelayedReturn", ("uri", "reference_path"))
    names = ("sagemaker", "sagemaker.remote_function", "sagemaker.remote_function.core", MODULE)
    saved = {k: sys.modules.get(k) for k in names}
    for name in names[:-1]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[MODULE] = module
    yield types.SimpleNamespace(**classes)
    for key, value in saved.items():
        if value is None:
            sys.modules.pop(key, None)
        else:
            sys.modules[key] = value


def _stage(folder: Path, obj: Any, tamper: bool = False) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(obj)
    meta = {"sha256_hash": hashlib.sha256(data).hexdigest(), "version": "2023-04-24"}
    (folder / "payload.pkl").write_bytes(data + (b"x" if tamper else b""))
    (folder / "metadata.json").write_text(json.dumps(meta))
    return data


def _run(
    tmp: Path, *extra: str, python: str = PYTHON, secret: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        "SM_INPUT_DIR": str(tmp / "input"),
        "SM_OUTPUT_DIR": str(tmp / "output"),
        "PATH": "/usr/bin:/bin",
    }
    if secret:
        env["REMOTE_FUNCTION_SECRET_KEY"] = secret
    (tmp / "output").mkdir(exist_ok=True)
    argv = ["--s3_base_uri", "s3://b/P", "--client_python_version", python, "--pipeline_step_name", "S",
            "--func_step_s3_dir", "2026", *extra]  # fmt: skip
    return subprocess.run(
        [sys.executable, str(PROGRAM), *argv],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _returns(tmp: Path, mapping: dict[str, str]) -> None:
    (tmp / "input" / "function").mkdir(parents=True, exist_ok=True)
    (tmp / "input" / "function" / "returns.json").write_text(json.dumps(mapping))


def test_placeholders_are_resolved_and_the_result_written(
    tmp_path: Path, sdk_variables: Any
) -> None:
    v = sdk_variables
    staged = tmp_path / "input" / "function"
    _stage(staged / "function", dict)
    delayed = v._DelayedReturn(
        v._Properties("Steps.A.OutputDataConfig.S3OutputPath"), (("__getitem__", "k"),)
    )
    kwargs = {
        "n": v._ParameterInteger("N"), "x": v._ParameterFloat("X"), "s": v._ParameterString("S"),
        "b": v._ParameterBoolean("B"), "e": v._ExecutionVariable("PipelineExecutionId"),
        "p": v._Properties("Steps.P.ProcessingOutputConfig.Outputs['o'].S3Output.S3Uri"), "r": delayed,
        "plain": [1],
    }  # fmt: skip
    _stage(staged / "arguments", ((), kwargs))
    _stage(staged / "returns" / "A", {"k": "from A"})
    _returns(tmp_path, {"s3://b/P/e1/A/results": "returns/A"})
    refs = ["Parameters.N", "3", "Parameters.X", "0.5", "Parameters.S", "hi", "Parameters.B", "true",
            "Execution.PipelineExecutionId", "e1", "Steps.P.ProcessingOutputConfig.Outputs['o'].S3Output.S3Uri",
            "s3://b/o", "Steps.A.OutputDataConfig.S3OutputPath", "s3://b/P/e1/A/results/"]  # fmt: skip
    done = _run(tmp_path, "--property_references", *refs, "--serialize_output_to_json", "true")
    assert done.returncode == 0, done.stderr
    results = tmp_path / "output" / "function" / "results"
    value = pickle.loads((results / "payload.pkl").read_bytes())
    assert value == {
        "n": 3,
        "x": 0.5,
        "s": "hi",
        "b": True,
        "e": "e1",
        "p": "s3://b/o",
        "r": "from A",
        "plain": [1],
    }
    meta = json.loads((results / "metadata.json").read_text())
    assert meta["sha256_hash"] == hashlib.sha256((results / "payload.pkl").read_bytes()).hexdigest()
    assert meta["python_version"].startswith(PYTHON + ".")
    assert json.loads((results / "results.json").read_text())["Result"]["r"] == "from A"
    assert (tmp_path / "sagemaker_remote_function_workspace").is_dir()


def test_an_exception_is_the_failure_and_its_pickle(tmp_path: Path) -> None:
    staged = tmp_path / "input" / "function"
    _stage(staged / "function", int)
    _stage(staged / "arguments", (("x",), {}))
    _returns(tmp_path, {})
    done = _run(tmp_path)
    assert done.returncode == 1
    assert (tmp_path / "output" / "failure").read_text() == (
        "ValueError(\"invalid literal for int() with base 10: 'x'\")"
    )
    assert "Traceback (most recent call last)" in done.stderr
    error = pickle.loads(
        (tmp_path / "output" / "function" / "exception" / "payload.pkl").read_bytes()
    )
    assert isinstance(error, ValueError)
    assert not (tmp_path / "output" / "function" / "results").exists()


def test_a_changed_payload_and_another_python_are_refused(tmp_path: Path) -> None:
    staged = tmp_path / "input" / "function"
    _stage(staged / "function", int, tamper=True)
    _stage(staged / "arguments", (("1",), {}))
    _returns(tmp_path, {})
    done = _run(tmp_path)
    assert (
        "Integrity check for the serialized function or data failed"
        in (tmp_path / "output" / "failure").read_text()
    )
    (tmp_path / "output" / "failure").unlink()
    done = _run(tmp_path, python="2.7")
    assert done.returncode == 1
    assert (
        (tmp_path / "output" / "failure")
        .read_text()
        .startswith(
            f"RuntimeEnvironmentError: Python version found in the container is '{PYTHON}' which "
            "does not match python version '2.7'"
        )
    )


def test_a_workspace_archive_cannot_escape(tmp_path: Path) -> None:
    channel = tmp_path / "input" / "data" / "2026"
    channel.mkdir(parents=True)
    with zipfile.ZipFile(channel / "workspace.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    done = _run(tmp_path)
    assert (
        "workspace.zip member '../outside.txt' escapes"
        in (tmp_path / "output" / "failure").read_text()
    )
    assert not (tmp_path.parent / "outside.txt").exists() and done.returncode == 1


def test_the_workspace_archive_and_pre_execution_commands(tmp_path: Path) -> None:
    channel = tmp_path / "input" / "data" / "2026"
    channel.mkdir(parents=True)
    with zipfile.ZipFile(channel / "workspace.zip", "w") as zf:
        zf.writestr("sagemaker_remote_function_workspace/workdir_module.py", "VALUE = 41\n")
    deps = tmp_path / "input" / "data" / "pre_exec_script_and_dependencies"
    deps.mkdir(parents=True)
    (deps / "pre_exec.sh").write_text("echo 1 > marker.txt\n")
    staged = tmp_path / "input" / "function"
    _stage(staged / "function", pkgutil.resolve_name)
    _stage(staged / "arguments", (("workdir_module:VALUE",), {}))
    _returns(tmp_path, {})
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    module = pickle.loads(
        (tmp_path / "output" / "function" / "results" / "payload.pkl").read_bytes()
    )
    assert module == 41
    assert (tmp_path / "sagemaker_remote_function_workspace" / "marker.txt").read_text() == "1\n"
    (deps / "pre_exec.sh").write_text("echo no >&2\nexit 3\n")
    (tmp_path / "output" / "function" / "results" / "payload.pkl").unlink()
    done = _run(tmp_path)
    assert (tmp_path / "output" / "failure").read_text() == (
        "RuntimeEnvironmentError: Encountered error while running pre-execution commands. Reason: no"
    )


def test_payloads_hashed_with_the_step_s_secret(tmp_path: Path) -> None:
    """Some 2.x releases keyed the hash with REMOTE_FUNCTION_SECRET_KEY (HMAC-SHA256)."""
    import hmac

    staged = tmp_path / "input" / "function"
    secret = "ab" * 32
    for folder, obj in (("function", int), ("arguments", (("7",), {}))):
        data = _stage(staged / folder, obj)
        digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
        (staged / folder / "metadata.json").write_text(json.dumps({"sha256_hash": digest}))
    _returns(tmp_path, {})
    assert _run(tmp_path, secret=secret).returncode == 0
    assert (
        pickle.loads((tmp_path / "output" / "function" / "results" / "payload.pkl").read_bytes())
        == 7
    )
    assert _run(tmp_path, secret="cd" * 32).returncode == 1
    assert "Integrity check" in (tmp_path / "output" / "failure").read_text()
