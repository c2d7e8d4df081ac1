"""Every user mistake, in every command and every setting: one stderr line, no traceback, exit 1.

Each case runs the installed ``sagepipe`` as a real process in a temporary project. The cases
run together on a small thread pool once per module; each test then checks one case's result.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

EXE = str(Path(sys.executable).parent / "sagepipe")
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
EXEC = "{exec}"  # replaced by the id of the one execution the project holds


@dataclass(frozen=True)
class Case:
    """One command line, where it runs (a configuration folder) and its environment."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    folder: str = ""  # a configuration case's own project folder (see CONFIG_FILES)
    says: str = ""  # a phrase the error line must hold


def c(name: str, *args: str, says: str = "", **env: str) -> Case:
    return Case(name, args, env, "", says)


def _unreachable() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


OFFLINE = {
    "AWS_ACCESS_KEY_ID": "a",
    "AWS_SECRET_ACCESS_KEY": "b",
    "AWS_ENDPOINT_URL": _unreachable(),
    "AWS_MAX_ATTEMPTS": "1",
}
NO_PROFILE = {"AWS_PROFILE": "nope"}

COMMAND_CASES = [
    # definition / validate / graph: the PIPELINE argument and the loader
    c("definition-missing", "definition", "missing.py", says="not found"),
    c("definition-wrong-suffix", "definition", "notes.txt", says="expected a .py"),
    c("definition-folder", "definition", "folder.py", says="expected a .py"),
    c("definition-nested", "definition", "nested.json"),
    c("definition-big-integer", "definition", "bigint.json"),
    c("definition-not-json", "definition", "notjson.json", says="not valid JSON"),
    c("definition-empty-json", "definition", "empty.json"),
    c("definition-json-list", "definition", "list.json"),
    c("definition-binary-json", "definition", "binary.json"),
    c("definition-no-steps", "definition", "missingfields.json"),
    c("definition-sys-exit-0", "definition", "exit0.py", says="sys.exit(0)"),
    c("definition-sys-exit-3", "definition", "exit3.py", says="sys.exit(3)"),
    c("definition-factory-argument", "definition", "needsarg.py", says="get_pipeline needs foo"),
    c("definition-module-raises", "definition", "raises.py", says="RuntimeError: boom"),
    c("definition-syntax-error", "definition", "syntax.py", says="SyntaxError"),
    c("definition-no-pipeline", "definition", "nopipeline.py", says="must define `pipeline`"),
    c("definition-pipeline-not-pipeline", "definition", "wrongtype.py"),
    c("definition-infinite-recursion", "definition", "recurse.py", says="recursed too deeply"),
    c("definition-factory-raises", "definition", "factoryraises.py", says="ValueError"),
    c("definition-o-missing-folder", "definition", "-o", "missing/dir/out.json"),
    c("definition-o-folder", "definition", "-o", "app", says="is a folder"),
    c("definition-bad-bucket", "definition", "--bucket", "Bad_Bucket", says="not valid on S3"),
    c("definition-unknown-option", "definition", "--frob", says="No such option"),
    c("validate-missing", "validate", "missing.py"),
    c("validate-nested", "validate", "nested.json"),
    c("validate-sys-exit", "validate", "exit0.py"),
    c("validate-cannot-run-here", "validate", "lambda.json", says="cannot run here"),
    c("validate-extra-argument", "validate", "a.py", "b.py"),
    c("graph-format", "graph", "--format", "png", says="'png' is not one of"),
    c("graph-missing", "graph", "missing.py"),
    c("graph-syntax-error", "graph", "syntax.py"),
    # run
    c("run-unknown-parameter", "run", "-p", "Nope=1", says="unknown parameters ['Nope']"),
    c("run-integer-parameter", "run", "-p", "RandomSeed=abc", says="not a valid Integer"),
    c("run-enum-parameter", "run", "-p", "ModelType=svm", says="is not one of"),
    c("run-parameter-form", "run", "-p", "broken", says="must look like Name=Value"),
    c("run-parameter-no-name", "run", "-p", "=x", says="must look like Name=Value"),
    c("run-max-parallel-negative", "run", "--max-parallel", "-3", says="--max-parallel"),
    c("run-max-parallel-zero", "run", "--max-parallel", "0"),
    c("run-max-parallel-text", "run", "--max-parallel", "abc"),
    c("run-sandbox", "run", "--sandbox", "docker"),
    c("run-store", "run", "--store", "nfs"),
    c("run-backend", "run", "--backend", "azure"),
    c("run-missing", "run", "missing.py"),
    c("run-sys-exit", "run", "exit0.py", says="sys.exit(0)"),
    c("run-unsupported-step", "run", "lambda.json", says="cannot run locally"),
    c("run-factory-argument", "run", "needsarg.py"),
    c("run-sagemaker-unknown-parameter", "run", "--backend", "sagemaker", "-p", "Nope=1"),
    # executions and logs
    c("describe-unknown", "executions", "describe", "zzzz", says="no local execution 'zzzz'"),
    c("steps-unknown", "executions", "steps", "zzzz"),
    c("list-backend", "executions", "list", "--backend", "azure"),
    c("stop-ended", "executions", "stop", EXEC, says="ended already"),
    c("retry-succeeded", "executions", "retry", EXEC, says="nothing to retry"),
    c("retry-unknown", "executions", "retry", "zzzz", says="no local execution"),
    c("describe-sagemaker-not-arn", "executions", "describe", "x", "--backend", "sagemaker"),
    c("steps-sagemaker-not-arn", "executions", "steps", "x", "--backend", "sagemaker"),
    c("logs-sagemaker-not-arn", "executions", "logs", "x", "--backend", "sagemaker"),
    c("stop-sagemaker-not-arn", "executions", "stop", "x", "--backend", "sagemaker"),
    c("executions-logs-unknown", "executions", "logs", "zzzz"),
    c("executions-logs-step", "executions", "logs", EXEC, "nostep", says="no step 'nostep'"),
    c("describe-no-argument", "executions", "describe", says="Missing argument"),
    c("executions-no-such-command", "executions", "frob", says="No such command"),
    c("logs-unknown", "logs", "zzzz"),
    c("logs-step", "logs", EXEC, "nostep"),
    c("logs-no-argument", "logs"),
    # models and predict
    c("models-group-without-value", "models", "list", "--group"),
    c("models-no-such-command", "models", "frob"),
    c("predict-not-a-model", "predict", "notmodel.txt", "data.csv", says="not a model.tar.gz"),
    c("predict-archive-without-model", "predict", "nomodel.tar.gz", "data.csv"),
    c("predict-empty-csv", "predict", "fake.tar.gz", "empty.csv", says="is empty"),
    c("predict-binary-csv", "predict", "fake.tar.gz", "binary.csv"),
    c("predict-missing-csv", "predict", "fake.tar.gz", "nodata.csv"),
    c("predict-o-missing-folder", "predict", "fake.tar.gz", "data.csv", "-o", "no/dir/p.csv"),
    c("predict-o-folder", "predict", "fake.tar.gz", "data.csv", "-o", "app"),
    c("predict-missing-s3-model", "predict", "s3://bad-input/none/model.tar.gz", "data.csv"),
    c("predict-missing-model", "predict", "missing.tar.gz", "data.csv"),
    c("predict-broken-model", "predict", "fake.tar.gz", "data.csv", says="predict.py failed"),
    c("predict-store", "predict", "fake.tar.gz", "data.csv", "--store", "nfs"),
    # deploy (nothing reaches AWS: the endpoint is a closed port)
    c("deploy-bad-role", "deploy", "--role", "not-a-role", says="not an IAM role ARN"),
    c("deploy-no-role", "deploy", says="--role is required"),
    c("deploy-tag-form", "deploy", "--tag", "broken", "--role", ROLE, says="Key=Value"),
    c("deploy-parameter-form", "deploy", "-p", "broken", "--role", ROLE),
    c("deploy-max-parallel", "deploy", "--max-parallel", "0", "--role", ROLE),
    c("deploy-missing", "deploy", "missing.py", "--role", ROLE),
    c("deploy-bad-name", "deploy", "under_score.json", "--role", ROLE, says="'under_score'"),
    c("deploy-placeholder-role", "deploy", "local.json", "--role", ROLE, says="placeholder"),
    c("deploy-unreachable", "deploy", "--role", ROLE, says="cannot reach", **OFFLINE),
    # bucket
    c("init-store", "bucket", "init", "--store", "foo", says="'foo' is not one of"),
    c("init-bucket-name", "bucket", "init", "--bucket", "Bad_Name", says="not valid on S3"),
    c("init-bucket-short", "bucket", "init", "--bucket", "ab", says="not valid on S3"),
    c("ls-store", "bucket", "ls", "--store", "foo"),
    c("ls-bucket-name", "bucket", "ls", "--bucket", "UPPER"),
    c("put-missing-source", "bucket", "put", "missing.csv", "s3://bad-input/x"),
    c("put-not-a-uri", "bucket", "put", "data.csv", "notauri", says="not an s3:// URI"),
    c("put-no-bucket", "bucket", "put", "data.csv", "s3://"),
    c("put-no-key", "bucket", "put", "data.csv", "s3://bad-input/"),
    c("put-bad-bucket", "bucket", "put", "data.csv", "s3://Bad_Bucket/x"),
    c("put-escaping-key", "bucket", "put", "data.csv", "s3://bad-input/../x"),
    c("put-folder-source", "bucket", "put", "app", "s3://bad-input/x"),
    c("pull-dest-file", "bucket", "pull", "--dest", "afile", says="is a file"),
    c("push-file", "bucket", "push", "afile", says="is a file"),
    c("push-missing-folder", "bucket", "push", "missingdir"),
    c("pull-prefer", "bucket", "pull", "--prefer", "both"),
    c("pull-max-delete", "bucket", "pull", "--max-delete", "-1"),
    c("bucket-no-such-command", "bucket", "frob"),
    c("ls-unreachable", "bucket", "ls", "--store", "s3", says="cannot reach", **OFFLINE),
    # the command itself
    c("no-such-command", "frobnicate", says="No such command"),
    c("no-such-option", "--nope"),
    # a sample of tests/fixtures/bad (each is also checked in-process by the definition tests)
    *[
        c(f"validate-bad-{name}", "validate", str(FIXTURES / "bad" / f"{name}.json"))
        for name in ("cycle", "malformed_json", "not_an_object", "steps_not_list", "too_large")
    ],
]

