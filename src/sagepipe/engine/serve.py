"""Serve a model.tar.gz as a SageMaker real-time endpoint on this machine (``sagepipe serve``).

The model runs as a transform's does: unpacked at ``/opt/ml/model`` of a private workspace, on
its image's environment, in the sandbox, served by the same code (``container/serving.py``)
through ``container/model_server.py``. That program listens on a Unix socket in the workspace and
has no network; this process listens on ``127.0.0.1:<port>`` only and forwards each connection
to the socket. A stop kills the sandbox's process group and removes the workspace; a killed
``serve`` leaves no server (the sandbox's watchdog ends it), and the next one removes the
workspace it left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from sagepipe.config import Settings
from sagepipe.engine.environments import StepEnvironments, describe
from sagepipe.engine.history import History
from sagepipe.engine.jobs import base_env, job_spec, kill_group
from sagepipe.engine.liveness import is_alive, this_process
from sagepipe.engine.processing import host_path
from sagepipe.engine.sandbox import CONTAINER_ROOT, Sandbox, limits_for
from sagepipe.engine.staging import verify_code_object
from sagepipe.engine.transform import extract_model, framework
from sagepipe.errors import ExecutionError, UsageError
from sagepipe.storage import ObjectStore

PROGRAM = "model_server.py"
CONFIG = "/opt/ml/serve.json"
SOCKET = "serve.sock"  # relative to /opt/ml, the program's working folder: short on any host
DEFAULT_PORT = 8080  # the port SageMaker's containers listen on
INSTANCE_TYPE = "ml.m5.large"
Say = Callable[[str], None]


def registered_image(settings: Settings, model_uri: str) -> str | None:
    """The inference image the local model registry holds for ``model_uri`` (newest first)."""
    if not settings.history_path.is_file():
        return None
    for model in History(settings.history_path).models():
        if model["model_data_url"] == model_uri and model.get("image"):
            return str(model["image"])
    return None


def remove_stale(base: Path) -> None:
    """Remove the workspaces of ``serve`` processes that are gone (killed, so never cleaned).

    A workspace is named ``<pid>-<start time>-<random>`` after the process that made it.
    """
    for entry in base.iterdir():
        pid, _, rest = entry.name.partition("-")
        started = rest.partition("-")[0]
        if pid.isdigit() and started.isdigit() and not is_alive(int(pid), int(started)):
            shutil.rmtree(entry, ignore_errors=True)  # refuses a symlink: nothing is followed


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: any free port); one line when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on 127.0.0.1 is in use; pass --port with a free one (--port 0 "
                "picks one)"
            ) from None
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    sock.listen(64)
    return sock


class ModelServer:
    """One served model: its sandboxed server process and the 127.0.0.1 forwarder."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        sandbox: Sandbox,
        model_uri: str,
        image: str,
        environment: Mapping[str, str] | None = None,
        say: Say | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sandbox = sandbox
        self.model_uri = model_uri
        self.image = image
        self.environment = dict(environment or {})
        self.say: Say = say or (lambda line: None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.workspace: Path | None = None
        self._listener: socket.socket | None = None
        self._folder_fd: int | None = None
        self._threads: list[threading.Thread] = []
        self._last: list[str] = []  # the server's last output lines, for a failed start

    def start(self, port: int = DEFAULT_PORT) -> str:
        """Bind the port, stage the model, start its server; returns the URL once it answers."""
        self._listener = listen(port)
        try:
            self._stage()
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        accept = threading.Thread(target=self._accept, name="sagepipe-serve", daemon=True)
        accept.start()
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _stage(self) -> None:
        base = self.settings.home / "serve"
        base.mkdir(parents=True, exist_ok=True)
        remove_stale(base)
        pid, started = this_process()
        ws = Path(tempfile.mkdtemp(prefix=f"{pid}-{started}-", dir=base))
        self.workspace = ws
        model_dir = host_path(ws, "/opt/ml/model")
        model_dir.mkdir(parents=True)
        self._fetch_and_extract(self.model_uri, model_dir)
        program = self.environment.get("SAGEMAKER_PROGRAM")
        submit = self.environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if program and submit.startswith("s3://"):
            code = host_path(ws, "/opt/ml/code")
            code.mkdir(parents=True)
            self._fetch_and_extract(submit, code)
        config = {
            "Program": program,
            "Framework": framework(self.image),
            "ImageVersion": self.image.rsplit("/", 1)[-1].partition(":")[2],
        }
        host_path(ws, CONFIG).write_text(json.dumps(config))
        self._folder_fd = os.open(ws, os.O_PATH | os.O_DIRECTORY)

    def _fetch_and_extract(self, uri: str, dest: Path) -> None:
        assert self.workspace is not None
        if uri.startswith("s3://"):
            archive = self.workspace / ".model.tar.gz"
            self.store.get_file(uri, archive)
            verify_code_object(uri, archive)
            extract_model(archive, dest, uri)
            archive.unlink()
        elif Path(uri).is_file():
            extract_model(Path(uri), dest, uri)
        else:
            raise UsageError(f"{uri} is neither an s3:// URI nor a model.tar.gz file")

    def _launch(self) -> None:
        assert self.workspace is not None
        env = StepEnvironments(self.settings).environment(self.image, self.say)
        self.say(describe(env))
        argv = [
            *env.argv(["python"]),
            self.sandbox.program(PROGRAM),
            "--root",
            CONTAINER_ROOT,
            "--config",
            CONFIG,
            "--socket",
            SOCKET,
        ]
        extra = {**self.environment, "SAGEMAKER_BIND_TO_PORT": str(DEFAULT_PORT)}
        job_env = base_env(env, extra, self.settings.env)
        spec = job_spec(
            self.settings,
            argv,
            job_env,
            self.workspace,
            CONTAINER_ROOT,
            False,  # no network: the host forwards the port to the socket
            env,
            limits_for(INSTANCE_TYPE),
        )
        self.proc = self.sandbox.launch(spec, subprocess.PIPE, subprocess.STDOUT)
        pump = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        pump.start()
        self._threads.append(pump)

    def _pump(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.strip():
                self._last = [*self._last[-19:], line]
            self.say(line)
        stream.close()

    def _socket_path(self) -> str:
        # through the folder's descriptor: a Unix socket path is limited to 108 bytes
        return f"/proc/self/fd/{self._folder_fd}/{SOCKET}"

    def _wait_ready(self) -> None:
        assert self.proc is not None
        while self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(self._socket_path())
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.05)
        for t in self._threads:
            t.join(5)
        why = next(
            (ln for ln in reversed(self._last) if ln.strip()), f"exit {self.proc.returncode}"
        )
        raise ExecutionError(f"the model server for {self.model_uri} did not start: {why}")

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(self._socket_path())
        except OSError:
            client.close()
            upstream.close()
            return
        back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
        back.start()
        _copy(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def alive(self) -> bool:
        """Whether the model server process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Close the port, stop the server's process group, remove the workspace."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self.proc is not None:
            kill_group(self.proc)
            self.proc.wait()
        for t in self._threads:
            t.join(5)
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None
        if self.workspace is not None and not self.settings.keep_workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until ``source`` ends, then end ``target``'s sending side."""
    try:
        while chunk := source.recv(1 << 16):
            target.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


__all__ = ["DEFAULT_PORT", "ModelServer", "listen", "registered_image"]
