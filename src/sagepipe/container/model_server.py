"""A model's real-time endpoint: ``GET /ping`` and ``POST /invocations``, as SageMaker serves it.

Run inside the sandbox on the model image environment's Python::

    python model_server.py [--root /opt/ml] --config /opt/ml/serve.json --socket /opt/ml/serve.sock

The model is unpacked at ``model/`` (a script-mode source directory at ``code/``), and is served
by the same code as a batch transform (``serving.py`` beside this file): the built-in XGBoost
algorithm, or the framework inference contract (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``, ``transform_fn``). ``serve.json`` says which: ``Program``, ``Framework`` and
``ImageVersion``. The server listens on a Unix socket, never on a network port: the host forwards
``127.0.0.1:<port>`` to it, so the sandbox keeps no network. The model is loaded before the socket
appears; a model that does not load ends the program with status 1 and one line on stderr.
Requests are answered one at a time, as SageMaker's containers answer each worker's. SIGTERM and
SIGINT end it. Standard library and the image's packages only; Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import argparse
import json
import os
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, List, Optional

try:  # run as a file (as in a step), its own folder is sys.path[0]
    from serving import (
        JSON,
        ROOT_VARIABLE,
        InvocationError,
        ScriptMode,
        XGBoostAlgorithm,
        media_type,
    )
    from xgboost_selectable import VARIABLE as SELECTABLE
except ImportError:  # imported as part of the package (tests)
    from sagepipe.container.serving import (
        JSON,
        ROOT_VARIABLE,
        InvocationError,
        ScriptMode,
        XGBoostAlgorithm,
        media_type,
    )
    from sagepipe.container.xgboost_selectable import VARIABLE as SELECTABLE

MAX_BODY = 6 * 1024 * 1024  # a real-time endpoint's payload limit (6 MB)
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    406: "Not Acceptable",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def model_server(root: str, config: Any) -> Any:
    """The XGBoost algorithm server, or the framework script-mode server, for ``config``."""
    model = os.path.join(root, "model")
    version = str(config.get("ImageVersion") or "")
    if config.get("Program"):
        code = os.path.join(root, "code")
        if not os.path.isdir(code):
            code = os.path.join(model, "code")
        return ScriptMode(model, code, config["Program"], config.get("Framework", ""), version)
    return XGBoostAlgorithm(model, version)


class Handler(BaseHTTPRequestHandler):
    """``/ping`` and ``/invocations``; every other path is 404."""

    server_version = "sagepipe-model-server"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/ping":
            self._reply(200, b"", "text/plain")
        else:
            self._reply(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/invocations":
            self._drain()
            self._reply(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._drain()
            self._reply(413, b"payload over 6 MB\n", "text/plain")
            return
        payload = self.rfile.read(length)
        content_type = self.headers.get("Content-Type")
        accept = self.headers.get("Accept") or ""
        server = self.server
        assert isinstance(server, Server)
        try:
            with server.lock:  # user inference code need not be thread-safe
                body = server.model.invoke(payload, content_type, accept)
        except InvocationError as exc:
            self._reply(exc.status, (exc.message.strip() + "\n").encode("utf-8"), "text/plain")
            return
        except Exception as exc:  # the container's own fault
            message = f"{type(exc).__name__}: {exc}\n"
            self._reply(500, message.encode("utf-8"), "text/plain")
            return
        self._reply(200, body, response_type(server.model, accept))

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status, REASONS.get(status, ""))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "local"  # a Unix socket's peer has no address

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("{} {}\n".format(self.command or "-", format % args))


def response_type(model: Any, accept: str) -> str:
    """The response's Content-Type, as the container sets it.

    The XGBoost algorithm answers JSON when asked for it, else CSV (selectable inference output:
    what was asked for); a script's output is what Accept asked for, else the default.
    """
    chosen = accept if accept and accept.strip() != "*/*" else ""
    if isinstance(model, XGBoostAlgorithm):
        default = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "text/csv"
        if SELECTABLE in os.environ:
            return chosen or default
        return JSON if media_type(chosen or default) == JSON else "text/csv"
    return chosen or os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or JSON


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A Unix socket server, a thread per connection, invocations one at a time."""

    daemon_threads = True

    def __init__(self, path: str, model: Any) -> None:
        self.model = model
        self.lock = threading.Lock()
        socketserver.UnixStreamServer.__init__(self, path, Handler)


def main(argv: Optional[List[str]] = None) -> int:
    """Load the model, listen on ``--socket`` until SIGTERM or SIGINT; 0 on a clean stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", default=os.environ.get(ROOT_VARIABLE, "/opt/ml"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    with open(args.config) as fh:
        config = json.load(fh)
    try:
        model = model_server(args.root, config)
        model.load()
    except InvocationError as exc:
        sys.stderr.write("cannot serve the model: {}\n".format(" ".join(exc.message.split())))
        return 1
    server = Server(args.socket, model)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"serving on {args.socket}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
