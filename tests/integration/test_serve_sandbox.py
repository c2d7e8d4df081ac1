"""``sagepipe serve`` keeps the model server in the sandbox, and refuses hostile archives.

The model is a script-mode one on an image mapped to the host interpreter (no third-party
package needed), so the module also runs as an ordinary user: its inference script tries to
read the project and reach a service on the host's loopback, which the sandbox must prevent,
and its answers go through the Unix socket and the 127.0.0.1 forwarder.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import HAS_BWRAP
from tests.unprivileged import rerun_as_ordinary_user

SAGEPIPE = [sys.executable, "-c", "from sagepipe.cli.main import entry; entry()"]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-server:1"
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")

INFERENCE = """
import os, socket

def model_fn(model_dir):
    with open(os.path.join(model_dir, "scale.txt")) as fh:
        return float(fh.read())

def _reach(what):
    try:
        what()
        return "yes"
    except Exception:
        return "no"

def transform_fn(model, data, content_type, accept):
    if data.strip() == b"probe":
        secret = os.environ["PROBE_FILE"]
        port = int(os.environ["PROBE_PORT"])
        read = _reach(lambda: open(secret).read())
        reach = _reach(lambda: socket.create_connection(("127.0.0.1", port), 2).close())
        return "read=%s reach=%s uid=%d\\n" % (read, reach, os.getuid())
    values = [float(v) * model for v in data.decode().split()]
    return "".join("%g\\n" % v for v in values)
"""


def model_archive(folder: Path, extra: tarfile.TarInfo | None = None) -> Path:
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in (("scale.txt", "2.5"), ("code/inference.py", INFERENCE)):
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return archive


@pytest.fixture
def host_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        '[tool.sagepipe]\nbucket = "test-bucket"\n\n[tool.sagepipe.images]\n"my-server" = "host"\n'
    )
    return root


def serve(project: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    environ["SAGEPIPE_PYTHON"] = sys.executable
    return subprocess.Popen(
        [*SAGEPIPE, "serve", *args, "--image", IMAGE, "-e", "SAGEMAKER_PROGRAM=inference.py"]
        + [item for k, v in env.items() for item in ("-e", f"{k}={v}")],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def post(url: str, body: bytes) -> str:
    req = urllib.request.Request(url + "/invocations", data=body, headers={"Accept": "text/csv"})
    with urllib.request.urlopen(req, timeout=60) as res:
        return str(res.read().decode())


@needs_bwrap
def test_the_server_is_sandboxed_and_answers_through_the_forwarder(
    host_project: Path, tmp_path: Path
) -> None:
    secret = host_project / "secret.txt"
    secret.write_text("not for the model")
    with socket.socket() as service:  # a service on the host's loopback
        service.bind(("127.0.0.1", 0))
        service.listen(1)
        port = service.getsockname()[1]
        proc = serve(
            host_project,
            str(model_archive(tmp_path)),
            "--port",
            "0",
            "--sandbox",
            "bwrap",
            PROBE_FILE=str(secret),
            PROBE_PORT=str(port),
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("serving "), line + proc.stderr.read()
            url = line.split(" on ", 1)[1].split()[0]
            assert post(url, b"1\n2\n4") == "2.5\n5\n10\n"
            assert post(url, b"probe") == f"read=no reach=no uid={os.getuid()}\n"
            pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
            assert proc.returncode == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    time.sleep(0.2)
    left = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and int(p) not in pids and "model_server" in _cmdline(int(p))
    ]
    assert left == []
    assert not any(p for p in pids if "model_server" in _cmdline(p) and _alive(p))
    assert list((host_project / ".sagepipe" / "serve").iterdir()) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_killed_serve_leaves_no_server_and_its_workspace_goes_next_time(
    host_project: Path, tmp_path: Path
) -> None:
    archive = model_archive(tmp_path)
    proc = serve(host_project, str(archive), "--port", "0")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving "), line
    children = _descendants(proc.pid)
    assert children
    (stale,) = (host_project / ".sagepipe" / "serve").iterdir()
    proc.kill()  # SIGKILL: no clean-up of its own
    proc.communicate()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)], "the model server outlived serve"
    assert stale.exists()
    planted = host_project / ".sagepipe" / "serve" / "1-1-not-a-link"
    planted.symlink_to(tmp_path)  # a link named like a workspace is never followed
    again = serve(host_project, str(archive), "--port", "0")
    assert again.stdout is not None
    assert again.stdout.readline().startswith("serving ")
    assert not stale.exists() and tmp_path.exists() and archive.exists()
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)
    assert again.returncode == 0
    assert [p.name for p in (host_project / ".sagepipe" / "serve").iterdir()] == [planted.name]


def _descendants(pid: int) -> set[int]:
    out, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                kids = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                out.update(int(k) for k in kids)
                frontier.extend(int(k) for k in kids)
        except OSError:
            continue
    return out


@pytest.mark.parametrize(
    "member",
    [
        ("link", tarfile.SYMTYPE, "/etc/passwd"),
        ("../escape.txt", tarfile.REGTYPE, ""),
        ("/abs.txt", tarfile.REGTYPE, ""),
        ("fifo", tarfile.FIFOTYPE, ""),
    ],
    ids=["symlink", "dotdot", "absolute", "fifo"],
)
def test_a_hostile_archive_is_refused_in_one_line(
    host_project: Path, tmp_path: Path, member: tuple[str, bytes, str]
) -> None:
    name, kind, target = member
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    proc = serve(host_project, str(model_archive(tmp_path, info)), "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        f"error: {tmp_path / 'model.tar.gz'}: archive member {name!r} is refused"
    ]
    assert not (tmp_path / "escape.txt").exists()
    assert list((host_project / ".sagepipe" / "serve").iterdir()) == []


def test_the_same_holds_for_an_ordinary_user() -> None:
    """Run this module again as uid 1000 (CI runs as root)."""
    rerun_as_ordinary_user([__file__])
