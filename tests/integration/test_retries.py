"""Step retry policies and retried executions, with real failing steps and real kills.

``work`` (tests/integration/rerun_pipeline.py) fails the way the mode in the store says: its
process killed by SIGKILL from outside (a genuine local JOB_INTERNAL_ERROR, retried), or an
exit code of its own (AlgorithmError, never retried). The engine runs as a real process where
it is killed or signalled. CI runs as root; the last test runs this module as uid 1000.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.cli.main import run_cli
from sagepipe.config import Settings
from sagepipe.engine.history import ENGINE_EXITED, History
from tests.conftest import HAS_BWRAP
from tests.integration.rerun_pipeline import (
    SAGEPIPE,
    environ,
    kill_all,
    processes_with,
    sagepipe,
    set_mode,
    wait_until,
    write_project,
)
from tests.unprivileged import rerun_as_ordinary_user

SANDBOXES = [
    "process",
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
    ),
]


@pytest.fixture
def token(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    value = uuid.uuid4().hex
    monkeypatch.setenv("RERUN_TOKEN", value)
    monkeypatch.chdir(project)
    yield value
    kill_all(value)


@pytest.fixture
def settings_(project: Path, token: str) -> Settings:
    return write_project(project)


def _steps(settings: Settings, execution_id: str) -> dict[str, object]:
    return {s.name: s for s in History(settings.history_path).steps(execution_id)}


def _newest(settings: Settings) -> str:
    return History(settings.history_path).executions("rerun")[0].id


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_step_killed_from_outside_is_retried_and_each_attempt_is_logged(
    settings_: Settings, token: str, sandbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    set_mode(settings_, "wait")
    killed: list[int] = []

    def waiting() -> bool:
        logs = settings_.home.glob("logs/*/work.log")
        return any("mode wait" in log.read_text() for log in logs)

    def kill_once() -> None:
        wait_until(waiting, "work's first attempt to wait")
        set_mode(settings_, "ok")  # the next attempt stages the new mode
        for pid in processes_with(token, "time.sleep"):
            # The sandbox's own processes carry the same command line and end with the step:
            # one may be gone by the time its turn comes.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    killer = threading.Thread(target=kill_once)
    killer.start()
    code = run_cli(["run", "rerun.py", "--sandbox", sandbox])
    killer.join()
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert killed
    execution_id = _newest(settings_)
    steps = _steps(settings_, execution_id)
    work = steps["work"]
    assert (work.status, work.attempts) == ("Succeeded", 2)  # type: ignore[attr-defined]
    log = History(settings_.history_path).step_log(execution_id, "work") or ""
    assert "mode wait" in log and "mode ok" in log
    assert re.search(r"attempt 1 failed with SageMaker\.JOB_INTERNAL_ERROR .*retrying in 0s", log)
    assert "attempt 2 of 3 after 0s" in log
    assert steps["yes"].status == "Succeeded"  # type: ignore[attr-defined]
    listed = sagepipe(settings_.project_root, "executions", "steps", execution_id, "--json")
    assert '"AttemptCount": 2' in listed.stdout


def test_a_step_that_exits_non_zero_is_not_retried(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    set_mode(settings_, "fail")
    assert run_cli(["run", "rerun.py", "--sandbox", "process"]) == 1
    table = capsys.readouterr().out
    work = _steps(settings_, _newest(settings_))["work"]
    assert (work.status, work.attempts) == ("Failed", 1)  # type: ignore[attr-defined]
    assert work.metadata["_fault"] == "AlgorithmError"  # type: ignore[attr-defined]
    assert "[AlgorithmError]" in table


def test_retries_end_after_max_attempts_with_the_fault_recorded(
    settings_: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RERUN_MAX", "2")
    set_mode(settings_, "die")
    assert run_cli(["run", "rerun.py", "--sandbox", "process"]) == 1
    table = capsys.readouterr().out
    execution_id = _newest(settings_)
    work = _steps(settings_, execution_id)["work"]
    assert (work.status, work.attempts) == ("Failed", 3)  # type: ignore[attr-defined]
    assert work.failure_reason.startswith("InternalServerError")  # type: ignore[attr-defined]
    assert "SageMaker.JOB_INTERNAL_ERROR, 3 attempts" in table
    log = History(settings_.history_path).step_log(execution_id, "work") or ""
    assert log.count("mode die") == 3 and "attempt 3 of 3" in log
    assert "check" not in _steps(settings_, execution_id)


class Engine:
    """``sagepipe run`` as its own process, with a long backoff between attempts."""

    def __init__(self, project: Path, settings: Settings, sandbox: str = "process") -> None:
        env = {**environ(), "RERUN_INTERVAL": "600"}
        self.settings = settings
        self.proc = subprocess.Popen(
            [*SAGEPIPE, "run", "rerun.py", "--sandbox", sandbox],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"execution (\w{12}) of rerun", line)
        assert match, line
        self.id = match.group(1)

    def in_backoff(self) -> bool:
        log = self.settings.home / "logs" / self.id / "work.log"
        return log.is_file() and "retrying in 600s" in log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def engines(project: Path, settings_: Settings) -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.close()


@pytest.mark.parametrize("how", ["executions stop", "SIGTERM"])
def test_a_stop_during_the_backoff_ends_the_execution_at_once(
    project: Path, settings_: Settings, engines: list[Engine], how: str
) -> None:
    set_mode(settings_, "die")
    engine = Engine(project, settings_)
    engines.append(engine)
    wait_until(engine.in_backoff, "the backoff before attempt 2")
    if how == "SIGTERM":
        os.kill(engine.proc.pid, signal.SIGTERM)
    else:
        stopped = sagepipe(project, "executions", "stop", engine.id)
        assert stopped.returncode == 0 and "Stopped" in stopped.stdout, stopped.stderr
    engine.proc.wait(timeout=60)  # the backoff is 600 s: only a prompt stop gets here
    history = History(settings_.history_path)
    assert history.execution(engine.id).status == "Stopped"
    work = _steps(settings_, engine.id)["work"]
    assert (work.status, work.attempts) == ("Stopped", 1)  # type: ignore[attr-defined]
    # A Stopped execution can be retried: the same id runs work again, keeping first.
    first = _steps(settings_, engine.id)["first"]
    set_mode(settings_, "ok")
    retried = sagepipe(project, "executions", "retry", engine.id)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    steps = _steps(settings_, engine.id)
    assert (steps["work"].status, steps["work"].attempts) == ("Succeeded", 2)  # type: ignore[attr-defined]
    assert steps["first"].started == first.started  # type: ignore[attr-defined]
    assert history.execution(engine.id).status == "Succeeded"


def test_an_engine_killed_during_the_backoff_leaves_a_truthful_history_and_retries(
    project: Path, settings_: Settings, engines: list[Engine], token: str
) -> None:
    set_mode(settings_, "die")
    engine = Engine(project, settings_, "bwrap" if HAS_BWRAP else "process")
    engines.append(engine)
    wait_until(engine.in_backoff, "the backoff before attempt 2")
    os.kill(engine.proc.pid, signal.SIGKILL)
    engine.proc.wait()
    listed = sagepipe(project, "executions", "list")  # reaps the execution
    assert listed.returncode == 0, listed.stderr
    history = History(settings_.history_path)
    record = history.execution(engine.id)
    assert (record.status, record.failure_reason) == ("Failed", ENGINE_EXITED)
    steps = _steps(settings_, engine.id)
    assert (steps["first"].status, steps["first"].attempts) == ("Succeeded", 1)  # type: ignore[attr-defined]
    work = steps["work"]
    assert (work.status, work.attempts, work.failure_reason) == ("Failed", 1, ENGINE_EXITED)  # type: ignore[attr-defined]
    assert not processes_with(token)
    set_mode(settings_, "ok")
    retried = sagepipe(project, "executions", "retry", engine.id)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"retrying execution {engine.id}" in retried.stderr
    steps = _steps(settings_, engine.id)
    assert {n: s.status for n, s in steps.items()} == {  # type: ignore[attr-defined]
        "first": "Succeeded",
        "work": "Succeeded",
        "check": "Succeeded",
        "yes": "Succeeded",
    }
    assert steps["work"].attempts == 2  # type: ignore[attr-defined]
    log = history.step_log(engine.id, "work") or ""
    assert "mode die" in log and "mode ok" in log and "attempt 2: the execution was retried" in log
    again = sagepipe(project, "executions", "retry", engine.id)
    assert again.returncode == 1
    assert "Succeeded; there is nothing to retry" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_running_execution_is_not_retried(
    project: Path, settings_: Settings, engines: list[Engine], token: str
) -> None:
    set_mode(settings_, "wait")
    engine = Engine(project, settings_)
    engines.append(engine)
    wait_until(lambda: processes_with(token, "time.sleep"), "work to run")
    refused = sagepipe(project, "executions", "retry", engine.id)
    assert refused.returncode == 1
    assert f"execution {engine.id} is Executing; only a Failed or Stopped" in refused.stderr
    assert History(settings_.history_path).execution(engine.id).status == "Executing"
    stopped = sagepipe(project, "executions", "stop", engine.id)
    assert stopped.returncode == 0, stopped.stderr


def test_the_same_holds_for_an_ordinary_user() -> None:
    """The retry and crash tests again, as uid 1000 (CI runs as root)."""
    rerun_as_ordinary_user([__file__])


def test_a_sandbox_that_cannot_start_is_an_internal_error_and_retried(
    settings_: Settings, token: str
) -> None:
    from sagepipe import Pipeline, ProcessingStep, Processor, SageMakerJobStepRetryPolicy
    from sagepipe.definition import compile_pipeline
    from sagepipe.engine.factory import build_engine, start_definition
    from sagepipe.engine.sandbox import BwrapSandbox

    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    policy = SageMakerJobStepRetryPolicy(
        exception_types=["JOB_INTERNAL_ERROR"], max_attempts=1, interval_seconds=0
    )
    step = ProcessingStep(
        "only",
        processor=Processor(image_uri=image, command=("python3", "-c", "print(1)")),
        retry_policies=[policy],
    )
    compiled = compile_pipeline(Pipeline("nostart", steps=[step]), bucket="test-bucket")
    missing = settings_.project_root / "no-such-bwrap"  # the sandbox's program is gone
    engine = build_engine(settings_, BwrapSandbox(str(missing)))
    execution = start_definition(engine, compiled.definition, "nostart", {})
    assert execution.wait(120) == "Failed"
    (record,) = History(settings_.history_path).steps(execution.execution_id)
    assert (record.attempts, record.metadata["_fault"]) == (2, "SageMaker.JOB_INTERNAL_ERROR")
    assert record.failure_reason.startswith("InternalServerError: the step's sandbox did not start")
    assert str(missing) in record.failure_reason


def test_two_retries_of_one_execution_do_not_both_run(settings_: Settings) -> None:
    from sagepipe.engine.execution import LocalExecution
    from sagepipe.engine.factory import build_engine
    from sagepipe.errors import ExecutionError

    set_mode(settings_, "fail")
    assert run_cli(["run", "rerun.py", "--sandbox", "process"]) == 1
    failed = _newest(settings_)
    set_mode(settings_, "ok")
    first = build_engine(settings_)
    resumed = first.resume(failed)
    with pytest.raises(ExecutionError, match=f"execution {failed} is Executing"):
        build_engine(settings_).resume(failed)
    assert LocalExecution(first, resumed).start().wait(120) == "Succeeded"
    steps = _steps(settings_, failed)
    assert steps["work"].attempts == 2  # type: ignore[attr-defined]


def test_an_unreachable_store_is_a_service_fault_and_retried(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (project / "sf.py").write_text(
        "from sagepipe import Pipeline, ProcessingInput, ProcessingStep, Processor, "
        "StepRetryPolicy\n"
        "IMAGE = '683313688378.dkr.ecr.us-east-1.amazonaws.com/"
        "sagemaker-scikit-learn:1.2-1-cpu-py3'\n"
        "step = ProcessingStep('read', processor=Processor(image_uri=IMAGE, "
        "command=('python3', '-c', 'print(1)')), inputs=[ProcessingInput("
        "'s3://test-bucket/in', '/opt/ml/processing/in', input_name='in')], retry_policies=["
        "StepRetryPolicy(exception_types=['SERVICE_FAULT'], max_attempts=1, "
        "interval_seconds=0)])\n"
        "pipeline = Pipeline('servicefault', steps=[step])\n"
    )
    write_project(project)
    env = {"SAGEPIPE_STORE": "s3", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for key, value in {**env, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(project)
    assert run_cli(["run", "sf.py", "--sandbox", "process"]) == 1
    assert "[Step.SERVICE_FAULT, 2 attempts]" in capsys.readouterr().out
    settings = Settings.from_env(cwd=project, environ={})
    (record,) = History(settings.history_path).steps(
        History(settings.history_path).executions("servicefault")[0].id
    )
    assert (record.attempts, record.metadata["_fault"]) == (2, "Step.SERVICE_FAULT")
