"""A killed or signalled engine leaves a truthful history, no step processes, no work folders.

Each test starts ``sagepipe run`` as a real process on a pipeline whose second step runs for a
while (and starts a child of its own), signals it at a phase, then runs another command. CI
runs as root; the last test runs this module again as an ordinary user (uid 1000).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.engine.history import ENGINE_EXITED, History
from sagepipe.storage import open_store
from tests.conftest import HAS_BWRAP
from tests.servers import SEAWEED_ENDPOINT_VAR
from tests.unprivileged import rerun_as_ordinary_user

ROOT = Path(__file__).resolve().parents[2]
SAGEPIPE = [sys.executable, "-c", "from sagepipe.cli.main import entry; entry()"]
UNPRIVILEGED_UID = 1000
BIG_FILES = 800
PIPELINE = """
import os
from sagepipe import (
    CacheConfig, Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, Processor
)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
TOKEN = os.environ["CRASH_TOKEN"]
FAST = "open('/opt/ml/processing/o/x', 'w').write('1')"
SLOW = (
    "import subprocess, sys, time\\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300) #' + %r])\\n"
    "for i in range(600):\\n"
    "    print('tick', i, flush=True)\\n"
    "    time.sleep(0.2)\\n"
) % TOKEN
BIG = (
    "import os\\n"
    "for i in range(%d):\\n"
    "    with open(f'/opt/ml/processing/o/{i:04d}', 'wb') as fh:\\n"
    "        fh.write(os.urandom(1 << 18))\\n"
    "#"
) + TOKEN
fast = ProcessingStep(
    "fast",
    processor=Processor(image_uri=IMAGE, command=("python3", "-c", FAST)),
    outputs=[ProcessingOutput("/opt/ml/processing/o", output_name="o")],
    cache_config=CacheConfig(True, "P1D"),
)
second = ProcessingStep(
    "slow",
    processor=Processor(image_uri=IMAGE, command=("python3", "-c", SECOND)),
    inputs=INPUTS,
    outputs=[ProcessingOutput("/opt/ml/processing/o", output_name="o")],
    depends_on=[fast],
)
pipeline = Pipeline("crash", steps=[fast, second])
"""


def _env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    if "SAGEPIPE_CACHE_DIR" in os.environ:  # the session's image environments
        env["SAGEPIPE_CACHE_DIR"] = os.environ["SAGEPIPE_CACHE_DIR"]
    env["CRASH_TOKEN"] = token
    return env


class Run:
    """A ``sagepipe run`` in its own session, stopped by PID when the test ends."""

    def __init__(
        self,
        project: Path,
        second: str = "SLOW",
        sandbox: str = "process",
        extra_env: dict[str, str] | None = None,
        inputs: str = "[]",
    ) -> None:
        self.project = project
        self.extra_env = extra_env or {}
        self.token = uuid.uuid4().hex
        text = PIPELINE.replace("SECOND", second).replace("%d", str(BIG_FILES))
        text = text.replace("INPUTS", inputs)
        (project / "crash.py").write_text(text)
        if os.geteuid() != 0 and "images" not in (project / "pyproject.toml").read_text():
            # an ordinary user cannot read root's Pythons or uv cache to build the image's
            # environment; what these tests attack is the engine, whatever the interpreter
            with (project / "pyproject.toml").open("a") as fh:
                fh.write('[tool.sagepipe.images]\n"sagemaker-scikit-learn" = "host"\n')
        self.proc = subprocess.Popen(
            [*SAGEPIPE, "run", "crash.py", "--sandbox", sandbox],
            cwd=project,
            env={**_env(self.token), **self.extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        seen = []
        for _ in range(10):
            seen.append(self.proc.stderr.readline())
            if match := re.search(r"execution (\w{12}) of crash", seen[-1]):
                self.id = match.group(1)
                break
        else:
            self.close()
            raise AssertionError("".join(seen))
        self.settings = Settings.from_env(cwd=project, environ=self.extra_env)
        self.history = History(self.settings.history_path)

    def wait_for(self, predicate: object, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"the run ended before {what}: {out}{err}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def step_running(self, name: str = "slow") -> bool:
        return any(s.name == name for s in self.history.steps(self.id)) and bool(
            _processes_with(self.token)
        )

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SAGEPIPE, *args],
            cwd=self.project,
            env={**_env(self.token), **self.extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        for pid in _processes_with(self.token):  # none, unless a test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start(project: Path) -> Iterator[object]:
    runs: list[Run] = []

    def starter(
        second: str = "SLOW",
        sandbox: str = "process",
        extra_env: dict[str, str] | None = None,
        inputs: str = "[]",
    ) -> Run:
        runs.append(Run(project, second, sandbox, extra_env, inputs))
        return runs[-1]

    yield starter
    for r in runs:
        r.close()


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if token in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def _survivors(token: str) -> str:
    """The step processes still there: pid, state, parent, group and command line."""
    lines = []
    for pid in _processes_with(token):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
            lines.append(f"{pid} state={fields[0]} ppid={fields[1]} pgid={fields[2]} {cmd}")
    return "\n".join(lines)


def _gone(token: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _processes_with(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(
    "sandbox",
    [
        "process",
        pytest.param(
            "bwrap", marks=pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
        ),
    ],
)
def test_a_killed_engine_is_marked_failed_by_the_next_command(start: object, sandbox: str) -> None:
    run: Run = start("SLOW", sandbox)  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    work = run.settings.home / "work" / run.id
    assert work.is_dir()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    assert _gone(run.token), f"the step's processes outlived the engine:\n{_survivors(run.token)}"
    listed = run.command("executions", "list")
    assert listed.returncode == 0, listed.stderr
    record = History(run.settings.history_path).execution(run.id)
    assert (record.status, record.failure_reason) == ("Failed", ENGINE_EXITED)
    steps = {s.name: (s.status, s.failure_reason) for s in run.history.steps(run.id)}
    assert steps == {"fast": ("Succeeded", None), "slow": ("Failed", ENGINE_EXITED)}
    assert not work.exists()
    # The next run works, and its cache hit does not cite the execution that crashed.
    steps_json = run.command("executions", "steps", run.id, "--json")
    assert '"Failed"' in steps_json.stdout
    again: Run = start("FAST")  # type: ignore[operator]
    out, err = again.proc.communicate(timeout=120)
    assert again.proc.returncode == 0, out + err
    (fast,) = [s for s in again.history.steps(again.id) if s.name == "fast"]
    assert fast.cache_source is None or run.id not in fast.cache_source


def _files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def test_outputs_are_published_all_or_nothing(start: object) -> None:
    run: Run = start("BIG")  # type: ignore[operator]
    run.wait_for(lambda: _processes_with(run.token), "the big step")
    final = (
        run.settings.home / "s3" / "test-bucket" / "other" / "outputs" / "crash" / run.id / "slow"
    )
    staged = run.settings.home / "work" / run.id / ".publish-slow"

    def publishing() -> bool:
        done = _files(final) + _files(staged)
        return not _processes_with(run.token) and 0 < done < BIG_FILES

    run.wait_for(publishing, "publishing", timeout=120)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    assert run.command("executions", "list").returncode == 0
    assert _files(final) in (0, BIG_FILES)
    assert not (run.settings.home / "work" / run.id).exists()
    assert run.history.execution(run.id).status == "Failed"


def test_sigterm_while_publishing_publishes_nothing(start: object) -> None:
    run: Run = start("BIG")  # type: ignore[operator]
    run.wait_for(lambda: _processes_with(run.token), "the big step")
    final = (
        run.settings.home / "s3" / "test-bucket" / "other" / "outputs" / "crash" / run.id / "slow"
    )
    staged = run.settings.home / "work" / run.id / ".publish-slow"

    def publishing() -> bool:
        done = _files(final) + _files(staged)
        return not _processes_with(run.token) and 0 < done < BIG_FILES

    run.wait_for(publishing, "publishing", timeout=120)
    os.kill(run.proc.pid, signal.SIGTERM)
    out, err = run.proc.communicate(timeout=60)
    status = run.history.execution(run.id).status
    step = {s.name: s.status for s in run.history.steps(run.id)}["slow"]
    # All or nothing: a step stopped before its commit published nothing; one whose commit had
    # begun when the signal was handled (a busy machine) published everything and Succeeded.
    # The execution is Stopped unless it had ended first.
    if step == "Succeeded":
        assert _files(final) == BIG_FILES
        assert (status, run.proc.returncode) in (("Succeeded", 0), ("Stopped", 1)), out + err
    else:
        assert run.proc.returncode == 1, out + err
        assert (status, step, _files(final)) == ("Stopped", "Stopped", 0)
    assert not (run.settings.home / "work" / run.id).exists()


def test_a_commit_cut_short_is_finished_by_the_next_command(start: object) -> None:
    run: Run = start()  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    # As the engine leaves a commit it was killed in: the plan recorded, one file moved.
    staged = run.settings.home / "work" / run.id / ".publish-slow"
    staged.mkdir(parents=True)
    final = run.settings.home / "s3" / "test-bucket" / "o"
    final.mkdir(parents=True)
    (final / "a").write_text("a")
    (staged / "000001").write_text("b")
    plan = {
        "files": [
            [str(staged / "000000"), str(final / "a")],
            [str(staged / "000001"), str(final / "b")],
        ],
        "markers": [str(final / "empty")],
    }
    with run.history._tx() as db:
        db.execute(
            "UPDATE steps SET publishing=? WHERE execution_id=? AND name='slow'",
            (json.dumps(plan), run.id),
        )
    assert run.command("executions", "list").returncode == 0
    assert (final / "a").read_text() == "a" and (final / "b").read_text() == "b"
    assert (final / "empty").is_dir()
    assert not staged.exists()


def test_a_reused_pid_is_not_taken_for_the_engine(start: object) -> None:
    run: Run = start()  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    with run.history._tx() as db:  # the PID now belongs to a live process started later
        db.execute("UPDATE executions SET engine_pid=? WHERE id=?", (os.getpid(), run.id))
    assert History(run.settings.history_path).execution(run.id).status == "Failed"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(start: object, signum: int) -> None:
    run: Run = start()  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    os.kill(run.proc.pid, signum)
    out, err = run.proc.communicate(timeout=60)
    assert run.proc.returncode == 1, out + err
    assert "status: Stopped" in out
    assert run.history.execution(run.id).status == "Stopped"
    assert {s.name: s.status for s in run.history.steps(run.id)}["slow"] == "Stopped"
    assert _gone(run.token)
    assert not (run.settings.home / "work" / run.id).exists()
    store = run.settings.home / "s3"
    assert not [p for p in store.rglob("*") if run.id in str(p) and "/slow/" in str(p)]


def test_logs_follow_ends_when_the_engine_is_killed(start: object) -> None:
    run: Run = start()  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    follow = subprocess.Popen(
        [*SAGEPIPE, "logs", run.id, "slow", "--follow"],
        cwd=run.project,
        env=_env(run.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert follow.poll() is None
        os.kill(run.proc.pid, signal.SIGKILL)
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert "slow | tick 0" in out


def test_executions_stop_from_another_terminal(start: object) -> None:
    run: Run = start()  # type: ignore[operator]
    run.wait_for(run.step_running, "the slow step")
    stopped = run.command("executions", "stop", run.id)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Stopped" in stopped.stdout
    out, err = run.proc.communicate(timeout=60)
    assert run.proc.returncode == 1, out + err
    assert "status: Stopped" in out
    assert {s.name: s.status for s in run.history.steps(run.id)}["slow"] == "Stopped"
    assert _gone(run.token)
    again = run.command("executions", "stop", run.id)
    assert again.returncode == 1 and "ended already" in again.stdout + again.stderr


STAGED_FILES = 3000
STAGED_INPUT = "[ProcessingInput('s3://test-bucket/in/', '/opt/ml/processing/input/data')]"


def _staging_run(start: object, project: Path) -> Run:
    """A run killed while it stages the slow step's 3,000 input files."""
    folder = project / ".sagepipe" / "s3" / "test-bucket" / "in"
    folder.mkdir(parents=True)
    block = os.urandom(64 << 10)
    for i in range(STAGED_FILES):
        (folder / f"part-{i:05d}.bin").write_bytes(block)
    run: Run = start(inputs=STAGED_INPUT)  # type: ignore[operator]
    staged = run.settings.home / "work" / run.id / "slow" / "processing" / "input"

    def staging() -> bool:
        return 0 < _files(staged) < STAGED_FILES

    run.wait_for(staging, "staging", timeout=120)
    return run


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_signal_while_staging_leaves_a_truthful_history(
    start: object, project: Path, signum: int
) -> None:
    run = _staging_run(start, project)
    os.kill(run.proc.pid, signum)
    out, err = run.proc.communicate(timeout=60)
    listed = run.command("executions", "list")
    assert listed.returncode == 0, listed.stderr
    record = History(run.settings.history_path).execution(run.id)
    steps = {s.name: s.status for s in run.history.steps(run.id)}
    if signum == signal.SIGKILL:
        assert (record.status, record.failure_reason) == ("Failed", ENGINE_EXITED)
        assert steps == {"fast": "Succeeded", "slow": "Failed"}
    else:
        assert run.proc.returncode == 1, out + err
        assert record.status == "Stopped"
        assert steps["slow"] == "Stopped"
    assert _gone(run.token), f"a step process outlived the engine:\n{_survivors(run.token)}"
    assert not (run.settings.home / "work" / run.id).exists()
    outputs = run.settings.home / "s3" / "test-bucket" / "other" / "outputs" / "crash" / run.id
    assert _files(outputs / "slow") == 0