# Configuration cases: each folder gets these files (text, or bytes) and runs a command.
CONFIG_FILES: dict[str, dict[str, str | bytes]] = {
    "toml-invalid": {"pyproject.toml": "[tool.sagepipe\n"},
    "toml-not-utf8": {"pyproject.toml": b"[tool.sagepipe]\nbucket = '\xff'\n"},
    "tool-not-table": {"pyproject.toml": "[tool]\nsagepipe = 1\n"},
    "store-not-string": {"pyproject.toml": "[tool.sagepipe]\nstore = 5\n"},
    "bucket-not-string": {"pyproject.toml": "[tool.sagepipe]\nbucket = 12\n"},
    "max-parallel-text": {"pyproject.toml": '[tool.sagepipe]\nmax_parallel = "many"\n'},
    "images-not-table": {"pyproject.toml": '[tool.sagepipe]\nimages = "x"\n'},
    "images-bad-regex": {"pyproject.toml": '[tool.sagepipe.images]\n"[" = "{python}"\n'},
    "folders-not-list": {"pyproject.toml": '[tool.sagepipe.bucket]\nfolders = "app/"\n'},
    "dotenv-not-utf8": {"pyproject.toml": "[tool.sagepipe]\n", ".env": b"A=\xff\xfe\n"},
    "history-corrupt": {
        "pyproject.toml": "[tool.sagepipe]\n",
        ".sagepipe/history.sqlite": b"this is not a database" * 100,
    },
    "history-folder": {"pyproject.toml": "[tool.sagepipe]\n", ".sagepipe/history.sqlite/x": ""},
    "ignore-not-utf8": {"pyproject.toml": "[tool.sagepipe]\n", "up/.sagepipeignore": b"\xff\n"},
}


