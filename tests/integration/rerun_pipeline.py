"""A pipeline for the retry and selective-execution tests, and helpers to drive it.

``first`` writes an output; ``work`` reads its mode from the store (``s3://test-bucket/mode``)
and, by that mode, succeeds, exits 3, waits, or kills itself with SIGKILL; the condition
``check`` (parameter ``Branch``) runs ``yes`` or ``no``, which read ``work``'s output.
Every step's command line holds the test's token, so its processes can be found in /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sagepipe.config import Settings

SAGEPIPE = [sys.executable, "-c", "from sagepipe.cli.main import entry; entry()"]
PIPELINE = """
import os
from sagepipe import (
    ConditionEquals, ConditionStep, ParameterString, Pipeline, ProcessingInput,
    ProcessingOutput, ProcessingStep, Processor, SageMakerJobStepRetryPolicy,
)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
TOKEN = os.environ.get("RERUN_TOKEN", "token")
WORK = (
    "import os,sys,time\\n"
    "m=open('/opt/ml/processing/mode/mode.txt').read().strip()\\n"
    "print('mode',m,flush=True)\\n"
    "if m=='die':os.kill(os.getpid(),9)\\n"
    "if m=='wait':time.sleep(300)\\n"
    "if m=='fail':sys.exit(3)\\n"
    "open('/opt/ml/processing/out/r','w').write(m)\\n"
)
READ = (
    "import glob\\n"
    "t=open(glob.glob('/opt/ml/processing/in/*')[0]).read()\\n"
    "print('read',t,flush=True)\\n"
    "open('/opt/ml/processing/out/r','w').write(t+'+')\\n"
)


def step(name, code, inputs=(), **kw):
    return ProcessingStep(
        name,
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", code)),
        job_arguments=[TOKEN],
        inputs=inputs,
        outputs=[ProcessingOutput("/opt/ml/processing/out", output_name="out")],
        **kw,
    )


first = step("first", "open('/opt/ml/processing/out/r','w').write('first')")
policy = SageMakerJobStepRetryPolicy(
    exception_types=["JOB_INTERNAL_ERROR"],
    max_attempts=int(os.environ.get("RERUN_MAX", "2")),
    interval_seconds=int(os.environ.get("RERUN_INTERVAL", "0")),
)
mode = ProcessingInput("s3://test-bucket/mode", "/opt/ml/processing/mode", input_name="mode")
work = step("work", WORK, inputs=[mode], depends_on=[first], retry_policies=[policy])
out = work.properties.ProcessingOutputConfig.Outputs["out"].S3Output.S3Uri
reads = [ProcessingInput(out, "/opt/ml/processing/in", input_name="in")]
branch = ParameterString("Branch", default_value="yes")
check = ConditionStep(
    "check",
    conditions=[ConditionEquals(branch, "yes")],
    if_steps=[step("yes", READ, reads)],
    else_steps=[step("no", READ, reads)],
    depends_on=[work],
)
pipeline = Pipeline("rerun", parameters=[branch], steps=[first, work, check])
"""


def write_project(project: Path) -> Settings:
    """The pipeline file and an image mapping to the host interpreter (any user can run it)."""
    (project / "rerun.py").write_text(PIPELINE)
    (project / "pyproject.toml").write_text(
        '[tool.sagepipe]\nbucket = "test-bucket"\n'
        '[tool.sagepipe.images]\n"sagemaker-scikit-learn" = "host"\n'
    )
    return Settings.from_env(cwd=project, environ={})


def set_mode(settings: Settings, mode: str) -> None:
    """What ``work`` does on its next attempt."""
    folder = settings.local_store_root / "test-bucket" / "mode"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".mode.tmp"
    tmp.write_text(mode)
    os.replace(tmp, folder / "mode.txt")


def processes_with(*needles: str) -> list[int]:
    """PIDs whose command line holds every one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                if all(n in cmdline for n in needles):
                    found.append(int(entry.name))
    return found


def wait_until(predicate: object, what: str, timeout: float = 120) -> None:
    """Poll ``predicate`` until it holds; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_all(*needles: str) -> None:
    """SIGKILL every process whose command line holds ``needles`` (a failed test's leftovers)."""
    for pid in processes_with(*needles):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sagepipe(project: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a ``sagepipe`` command in ``project`` to its end."""
    return subprocess.run(
        [*SAGEPIPE, *args],
        cwd=project,
        env=environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def environ() -> dict[str, str]:
    """The test's environment for a ``sagepipe`` process: no AWS or developer settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    if "SAGEPIPE_CACHE_DIR" in os.environ:
        env["SAGEPIPE_CACHE_DIR"] = os.environ["SAGEPIPE_CACHE_DIR"]
    return env
