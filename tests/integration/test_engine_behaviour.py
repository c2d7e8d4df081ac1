"""Failures, isolation, concurrency, stopping, runtime limits, caching and the S3 store."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from sagepipe import (
    CacheConfig,
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
)
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline
from sagepipe.engine.factory import build_engine, start_definition, upload_code
from sagepipe.engine.history import History
from sagepipe.engine.sandbox.bwrap import network_helper
from sagepipe.errors import ConfigError, DefinitionError
from sagepipe.storage import LocalStore
from tests.conftest import HAS_BWRAP
from tests.integration.helpers import SCRIPTS, run, sandbox, statuses

needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PROC = Processor(image_uri=IMAGE)


# SageMaker caps each ContainerEntrypoint item at 256 characters: inline code travels as
# ContainerArguments of at most 256 characters each, joined again by this loader.
INLINE = (
    "import sys; c = ''.join(sys.argv[1:]); del sys.argv[1:]; exec(compile(c, '<inline>', 'exec'))"
)


def py(name: str, code: str, **kw: object) -> ProcessingStep:
    """A processing step running inline Python code."""
    processor = kw.pop("processor", PROC)
    chunks = [code[i : i + 256] for i in range(0, len(code), 256)]
    return ProcessingStep(
        name,
        processor=Processor(
            image_uri=IMAGE, command=("python3", "-c", INLINE), **processor_kw(processor)
        ),
        job_arguments=chunks,
        **kw,
    )  # type: ignore[arg-type]


def processor_kw(p: object) -> dict[str, object]:
    assert isinstance(p, Processor)
    return {
        "network_isolation": p.network_isolation,
        "max_runtime_in_seconds": p.max_runtime_in_seconds,
        "env": dict(p.env),
    }


def out(name: str) -> ProcessingOutput:
    return ProcessingOutput(f"/opt/ml/processing/{name}", output_name=name)


def test_failing_step_fails_the_execution_and_stops_downstream(settings: Settings) -> None:
    a = ProcessingStep("a", processor=PROC, code="fail.py", outputs=[out("o")])
    b = py("b", "print('never')", depends_on=[a])
    sibling = py("sibling", "import time; time.sleep(0.5); print('done')")
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("p", steps=[a, b, sibling]), "process", lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert (
        desc["FailureReason"]
        == "Step 'a' failed with message: ValueError: column 'price' has 3 negative values"
    )
    assert statuses(execution) == {"a": "Failed", "sibling": "Succeeded"}  # b never started
    history = History(settings.history_path)
    assert "Traceback" in (history.step_log(execution.execution_id, "a") or "")
    store = LocalStore(settings.local_store_root)
    log = store.get(f"s3://test-bucket/other/logs/p/{execution.execution_id}/a.log").decode()
    assert "about to fail" in log and "starting" in log
    assert ("a", "starting") in lines
    assert not list(store.list(f"s3://test-bucket/other/outputs/p/{execution.execution_id}/a/"))


def test_parameters_are_typed_and_checked(settings: Settings) -> None:
    p = Pipeline(
        "p",
        steps=[py("a", "print(1)")],
        parameters=[ParameterString("Mode", default_value="x", enum_values=["x", "y"])],
    )
    engine = build_engine(settings, sandbox("process"))
    definition = compile_pipeline(p, bucket="b").definition
    with pytest.raises(DefinitionError, match="unknown parameters \\['Nope'\\]"):
        engine.prepare(definition, "p", {"Nope": "1"})
    with pytest.raises(DefinitionError, match="'z' is not one of"):
        engine.prepare(definition, "p", {"Mode": "z"})


def test_unknown_image_names_the_setting(settings: Settings) -> None:
    step = ProcessingStep(
        "a",
        processor=Processor(image_uri="123.dkr.ecr.us-east-1.amazonaws.com/my-image:3"),
        code="fail.py",
    )
    with pytest.raises(ConfigError) as caught:  # refused before any step runs
        run(settings, Pipeline("p", steps=[step]), "process")
    reason = str(caught.value)
    assert "my-image:3" in reason and "[tool.sagepipe.images]" in reason and "\n" not in reason


def test_max_runtime_is_enforced(settings: Settings) -> None:
    slow = py(
        "slow",
        "import time; time.sleep(30)",
        processor=Processor(image_uri=IMAGE, max_runtime_in_seconds=1),
    )
    started = time.time()
    execution = run(settings, Pipeline("p", steps=[slow]), "process")
    assert time.time() - started < 20
    assert (
        execution.describe()["FailureReason"]
        == "Step 'slow' failed with message: MaxRuntimeInSeconds (1) exceeded"
    )


def test_stop_kills_running_steps_and_marks_stopped(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    code = f"import os, subprocess, time; p = subprocess.Popen(['sleep', '60']); open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    p = Pipeline("p", steps=[py("long", code)])
    engine = build_engine(settings, sandbox("process"))
    execution = start_definition(engine, compile_pipeline(p, bucket="b").definition, "p", {})
    deadline = time.time() + 20
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    execution.stop()
    assert execution.wait(30) == "Stopped"
    assert statuses(execution) == {"long": "Stopped"}
    child = int(marker.read_text())
    time.sleep(0.2)
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    )


def test_two_executions_at_once_do_not_mix(settings: Settings) -> None:
    code = "import os, time; time.sleep(0.3); open('/opt/ml/processing/o/who.txt', 'w').write(os.environ['WHO'])"
    results = {}

    errors: list[BaseException] = []

    def go(who: str) -> None:
        step = py(
            "w", code, outputs=[out("o")], processor=Processor(image_uri=IMAGE, env={"WHO": who})
        )
        try:
            results[who] = run(settings, Pipeline("same", steps=[step]), "process")
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(w,)) for w in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = LocalStore(settings.local_store_root)
    for who, execution in results.items():
        assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
        uri = f"s3://test-bucket/other/outputs/same/{execution.execution_id}/w/o/who.txt"
        assert store.get(uri) == who.encode()
    assert results["one"].execution_id != results["two"].execution_id
    assert len(History(settings.history_path).executions("same")) == 2


def test_cache_hits_reuse_a_previous_run(settings: Settings) -> None:
    step = py(
        "a",
        "open('/opt/ml/processing/o/x', 'w').write('1')",
        outputs=[out("o")],
        cache_config=CacheConfig(True, "P1D"),
    )
    p = Pipeline("cached", steps=[step])
    first = run(settings, p, "process")
    second = run(settings, p, "process")
    entry = second.list_steps()[0]
    assert entry["StepStatus"] == "Succeeded"
    assert entry["CacheHitResult"] == {"SourcePipelineExecutionArn": first.arn}
    changed = Pipeline(
        "cached",
        steps=[
            py(
                "a",
                "open('/opt/ml/processing/o/x', 'w').write('2')",
                outputs=[out("o")],
                cache_config=CacheConfig(True, "P1D"),
            )
        ],
    )
    third = run(settings, changed, "process")
    assert "CacheHitResult" not in third.list_steps()[0]


@needs_bwrap
def test_bwrap_step_cannot_write_outside_its_outputs(settings: Settings, project: Path) -> None:
    target = Path("/var/tmp") / f"escaped-{uuid.uuid4().hex}.txt"  # a host folder outside /tmp
    in_tmp = project / "escaped.txt"  # /tmp is private in the sandbox: the project is not there
    code = (
        "import os\n"
        f"for path in ({str(target)!r}, '/usr/escaped.txt', {str(in_tmp)!r}):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.strerror)\n"
        "open('/opt/ml/processing/o/ok.txt', 'w').write('fine')\n"
        "open('/tmp/private.txt', 'w').write('tmp is private')\n"
    )
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/in/data.csv", b"a\n1\n")
    step = py(
        "w",
        code,
        inputs=[ProcessingInput("s3://test-bucket/in", "/opt/ml/processing/input/data")],
        outputs=[out("o")],
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("iso", steps=[step]), "bwrap", lines=lines)
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
    text = "\n".join(line for _, line in lines)
    # /var/tmp is the step's own (a container's writable layer); the host's is untouched.
    assert "refused /usr/escaped.txt" in text and f"refused {in_tmp}" in text
    assert not target.exists()
    assert not in_tmp.exists()
    assert store.get("s3://test-bucket/in/data.csv") == b"a\n1\n"
    assert (
        store.get(f"s3://test-bucket/other/outputs/iso/{execution.execution_id}/w/o/ok.txt")
        == b"fine"
    )
    assert not Path("/tmp/private.txt").exists()


@needs_bwrap
def test_bwrap_step_cannot_read_another_steps_workspace(settings: Settings) -> None:
    home = str(settings.home)
    writer = py(
        "writer",
        "import time; open('/opt/ml/processing/o/secret', 'w').write('s'); time.sleep(1)",
        outputs=[out("o")],
    )
    reader = py(
        "reader",
        "import os, time\n"
        "time.sleep(0.5)\n"
        f"found = [os.path.join(r, f) for r, _, fs in os.walk({home!r}) for f in fs]\n"
        "print('FOUND', len(found), [f for f in found if 'secret' in f])\n",
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("iso2", steps=[writer, reader]), "bwrap", lines=lines)
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
    assert ("reader", "FOUND 0 []") in lines


@needs_bwrap
def test_network_isolation_blocks_loopback(settings: Settings) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('BLOCKED', exc)\n"
    )
    try:
        isolated = py(
            "isolated", code, processor=Processor(image_uri=IMAGE, network_isolation=True)
        )
        open_net = py("open", code)
        lines: list[tuple[str, str]] = []
        run(settings, Pipeline("net", steps=[isolated, open_net]), "bwrap", lines=lines)
    finally:
        server.close()
    by_step = {step: line for step, line in lines}
    assert by_step["isolated"].startswith("BLOCKED")
    # Without isolation a step reaches the outside, not this machine's loopback services,
    # where slirp4netns can run; elsewhere it shares the host's network.
    expected = "BLOCKED" if network_helper() is not None else "CONNECTED"
    assert by_step["open"].startswith(expected)


def test_bwrap_requested_but_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from sagepipe.engine import sandbox as sb

    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        sb.choose_sandbox("bwrap")
    assert sb.choose_sandbox("auto").name == "process"


def test_same_pipeline_runs_against_s3(seaweed: object, project: Path) -> None:
    env = {**seaweed.env(), "SAGEPIPE_STORE": "s3", "SAGEPIPE_BUCKET": "s3run"}  # type: ignore[attr-defined]
    settings = Settings.from_env(cwd=project, environ=env)
    engine = build_engine(settings, sandbox("process"))
    engine.store.ensure_bucket("s3run")
    engine.store.put("s3://s3run/in/data.csv", b"a\n1\n2\n")
    step = ProcessingStep(
        "copy",
        processor=Processor(
            image_uri=IMAGE,
            command=(
                "python3",
                "-c",
                "import shutil; shutil.copy('/opt/ml/processing/input/data/data.csv', '/opt/ml/processing/o/copy.csv')",
            ),
        ),
        inputs=[ProcessingInput("s3://s3run/in", "/opt/ml/processing/input/data")],
        outputs=[out("o")],
    )
    compiled = compile_pipeline(Pipeline("s3p", steps=[step]), bucket="s3run")
    upload_code(compiled, engine.store)
    execution = start_definition(engine, compiled.definition, "s3p", {})
    assert execution.wait(60) == "Succeeded", execution.describe().get("FailureReason")
    assert (
        engine.store.get(f"s3://s3run/other/outputs/s3p/{execution.execution_id}/copy/o/copy.csv")
        == b"a\n1\n2\n"
    )
    assert (
        engine.store.head(f"s3://s3run/other/logs/s3p/{execution.execution_id}/copy.log")
        is not None
    )


@pytest.mark.parametrize("kind", ["process", pytest.param("bwrap", marks=needs_bwrap)])
def test_warm_starts_run_the_same_scripts(settings: Settings, kind: str) -> None:
    """Downstream steps start warm (imports done while upstream runs) with the same results."""
    first = ProcessingStep(
        "first",
        processor=Processor(
            image_uri=IMAGE,
            command=(
                "python3",
                "-c",
                "import time; time.sleep(1.0); open('/opt/ml/processing/o/x', 'w').write('41')",
            ),
        ),
        outputs=[out("o")],
    )
    second = ProcessingStep(
        "second",
        processor=Processor(image_uri=IMAGE, env={"GREETING": "hi"}),
        code="warm_step.py",
        inputs=[
            ProcessingInput(
                first.properties.ProcessingOutputConfig.Outputs["o"].S3Output.S3Uri,
                "/opt/ml/processing/input/o",
            )
        ],
        outputs=[out("result")],
        job_arguments=["--in", "/opt/ml/processing/input/o", "--out", "/opt/ml/processing/result"],
    )
    failing = ProcessingStep("failing", processor=PROC, code="fail.py", depends_on=[first])
    engine = build_engine(settings, sandbox(kind))
    compiled = compile_pipeline(
        Pipeline("warm", steps=[first, second, failing]), bucket="test-bucket", base_dir=SCRIPTS
    )
    upload_code(compiled, engine.store)
    execution = start_definition(engine, compiled.definition, "warm", {})
    execution.wait(120)
    assert execution.run.warmed == {"second", "failing"}
    assert not (settings.home / "work" / execution.execution_id).exists()  # workspaces cleaned
    steps = {s["StepName"]: s for s in execution.list_steps()}
    assert steps["second"]["StepStatus"] == "Succeeded"
    assert steps["failing"]["FailureReason"] == "ValueError: column 'price' has 3 negative values"
    store = LocalStore(settings.local_store_root)
    result = store.get(
        f"s3://test-bucket/other/outputs/warm/{execution.execution_id}/second/result/result.json"
    )
    assert json.loads(result) == {
        "value": 42,
        "greeting": "hi",
        "argv0": "warm_step.py",
        "name": "__main__",
    }


def test_warm_start_of_a_step_that_never_runs_is_cleaned_up(settings: Settings) -> None:
    upstream = ProcessingStep("upstream", processor=PROC, code="fail.py")
    downstream = ProcessingStep("downstream", processor=PROC, code="fail.py", depends_on=[upstream])
    engine = build_engine(settings, sandbox("process"))
    compiled = compile_pipeline(
        Pipeline("cold", steps=[upstream, downstream]), bucket="test-bucket", base_dir=SCRIPTS
    )
    upload_code(compiled, engine.store)
    execution = start_definition(engine, compiled.definition, "cold", {})
    assert execution.wait(60) == "Failed"
    assert execution.run.warmed == set()
    assert [s["StepName"] for s in execution.list_steps()] == ["upstream"]
    assert not (settings.home / "work" / execution.execution_id).exists()
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and execution.execution_id in _cmdline(p)
    ]
    assert leftovers == []


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