def cfg(name: str, *args: str, says: str = "", **env: str) -> Case:
    return Case(name, args, env, name if name in CONFIG_FILES else "", says)


CONFIG_CASES = [
    cfg("store-env", "executions", "list", says="SAGEPIPE_STORE", SAGEPIPE_STORE="nfs"),
    cfg("sandbox-env", "executions", "list", SAGEPIPE_SANDBOX="docker"),
    cfg("max-parallel-env-text", "executions", "list", SAGEPIPE_MAX_PARALLEL="abc"),
    cfg("max-parallel-env-zero", "executions", "list", SAGEPIPE_MAX_PARALLEL="0"),
    cfg("home-is-a-file", "executions", "list", says="is a file", SAGEPIPE_HOME="afile"),
    cfg("bucket-env", "bucket", "init", says="not valid on S3", SAGEPIPE_BUCKET="Bad_Bucket"),
    cfg("prewarm-env", "executions", "list", SAGEPIPE_PREWARM="maybe"),
    cfg("python-env", "executions", "list", SAGEPIPE_PYTHON="/nonexistent/python"),
    cfg("endpoint-env", "bucket", "ls", "--store", "s3", AWS_ENDPOINT_URL="notaurl"),
    cfg("role-env", "deploy", says="not an IAM role ARN", SAGEPIPE_ROLE_ARN="not-a-role"),
    cfg("profile-s3", "bucket", "ls", "--store", "s3", says="AWS profile 'nope'", **NO_PROFILE),
    cfg(
        "profile-sagemaker",
        *("executions", "list", "--backend", "sagemaker", "--pipeline", "p"),
        says="AWS profile 'nope'",
        **NO_PROFILE,
    ),
    cfg("profile-deploy", "deploy", "--role", ROLE, says="AWS profile 'nope'", **NO_PROFILE),
    cfg("toml-invalid", "executions", "list", says="pyproject.toml"),
    cfg("toml-not-utf8", "executions", "list"),
    cfg("tool-not-table", "executions", "list"),
    cfg("store-not-string", "executions", "list", says="store must be a string"),
    cfg("bucket-not-string", "executions", "list"),
    cfg("max-parallel-text", "executions", "list", says="must be an integer"),
    cfg("images-not-table", "validate", "../lambda.json"),
    cfg("images-bad-regex", "executions", "list", says="not a valid regex"),
    cfg("folders-not-list", "bucket", "init"),
    cfg("dotenv-not-utf8", "executions", "list", says=".env"),
    cfg("history-corrupt", "executions", "list", says="move it aside"),
    cfg("history-folder", "models", "list"),
    cfg("ignore-not-utf8", "bucket", "push", "up"),
]

