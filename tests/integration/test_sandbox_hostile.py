"""Hostile steps: each attack of a pipeline author, run as a real step, contained as a container
would contain it.

CI runs as root; the last test runs this whole module again as an ordinary user (uid 1000,
``setpriv``) inside the root run, so every guarantee is checked for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe import (
    Estimator,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    TrainingStep,
)
from sagepipe.config import Settings
from sagepipe.engine.execution import LocalExecution
from sagepipe.engine.sandbox import bwrap_works, runtime_paths
from sagepipe.engine.sandbox.bwrap import network_helper
from sagepipe.storage import LocalStore
from tests.conftest import ROOT
from tests.integration.helpers import run
from tests.unprivileged import rerun_as_ordinary_user

BWRAP = shutil.which("bwrap")
pytestmark = pytest.mark.skipif(
    BWRAP is None or not bwrap_works(BWRAP), reason="bubblewrap cannot create namespaces here"
)
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SECRET = "sagepipe-test-secret-" + uuid.uuid4().hex
UNPRIVILEGED_UID = 1000


# SageMaker caps each ContainerEntrypoint item at 256 characters: inline code travels as
# ContainerArguments of at most 256 characters each, joined again by this loader.
INLINE = (
    "import sys; c = ''.join(sys.argv[1:]); del sys.argv[1:]; exec(compile(c, '<inline>', 'exec'))"
)


def py(name: str, code: str, **kw: object) -> ProcessingStep:
    """A processing step running inline Python code in the sandbox."""
    processor = Processor(
        image_uri=IMAGE,
        command=("python3", "-c", INLINE),
        network_isolation=bool(kw.pop("network_isolation", False)),
        instance_type=kw.pop("instance_type", "ml.m5.large"),
    )
    chunks = [code[i : i + 256] for i in range(0, len(code), 256)]
    return ProcessingStep(name, processor=processor, job_arguments=chunks, **kw)  # type: ignore[arg-type]


def out(name: str) -> ProcessingOutput:
    return ProcessingOutput(f"/opt/ml/processing/{name}", output_name=name)


def logs(execution: LocalExecution, lines: list[tuple[str, str]]) -> dict[str, str]:
    by_step: dict[str, list[str]] = {}
    for step, line in lines:
        by_step.setdefault(step, []).append(line)
    return {step: "\n".join(text) for step, text in by_step.items()}


def reasons(execution: LocalExecution) -> dict[str, str]:
    return {s["StepName"]: s.get("FailureReason", "") for s in execution.list_steps()}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings; as an ordinary user, steps run on the host interpreter.

    An ordinary user cannot read root's Pythons (``/root/.pyenv``) or uv's package cache, so it
    cannot build the image's environment here; what these tests attack is the sandbox, which
    is the same whichever interpreter a step runs on.
    """
    if os.geteuid() == 0:
        return settings
    return settings.with_overrides(images={"sagemaker-scikit-learn": "host"})


@pytest.fixture
def secrets(project: Path) -> Path:
    """A project .env holding a secret, as a user's would."""
    env = project / ".env"
    env.write_text(f"AWS_SECRET_ACCESS_KEY={SECRET}\n")
    return env


def test_no_capabilities_no_host_processes_no_engine(settings: Settings, secrets: Path) -> None:
    engine = os.getpid()
    code = (
        "import os, signal\n"
        "cap = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]\n"
        "print('CAPEFF', cap)\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print('PIDS', len(pids), max(pids))\n"
        f"for path in ('/proc/{engine}/environ', '/proc/{engine}/root/etc/hostname'):\n"
        "    try:\n"
        "        open(path).read(); print('READ', path)\n"
        "    except OSError as exc:\n"
        "        print('NOREAD', path, exc.strerror)\n"
        "try:\n"
        f"    os.kill({engine}, signal.SIGKILL); print('KILLED')\n"
        "except OSError as exc:\n"
        "    print('NOKILL', exc.strerror)\n"
        "print('HOSTNAME', os.uname().nodename)\n"
        "print('SID', os.getsid(0))\n"
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("caps", steps=[py("probe", code)]), "bwrap", lines=lines)
    text = logs(execution, lines)["probe"]
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", text
    assert "CAPEFF 0000000000000000" in text
    pids = next(line for line in text.splitlines() if line.startswith("PIDS")).split()
    assert int(pids[1]) <= 3 and int(pids[2]) <= 3  # bwrap's init and the step: nothing else
    assert "READ" not in text.replace("NOREAD", "") and "KILLED" not in text
    assert SECRET not in text
    assert "HOSTNAME algo-1" in text
    assert int(text.split("SID ", 1)[1].split()[0]) <= 2  # a session of the sandbox's own


