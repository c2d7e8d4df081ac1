"""Ctrl-C during `sagepipe run` stops the steps and marks the execution Stopped;
`sagepipe logs --follow` prints lines while a step runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sagepipe.config import Settings
from sagepipe.engine.history import History

EXE = str(Path(sys.executable).parent / "sagepipe")
PIPELINE = """
from sagepipe import Pipeline, ProcessingStep, Processor

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
CODE = "import time\\nfor i in range(60):\\n    print('tick', i, flush=True)\\n    time.sleep(0.2)\\n"
pipeline = Pipeline("slow", steps=[ProcessingStep("slow", processor=Processor(image_uri=IMAGE, command=("python3", "-c", CODE)))])
"""


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SAGEPIPE_")) or k == "SAGEPIPE_CACHE_DIR"
    }


def _start(project: Path) -> tuple[subprocess.Popen[str], str]:
    (project / "slow.py").write_text(PIPELINE)
    proc = subprocess.Popen(
        [EXE, "run", "slow.py", "--sandbox", "process"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    seen = []  # the process sandbox's one-time warning may come before the header
    for _ in range(10):
        seen.append(proc.stderr.readline())
        if match := re.search(r"execution (\w{12}) of slow", seen[-1]):
            return proc, match.group(1)
    proc.kill()
    proc.communicate()
    raise AssertionError("".join(seen))


def test_ctrl_c_stops_the_run(project: Path) -> None:
    proc, execution = _start(project)
    history = History(Settings.from_env(cwd=project, environ={}).history_path)
    deadline = time.time() + 30
    while time.time() < deadline and not history.steps(execution):
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert "status: Stopped" in out
    assert history.execution(execution).status == "Stopped"
    assert [s.status for s in history.steps(execution)] == ["Stopped"]


def test_logs_follow_prints_while_running(project: Path) -> None:
    proc, execution = _start(project)
    try:
        follow = subprocess.run(
            [EXE, "logs", execution, "slow", "--follow"],
            cwd=project,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proc.communicate(timeout=120)  # waits and closes the run's pipes
    assert follow.returncode == 0, follow.stderr
    ticks = [line for line in follow.stdout.splitlines() if line.startswith("slow | tick")]
    assert len(ticks) == 60