PIPELINE = """
from sagepipe import Pipeline, ProcessingStep, Processor

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
step = ProcessingStep("hello", processor=Processor(image_uri=IMAGE, command=("python3", "-c", "pass")))
pipeline = Pipeline("hello", steps=[step])
"""


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _nested(depth: int) -> str:
    return '{"Version": "2020-12-01", "Steps": [], "Metadata": ' + "[" * depth + "]" * depth + "}"


def _write_project(root: Path) -> None:
    shutil.copytree(ROOT / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    generic = json.loads((FIXTURES / "sdk" / "v2_generic_training.json").read_text())
    generic["Steps"].append(
        {"Name": "Notify", "Type": "Lambda", "Arguments": {}, "FunctionArn": "arn:aws:lambda:f"}
    )
    big = json.loads((FIXTURES / "sdk" / "v2_generic_training.json").read_text())
    files: dict[str, str | bytes] = {
        "pyproject.toml": '[tool.sagepipe]\nbucket = "bad-input"\n',
        "simple.py": PIPELINE,
        "notes.txt": "hello",
        "nested.json": _nested(10_000),
        "bigint.json": json.dumps(big).replace(
            '"Parameters": [', '"X": ' + "9" * 5000 + ', "Parameters": [', 1
        ),
        "notjson.json": "{not json",
        "empty.json": "",
        "list.json": "[]",
        "binary.json": b"\xff\xfe\x00\x01",
        "missingfields.json": '{"Version": "2020-12-01"}',
        "lambda.json": json.dumps(generic),
        "under_score.json": (FIXTURES / "sdk" / "v2_full.json").read_text(),
        "exit0.py": "import sys\nsys.exit(0)\n",
        "exit3.py": "raise SystemExit(3)\n",
        "needsarg.py": "def get_pipeline(foo):\n    raise AssertionError\n",
        "factoryraises.py": "def get_pipeline():\n    raise ValueError('bad pipeline')\n",
        "raises.py": "raise RuntimeError('boom')\n",
        "syntax.py": "def (:\n",
        "nopipeline.py": "x = 1\n",
        "wrongtype.py": "pipeline = 42\n",
        "recurse.py": "def f():\n    return f()\n\nf()\n",
        "empty.csv": "",
        "binary.csv": bytes(range(256)) * 4,
        "data.csv": (ROOT / "data" / "penguins.csv").read_text()[:2000].rsplit("\n", 1)[0] + "\n",
        "notmodel.txt": "not a model",
        "nomodel.tar.gz": _tar({"readme.txt": b"hi"}),
        "fake.tar.gz": _tar({"model.joblib": b"not a pickle"}),
        "afile": "a file",
        "up/data.txt": "x",
    }
    for name, files_of in CONFIG_FILES.items():
        files.update({f"{name}/{k}": v for k, v in files_of.items()})
    (root / "folder.py").mkdir()
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _env(extra: dict[str, str], root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SAGEPIPE_")) or k == "SAGEPIPE_CACHE_DIR"
    }
    env.update(
        {
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "COLUMNS": "200",
        }
    )
    env.update({k: str(root / v) if k == "SAGEPIPE_HOME" else v for k, v in extra.items()})
    return env


def _sagepipe(root: Path, case: Case, execution: str) -> subprocess.CompletedProcess[str]:
    args = [execution if a == EXEC else a for a in case.args]
    return subprocess.run(
        [EXE, *args],
        cwd=root / case.folder,
        env=_env(case.env, root),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, subprocess.CompletedProcess[str]]]]:
    root = tmp_path_factory.mktemp("bad-input")
    _write_project(root)
    base = _sagepipe(root, c("local", "definition", "-o", "local.json"), "")
    assert base.returncode == 0, base.stderr
    first = _sagepipe(root, c("run", "run", "simple.py", "--sandbox", "process", "-q"), "")
    assert first.returncode == 0, first.stdout + first.stderr
    match = re.search(r"execution (\w{12}) of hello", first.stderr)
    assert match, first.stderr
    cases = COMMAND_CASES + CONFIG_CASES
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda case: _sagepipe(root, case, match.group(1)), cases))
    yield root, {case.name: result for case, result in zip(cases, done, strict=True)}


