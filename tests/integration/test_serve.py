"""``sagepipe serve``: a model.tar.gz behind /ping and /invocations, as a real process.

The model is a 1.7-1 booster saved as the built-in algorithm saves it. Each test starts
``sagepipe serve`` on a free port, talks HTTP to it on 127.0.0.1, compares its predictions with
the batch transform program's for the same rows (the same serving code), and stops it by PID,
checking that no process it started is left.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.images import Environment
from sagepipe.storage import LocalStore
from tests.conftest import HAS_BWRAP
from tests.integration.conftest import XGBOOST_1_7_1
from tests.integration.test_serving import as_csv, layout, output, python, rows, transform

EXE = str(Path(sys.executable).with_name("sagepipe"))
SANDBOX = "bwrap" if HAS_BWRAP else "process"


@pytest.fixture(scope="module")
def model_tar(xgb17: Environment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz holding a 1.7-1 regression booster as ``xgboost-model``."""
    folder = tmp_path_factory.mktemp("serve-model")
    python(
        xgb17,
        f"""
        import numpy as np, xgboost as xgb
        rng = np.random.RandomState(3)
        x = rng.uniform(0, 1, (300, 8))
        y = 3 + 15 * x[:, 1] + 5 * x[:, 4] + rng.normal(0, 0.5, 300)
        booster = xgb.train({{"max_depth": 3, "eta": 0.3}}, xgb.DMatrix(x, label=y), 10)
        booster.save_model({str(folder / "xgboost-model")!r})
        """,
    )
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "xgboost-model", arcname="xgboost-model")
    return archive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    out, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    kids = [int(c) for c in fh.read().split()]
                out.update(kids)
                frontier.extend(kids)
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    out["SAGEPIPE_CACHE_DIR"] = os.environ["SAGEPIPE_CACHE_DIR"]
    return out


class Served:
    """A running ``sagepipe serve`` and its URL."""

    def __init__(self, project: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [EXE, "serve", *args, "--sandbox", SANDBOX],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # said once the model answers
        assert line.startswith("serving "), line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.url = line.split(" on ", 1)[1].split()[0]

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        req = urllib.request.Request(self.url + path, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, res.headers.get("Content-Type"), res.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type"), exc.read().decode()

    def stop(self, sig: int) -> tuple[int, str]:
        children = descendants(self.proc.pid)
        assert children, "the server runs in a child process"
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in children if alive(p)], "a process of the server was left"
        return self.proc.returncode, err


@pytest.fixture
def served(settings: Settings, model_tar: Path) -> Iterator[Served]:
    """Serving the model from the configured (local) store, by its s3:// URI."""
    uri = "s3://test-bucket/models/abalone/model.tar.gz"
    LocalStore(settings.local_store_root).put_file(uri, model_tar)
    server = Served(
        settings.project_root, uri, "--port", str(free_port()), "--image", XGBOOST_1_7_1
    )
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def transform_predictions(xgb17: Environment, model_tar: Path, data: str, tmp: Path) -> list[str]:
    """What the batch transform program writes for ``data`` (the same serving code)."""
    with tarfile.open(model_tar) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        (tmp / "xgboost-model").write_bytes(member.read())
    job = {"ContentType": "text/csv", "SplitType": "Line", "AssembleWith": "Line"}
    root = layout(tmp / "root", job, {"test.csv": data}, tmp / "xgboost-model")
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    return output(root, "test.csv")


def test_ping_and_csv_invocations_match_the_transform_then_sigterm_stops_it(
    served: Served, xgb17: Environment, model_tar: Path, tmp_path: Path, settings: Settings
) -> None:
    assert served.url.startswith("http://127.0.0.1:")
    assert served.request("/ping")[0] == 200
    data = as_csv(rows(40, 5))
    want = transform_predictions(xgb17, model_tar, data, tmp_path)
    status, kind, body = served.request(
        "/invocations", data.encode(), {"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert (status, kind) == (200, "text/csv")
    assert body.split(",") == want and len(want) == 40  # an endpoint answers one CSV line
    one = served.request(
        "/invocations", data.splitlines()[0].encode(), {"Content-Type": "text/csv"}
    )
    assert one[:2] == (200, "text/csv") and one[2] == want[0]
    status, kind, body = served.request(
        "/invocations", data.encode(), {"Content-Type": "text/csv", "Accept": "application/json"}
    )
    assert (status, kind) == (200, "application/json")
    assert [str(p["score"]) for p in json.loads(body)["predictions"]] == want
    status, _, body = served.request(
        "/invocations", b"{}", {"Content-Type": "application/x-parquet"}
    )
    assert status == 415 and "application/x-parquet is not supported" in body
    assert served.request("/nope")[0] == 404
    code, err = served.stop(signal.SIGTERM)
    assert code == 0 and err.rstrip().endswith("stopped"), err
    with (
        pytest.raises(OSError),
        socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), 2),
    ):
        pass  # the port is closed
    assert list((settings.home / "serve").iterdir()) == []  # the workspace is gone


def test_ctrl_c_stops_a_model_served_from_a_local_path(project: Path, model_tar: Path) -> None:
    server = Served(project, str(model_tar), "--port", str(free_port()), "--image", XGBOOST_1_7_1)
    try:
        assert server.request("/ping")[0] == 200
        code, _ = server.stop(signal.SIGINT)
        assert code == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def run_serve(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "serve", *args], cwd=project, capture_output=True, text=True, timeout=300, env=env()
    )


def test_a_taken_port_is_one_line(project: Path, model_tar: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = run_serve(project, str(model_tar), "--port", str(port), "--image", XGBOOST_1_7_1)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is in use; pass --port with a free one (--port 0 "
        "picks one)"
    )


def test_bad_models_are_one_line(project: Path, tmp_path: Path) -> None:
    res = run_serve(project, str(tmp_path / "missing.tar.gz"), "--port", "0")
    assert res.returncode == 1 and "not in the local model registry; pass --image" in res.stderr
    res = run_serve(
        project, str(tmp_path / "missing.tar.gz"), "--port", "0", "--image", XGBOOST_1_7_1
    )
    assert res.returncode == 1
    assert res.stderr.strip().endswith("is neither an s3:// URI nor a model.tar.gz file")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("notes.txt")
        tar.addfile(info, io.BytesIO(b""))
    res = run_serve(
        project, str(empty), "--port", "0", "--image", XGBOOST_1_7_1, "--sandbox", SANDBOX
    )
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the model server for") and "Unable to load model" in last
    assert not any((project / ".sagepipe" / "serve").iterdir())