def test_no_host_files_no_secrets(settings: Settings, secrets: Path, project: Path) -> None:
    paths = [secrets, settings.home, project, Path.home(), Path("/home"), Path("/root"), ROOT]
    code = (
        "import json, os\n"
        f"for path in {[str(p) for p in paths]!r} + ['/etc/shadow', '/var/lib']:\n"
        "    try:\n"
        "        if os.path.isdir(path):\n"
        "            print('SAW', path, json.dumps(sorted(os.listdir(path))))\n"
        "        else:\n"
        "            print('READ', path, open(path).read())\n"
        "    except OSError as exc:\n"
        "        print('HIDDEN', path, exc.strerror)\n"
        "print('ENV', json.dumps(sorted(os.environ)))\n"
        "print('ETC', json.dumps(sorted(os.listdir('/etc'))))\n"
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("files", steps=[py("probe", code)]), "bwrap", lines=lines)
    text = logs(execution, lines)["probe"]
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", text
    assert SECRET not in text
    assert "READ" not in text
    # A folder is seen only on the way to the step's runtime (the interpreter, read-only).
    runtime = runtime_paths(settings.python)
    for line in text.splitlines():
        if line.startswith("SAW"):
            _, path, listing = line.split(" ", 2)
            for name in json.loads(listing):
                assert any(
                    r == Path(path, name) or Path(path, name) in r.parents for r in runtime
                ), line
    env = json.loads(text.split("ENV ", 1)[1].splitlines()[0])
    assert not [k for k in env if k.startswith(("AWS_", "SAGEPIPE_"))]
    assert "shadow" not in json.loads(text.split("ETC ", 1)[1].splitlines()[0])


def test_inputs_are_writable_but_the_store_never_changes(settings: Settings) -> None:
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/in/data.csv", b"a\n1\n")
    code = (
        "import os, subprocess\n"
        "p = '/opt/ml/processing/input/data/data.csv'\n"
        "r = subprocess.run(['mount', '-o', 'remount,rw', '/opt/ml/processing/input/data'],"
        " capture_output=True, text=True)\n"
        "print('REMOUNT', r.returncode)\n"
        "open(p, 'w').write('changed')\n"
        "os.truncate(p, 0)\n"
        "open('/opt/ml/processing/input/data/new.txt', 'w').write('x')\n"
        "print('WROTE INPUT')\n"
    )
    step = py(
        "writer",
        code,
        inputs=[ProcessingInput("s3://test-bucket/in", "/opt/ml/processing/input/data")],
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("inputs", steps=[step]), "bwrap", lines=lines)
    text = logs(execution, lines)["writer"]
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", text
    assert "WROTE INPUT" in text and "REMOUNT 0" not in text
    assert store.get("s3://test-bucket/in/data.csv") == b"a\n1\n"
    assert [i.key for i in store.list("s3://test-bucket/in/")] == ["in/data.csv"]


def test_no_process_outlives_its_step(settings: Settings) -> None:
    token = uuid.uuid4().hex
    code = (
        "import subprocess\n"
        "subprocess.Popen(['setsid', 'sh', '-c', 'sleep 1.5; echo evil > "
        f"/opt/ml/processing/o/result.txt; sleep 30 # {token}'], start_new_session=True)\n"
        "open('/opt/ml/processing/o/result.txt', 'w').write('good')\n"
    )
    execution = run(settings, Pipeline("daemon", steps=[py("d", code, outputs=[out("o")])]))
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
    time.sleep(2.5)
    store = LocalStore(settings.local_store_root)
    uri = f"s3://test-bucket/other/outputs/daemon/{execution.execution_id}/d/o/result.txt"
    assert store.get(uri) == b"good"
    assert _processes_with(token) == []


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("symbolic link", "os.symlink({secret!r}, '/opt/ml/processing/o/leak')"),
        ("symbolic link", "os.symlink('/dev/zero', '/opt/ml/processing/o/leak')"),
        ("FIFO", "os.mkfifo('/opt/ml/processing/o/leak')"),
        ("socket", "socket.socket(socket.AF_UNIX).bind('/opt/ml/processing/o/leak')"),
    ],
)
def test_an_output_that_is_not_a_regular_file_fails_the_step(
    settings: Settings, secrets: Path, kind: str, make: str
) -> None:
    code = (
        "import os, socket\n"
        "open('/opt/ml/processing/o/fine.txt', 'w').write('fine')\n"
        f"{make.format(secret=str(secrets))}\n"
    )
    execution = run(settings, Pipeline("outs", steps=[py("o", code, outputs=[out("o")])]))
    reason = reasons(execution)["o"]
    assert execution.describe()["PipelineExecutionStatus"] == "Failed"
    assert (
        reason == f"output /opt/ml/processing/o/leak is a {kind}; only regular files are published"
    )
    store = LocalStore(settings.local_store_root)
    assert list(store.list(f"s3://test-bucket/other/outputs/outs/{execution.execution_id}/")) == []


