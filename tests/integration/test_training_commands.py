"""Script-mode entry points that are not ``.py`` files run as the training toolkit runs them.

The toolkit makes such an entry point executable and starts ``/bin/sh -c "./<program> <args>"``
in ``/opt/ml/code``: a shebang line picks the interpreter (bash here, the image environment's
``python3`` through PATH), a script without one (the SDK's repack launcher starts with a blank
line) runs in ``sh``. Each step runs on the scikit-learn 1.2-1 environment in the sandbox.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from sagepipe import Estimator, Pipeline, TrainingStep
from sagepipe.config import Settings
from sagepipe.engine.history import History
from sagepipe.storage import LocalStore
from tests.conftest import HAS_BWRAP
from tests.integration.helpers import run

SANDBOX = "bwrap" if HAS_BWRAP else "process"

BASH = """#!/bin/bash
set -euo pipefail
args=("$@")
if [[ ${#args[@]} -eq 4 ]]; then echo "bash ${BASH_VERSINFO[0]} got ${#args[@]} args"; fi
echo "$*" > /opt/ml/model/args.txt
"""
PYTHON = """#!/usr/bin/env python3
import sys
open("/opt/ml/model/python.txt", "w").write("%d.%d %s" % (sys.version_info[:2] + (sys.argv[1:],)))
"""
NO_SHEBANG = """
# no interpreter line: sh runs it
var_epochs="${SM_HP_EPOCHS}"
echo "epochs from the environment: ${var_epochs}" > /opt/ml/model/sh.txt
"""


def model_files(settings: Settings, name: str) -> dict[str, str]:
    history = History(settings.history_path)
    (execution,) = history.executions()
    record = next(s for s in history.steps(execution.id) if s.name == name)
    uri = record.properties["ModelArtifacts"]["S3ModelArtifacts"]
    data = LocalStore(settings.local_store_root).get(uri)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            if fh is not None:
                out[member.name.removeprefix("./")] = fh.read().decode()
    return out


@pytest.mark.parametrize(
    ("program", "text", "check"),
    [
        ("train.sh", BASH, ("args.txt", "--epochs 3 --name abalone")),
        ("train", PYTHON, ("python.txt", "3.9 ['--epochs', '3', '--name', 'abalone']")),
        ("_launcher.sh", NO_SHEBANG, ("sh.txt", "epochs from the environment: 3\n")),
    ],
    ids=["bash-shebang", "python-shebang", "no-shebang"],
)
def test_a_command_entry_point_runs_as_the_toolkit_runs_it(
    settings: Settings, tmp_path: Path, program: str, text: str, check: tuple[str, str]
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / program).write_text(text)
    (source / program).chmod(0o644)  # as the SDK packs it: the toolkit makes it executable
    estimator = Estimator(
        entry_point=program,
        source_dir=str(source),
        framework="sklearn",
        framework_version="1.2-1",
        hyperparameters={"epochs": 3, "name": "abalone"},
        output_path="s3://test-bucket/models",
        network_isolation=True,
    )
    lines: list[tuple[str, str]] = []
    pipeline = Pipeline("commands", steps=[TrainingStep("Train", estimator=estimator)])
    execution = run(settings, pipeline, SANDBOX, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    name, content = check
    got = model_files(settings, "Train")[name]
    assert got.strip() == content.strip()
    if program == "train.sh":
        assert ("Train", "bash 5 got 4 args") in lines
