"""The function step's job bootstrap: Python version check, pre-execution script, requirements."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sagepipe.container import function_bootstrap
from sagepipe.container.function_bootstrap import main

CLIENT = f"{sys.version_info[0]}.{sys.version_info[1]}"
DRIVER = Path(function_bootstrap.__file__).with_name("function_job_driver.sh")


def job(tmp_path: Path, files: dict[str, str]) -> Path:
    channel = tmp_path / "input" / "data" / "pre_exec_script_and_dependencies"
    channel.mkdir(parents=True)
    for name, text in files.items():
        (channel / name).write_text(text)
    return channel


def args(dependency: str | None = "requirements.txt", client: str = CLIENT) -> list[str]:
    return [
        "--s3_base_uri",
        "s3://b/other/functions/p",
        "--client_python_version",
        client,
        "--dependency_settings",
        json.dumps({"dependency_file": dependency}),
        "--pipeline_step_name",
        "f",
    ]


def failure(tmp_path: Path) -> str:
    return (tmp_path / "output" / "failure").read_text()


def test_a_ready_job_runs_pre_exec_then_installs_the_requirements(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    channel = job(
        tmp_path,
        {"pre_exec.sh": f"echo hello > {marker}\n", "requirements.txt": "# nothing to install\n"},
    )
    assert main(args(), str(tmp_path)) == 0
    assert marker.read_text() == "hello\n"
    assert not (tmp_path / "output" / "failure").exists()
    assert channel.is_dir()


def test_another_python_is_refused_with_the_reason_in_the_failure_file(tmp_path: Path) -> None:
    job(tmp_path, {"requirements.txt": ""})
    assert main(args(client="2.7"), str(tmp_path)) == 1
    assert failure(tmp_path) == (
        f"ERROR: the job runs Python {CLIENT} but the function was pickled with Python 2.7: "
        "use an image with Python 2.7\n"
    )


@pytest.mark.parametrize(
    ("files", "dependency", "reason"),
    [
        ({}, "requirements.txt", "dependency file .*requirements.txt is missing from the job"),
        ({"pre_exec.sh": "exit 3\n"}, None, "the pre-execution script failed with exit code 3"),
        (
            {"requirements.txt": "no-such-package-xyz==0.0.0\n"},
            "../requirements.txt",
            "is not a file name",
        ),
    ],
)
def test_a_job_that_cannot_be_prepared_fails_with_one_line(
    tmp_path: Path, files: dict[str, str], dependency: str | None, reason: str
) -> None:
    job(tmp_path, files)
    assert main(args(dependency), str(tmp_path)) == 1
    text = failure(tmp_path)
    assert text.count("\n") == 1
    assert re.search(reason, text)


def test_bad_dependency_settings_are_refused(tmp_path: Path) -> None:
    job(tmp_path, {})
    bad = [*args()[:4], "--dependency_settings", "{not json"]
    assert main(bad, str(tmp_path)) == 1
    assert "--dependency_settings is not JSON" in failure(tmp_path)
    assert (
        main([*args()[:4], "--dependency_settings", '{"dependency_file": null}'], str(tmp_path))
        == 0
    )


def test_the_driver_is_valid_bash_and_runs_the_sdk_invoker_last() -> None:
    assert subprocess.run(["bash", "-n", str(DRIVER)], check=False).returncode == 0
    lines = [line for line in DRIVER.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == 'exec python -m sagemaker.remote_function.invoke_function "$@"'
    assert 'python "$here/function_bootstrap.py" "$@"' in lines


def test_the_bootstrap_parses_on_the_oldest_catalogued_python() -> None:
    # It runs on the job image's Python; SageMaker's base Python images start at 3.8.
    ast.parse(Path(function_bootstrap.__file__).read_text(), feature_version=(3, 8))