def test_a_failure_file_symlink_does_not_leak(settings: Settings, secrets: Path) -> None:
    estimator = Estimator(
        entry_point="hostile_failure.py",
        image_uri=IMAGE,
        instance_type="ml.m5.large",
        environment={"TARGET": str(secrets)},
    )
    step = TrainingStep("train", estimator=estimator)
    execution = run(settings, Pipeline("failure", steps=[step]))
    reason = reasons(execution)["train"]
    assert execution.describe()["PipelineExecutionStatus"] == "Failed"
    assert SECRET not in reason
    assert reason == "RuntimeError: the training failed on purpose"


@pytest.fixture
def host_services(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A TCP server on the host's 127.0.0.1 and an abstract unix socket, both listening."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(5)
    name = f"sagepipe-test-{uuid.uuid4().hex}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0" + name)
    unix.listen(5)
    on_disk = socket.socket(socket.AF_UNIX)  # outside /tmp, which was private before too
    on_disk.bind(f"/var/tmp/{name}.sock")
    on_disk.listen(5)
    try:
        yield tcp.getsockname()[1], name
    finally:
        tcp.close()
        unix.close()
        on_disk.close()
        Path(f"/var/tmp/{name}.sock").unlink()


def test_network_isolation_reaches_no_host_service(
    settings: Settings, host_services: tuple[int, str]
) -> None:
    port, name = host_services
    code = (
        "import socket\n"
        f"for family, address in ((socket.AF_INET, ('127.0.0.1', {port})), "
        f"(socket.AF_UNIX, '\\0{name}'), (socket.AF_UNIX, '/var/tmp/{name}.sock'), "
        "(socket.AF_INET, ('1.1.1.1', 53))):\n"
        "    s = socket.socket(family); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect(address); print('CONNECTED', family)\n"
        "    except OSError as exc:\n"
        "        print('BLOCKED', family, exc)\n"
    )
    isolated = py("isolated", code, network_isolation=True)
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("isolated", steps=[isolated]), lines=lines)
    text = logs(execution, lines)["isolated"]
    assert "CONNECTED" not in text and text.count("BLOCKED") == 4, text


@pytest.mark.skipif(network_helper() is None, reason="slirp4netns cannot run here")
def test_a_networked_step_does_not_reach_host_loopback(
    settings: Settings, host_services: tuple[int, str]
) -> None:
    port, name = host_services
    code = (
        "import socket\n"
        f"for address in (('127.0.0.1', {port}), ('10.0.2.2', {port})):\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=3); print('CONNECTED', address)\n"
        "    except OSError as exc:\n"
        "        print('BLOCKED', address, exc)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect('\\0{name}'); print('CONNECTED unix')\n"
        "except OSError as exc:\n"
        "    print('BLOCKED unix', exc)\n"
        "print('INTERFACES', sorted(n for _, n in socket.if_nameindex()))\n"
        "print('DNS', open('/etc/resolv.conf').read().split()[:2])\n"
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("net", steps=[py("open", code)]), lines=lines)
    text = logs(execution, lines)["open"]
    assert "CONNECTED" not in text and text.count("BLOCKED") == 3, text
    assert "'tap0'" in text  # connected to the outside through slirp4netns
    assert "DNS ['nameserver', '10.0.2.3']" in text  # slirp's forwarder, not the host loopback


def test_memory_over_the_instance_type_fails_like_sagemaker(settings: Settings) -> None:
    code = "import mmap\nm = mmap.mmap(-1, 6 << 30)\nprint('ALLOCATED')\n"
    step = py("greedy", code, instance_type="ml.t3.medium")
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("memory", steps=[step]), lines=lines)
    reason = reasons(execution)["greedy"]
    assert execution.describe()["PipelineExecutionStatus"] == "Failed", lines
    assert reason.startswith(
        "ClientError: Please use an instance type with more memory, or reduce the size of job "
        "data processed on an instance."
    )
    assert "ml.t3.medium" in reason


def test_the_same_holds_for_an_ordinary_user() -> None:
    """Run this module again as uid 1000 (CI runs as root)."""
    rerun_as_ordinary_user([__file__])


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if token in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


def test_a_step_over_its_runtime_ends_with_every_process(settings: Settings) -> None:
    token = uuid.uuid4().hex
    code = (
        "import subprocess, time\n"
        f"subprocess.Popen(['setsid', 'sh', '-c', 'sleep 60 # {token}'], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    processor = Processor(
        image_uri=IMAGE, command=("python3", "-c", code), max_runtime_in_seconds=1
    )
    started = time.time()
    execution = run(settings, Pipeline("slow", steps=[ProcessingStep("s", processor=processor)]))
    assert time.time() - started < 20
    assert reasons(execution)["s"] == "MaxRuntimeInSeconds (1) exceeded"
    time.sleep(0.5)
    assert _processes_with(token) == []