def _s3_objects(run: Run) -> int:
    """Objects under the slow step's outputs in the S3 store."""
    store = open_store(run.settings)
    prefix = f"s3://test-bucket/other/outputs/crash/{run.id}/slow/"
    return sum(1 for info in store.list(prefix) if not info.is_folder)


def _s3_run(start: object, seaweed: object) -> Run:
    env = {**seaweed.env(), "SAGEPIPE_STORE": "s3"}  # type: ignore[attr-defined]
    run: Run = start("BIG", extra_env=env)  # type: ignore[operator]
    run.wait_for(lambda: _processes_with(run.token), "the big step")

    def publishing() -> bool:
        return not _processes_with(run.token) and 0 < _s3_objects(run) < BIG_FILES

    run.wait_for(publishing, "publishing", timeout=120)
    return run


def test_a_kill_while_publishing_to_s3_leaves_nothing_after_the_next_command(
    start: object, seaweed: object
) -> None:
    run = _s3_run(start, seaweed)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    # the history lists every object the step was about to write, before the first write
    pending = run.history.unfinished_publications()
    assert pending == [] or all(len(uris) == BIG_FILES for _, _, uris, _, _ in pending)
    listed = run.command("executions", "list")
    assert listed.returncode == 0, listed.stderr
    assert _s3_objects(run) == 0
    assert run.history.execution(run.id).status == "Failed"
    assert run.history.unfinished_publications() == []
    again = run.command("executions", "describe", run.id)
    assert again.returncode == 0, again.stderr


def test_sigterm_while_publishing_to_s3_removes_what_was_written(
    start: object, seaweed: object
) -> None:
    run = _s3_run(start, seaweed)
    os.kill(run.proc.pid, signal.SIGTERM)
    out, err = run.proc.communicate(timeout=60)
    assert run.proc.returncode == 1, out + err
    assert run.history.execution(run.id).status == "Stopped"
    assert {s.name: s.status for s in run.history.steps(run.id)}["slow"] == "Stopped"
    assert _s3_objects(run) == 0
    assert run.history.unfinished_publications() == []


def test_the_same_holds_for_an_ordinary_user(seaweed: object) -> None:
    """Run this module again as uid 1000 (CI runs as root), against this run's SeaweedFS."""
    endpoint = seaweed.endpoint  # type: ignore[attr-defined]
    rerun_as_ordinary_user([__file__], {SEAWEED_ENDPOINT_VAR: endpoint})
