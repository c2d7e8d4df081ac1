"""The CLI as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

EXE = str(Path(sys.executable).parent / "sagepipe")


def sp(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SAGEPIPE_")) or k == "SAGEPIPE_CACHE_DIR"
    }
    clean.update(env or {})
    return subprocess.run(
        [EXE, *args], cwd=project, capture_output=True, text=True, timeout=300, env=clean
    )


@pytest.fixture
def app_project(tmp_path: Path) -> Path:
    """A copy of the repository's app in a fresh project with the data seeded."""
    import shutil

    root = tmp_path / "proj"
    shutil.copytree(ROOT / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "sagepipe-local"\n')
    done = sp(
        root,
        "bucket",
        "put",
        str(ROOT / "data" / "penguins.csv"),
        "s3://sagepipe-local/other/data/raw/penguins.csv",
        "--if-missing",
    )
    assert done.returncode == 0, done.stderr
    return root


def test_definition_validate_graph(app_project: Path) -> None:
    out = sp(app_project, "definition")
    assert out.returncode == 0, out.stderr
    definition = json.loads(out.stdout)
    assert definition["Version"] == "2020-12-01"
    assert [s["Name"] for s in definition["Steps"]][:5] == [
        "read_data",
        "clean_data",
        "prepare_data",
        "normalize_data",
        "train",
    ]
    written = app_project / "def.json"
    assert sp(app_project, "definition", "-o", str(written)).returncode == 0
    assert written.read_text() == out.stdout
    assert "valid" in sp(app_project, "validate").stdout
    for fmt, marker in (
        ("text", "train (Processing)"),
        ("mermaid", "flowchart TD"),
        ("dot", "digraph"),
        ("svg", "<svg"),
    ):
        res = sp(app_project, "graph", "--format", fmt)
        assert res.returncode == 0 and marker in res.stdout, res.stderr
    assert "-- if -->" in sp(app_project, "graph", "--format", "mermaid").stdout


def test_validate_reports_steps_not_runnable_locally(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "sdk" / "v2_generic_training.json").read_text())
    data["Steps"].append(
        {
            "Name": "Notify",
            "Type": "Lambda",
            "Arguments": {},
            "FunctionArn": "arn:aws:lambda:us-east-1:1:function:f",
        }
    )
    path = tmp_path / "lambda.json"
    path.write_text(json.dumps(data))
    res = sp(tmp_path, "validate", str(path))
    assert res.returncode == 1
    out = " ".join(res.stdout.split())
    assert "step 'Notify': Lambda invokes an AWS Lambda function; it runs only on SageMaker" in out
    # the image has no local runtime: the message keeps the setting's name (no markup loss)
    assert "step 'GenericTrain': image" in out and "[tool.sagepipe.images]" in out
    assert res.stderr.strip() == "error: 2 steps cannot run here (listed above)"
    (tmp_path / "pyproject.toml").write_text('[tool.sagepipe.images]\n"my-trainer" = "{python}"\n')
    res = sp(tmp_path, "validate", str(path))
    assert "cannot run here: step 'GenericTrain'" not in res.stdout
    assert "error: 1 step cannot" in res.stderr
    assert "step 'GenericTrain': my-trainer:latest -> host ('my-trainer' entry)" in res.stdout


def test_run_inspect_and_predict(app_project: Path, tmp_path: Path) -> None:
    res = sp(app_project, "run", "--sandbox", "process")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "read_data" in res.stdout and "| rows: 344" in res.stdout
    assert "status: Succeeded" in res.stdout
    match = re.search(r"execution (\w{12}) of penguins-training", res.stderr)
    assert match, res.stderr
    exec_id = match.group(1)
    assert exec_id in sp(app_project, "executions", "list").stdout
    described = json.loads(sp(app_project, "executions", "describe", exec_id).stdout)
    assert described["PipelineExecutionStatus"] == "Succeeded"
    steps = json.loads(sp(app_project, "executions", "steps", exec_id, "--json").stdout)[
        "PipelineExecutionSteps"
    ]
    assert {s["StepName"] for s in steps} >= {"train", "register_model"}
    logs = sp(app_project, "logs", exec_id, "train")
    assert "train | training RandomForestClassifier" in logs.stdout
    assert "penguins-training" in sp(app_project, "models", "list").stdout
    model = f"s3://sagepipe-local/other/models/penguins-training/{exec_id}/model.tar.gz"
    out = tmp_path / "p.csv"
    pred = sp(app_project, "predict", model, str(ROOT / "data" / "penguins.csv"), "-o", str(out))
    assert pred.returncode == 0, pred.stderr
    assert out.read_text().splitlines()[0].endswith("prediction,confidence")


def test_failed_run_exits_1(app_project: Path) -> None:
    res = sp(app_project, "run", "-q", "--sandbox", "process", "-p", "QualityThreshold=2")
    assert res.returncode == 1
    assert "status: Failed" in res.stdout
    assert "is below the threshold 2.0" in " ".join(res.stdout.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "-p", "Nope=1"], "unknown parameters ['Nope']"),
        (["run", "-p", "RandomSeed=abc"], "'abc' is not a valid Integer"),
        (["run", "-p", "ModelType=svm"], "'svm' is not one of"),
        (["run", "-p", "broken"], "must look like Name=Value"),
        (["validate", "missing.py"], "not found"),
        (["graph", "--format", "png"], "'png' is not one of"),
        (["executions", "describe", "zzzz"], "no local execution 'zzzz'"),
    ],
)
def test_user_errors_are_one_line_exit_1(app_project: Path, args: list[str], message: str) -> None:
    res = sp(app_project, *args)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert message in " ".join(res.stderr.split())


@pytest.mark.parametrize("args", [[], ["bucket"], ["executions"], ["models"]])
def test_a_bare_group_shows_its_help(tmp_path: Path, args: list[str]) -> None:
    res = sp(tmp_path, *args)
    assert res.returncode == 0 and "Usage:" in res.stdout and res.stderr == ""


def test_a_run_on_a_terminal_draws_the_live_view(app_project: Path) -> None:
    """stdout and stderr on a terminal: rich's live table is drawn while steps run, and the
    run ends as it does when piped."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    clean |= {"COLUMNS": "200", "LINES": "50"}
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [EXE, "run", "-q", "--sandbox", "process"],
        cwd=app_project,
        stdout=secondary,
        stderr=secondary,
        env=clean,
    )
    os.close(secondary)
    drawn = _read_terminal(primary)  # read while it runs: a full terminal buffer blocks it
    code = proc.wait(timeout=300)
    assert code == 0, drawn.decode(errors="replace")[-2000:]
    text = drawn.decode(errors="replace")
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines
    assert "register_model" in text and "Succeeded" in text


def _read_terminal(primary: int) -> bytes:
    """Everything written to a pseudo-terminal until every writer has closed it."""
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the last writer is gone
        while chunk := os.read(primary, 65536):
            drawn += chunk
    os.close(primary)
    return drawn