def _check(case: Case, result: subprocess.CompletedProcess[str]) -> None:
    shown = f"{case.args}: rc={result.returncode}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.returncode == 1, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert case.says in lines[0], shown


def test_enough_cases() -> None:
    assert len(COMMAND_CASES) >= 80 and len(CONFIG_CASES) >= 15
    assert len({case.name for case in COMMAND_CASES + CONFIG_CASES}) == len(
        COMMAND_CASES + CONFIG_CASES
    )


@pytest.mark.parametrize("case", COMMAND_CASES, ids=lambda case: case.name)
def test_command_mistake(
    case: Case, results: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]
) -> None:
    _check(case, results[1][case.name])


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda case: case.name)
def test_configuration_mistake(
    case: Case, results: tuple[Path, dict[str, subprocess.CompletedProcess[str]]]
) -> None:
    _check(case, results[1][case.name])


def test_mistakes_leave_no_execution_and_the_history_untouched(
    results: tuple[Path, dict[str, subprocess.CompletedProcess[str]]],
) -> None:
    from sagepipe.engine.history import History

    root = results[0]
    history = History(root / ".sagepipe" / "history.sqlite")
    assert [e.pipeline for e in history.executions()] == ["hello"]  # only the fixture's run
    history.close()
    corrupt = root / "history-corrupt" / ".sagepipe" / "history.sqlite"
    assert corrupt.read_bytes() == b"this is not a database" * 100  # reported, never replaced
