"""``serve``: a model.tar.gz as a local real-time endpoint (``/ping``, ``/invocations``)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from sagepipe.cli.consoles import console, err, escape
from sagepipe.cli.options import SandboxKind, StoreOpt, parse_pairs
from sagepipe.cli.state import settings
from sagepipe.errors import ExecutionError, UsageError

DEFAULT_PORT = 8080  # engine.serve.DEFAULT_PORT: the port SageMaker's containers listen on


def serve(
    ctx: typer.Context,
    model_uri: Annotated[
        str, typer.Argument(help="s3:// URI (in the configured store) or local model.tar.gz.")
    ],
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free one)."),
    ] = DEFAULT_PORT,
    image: Annotated[
        str | None,
        typer.Option(
            help="The inference image whose environment serves the model (default: the image "
            "the local registry holds for MODEL_URI)."
        ),
    ] = None,
    env: Annotated[
        list[str],
        typer.Option(
            "--env",
            "-e",
            help="NAME=VALUE for the container's Environment (e.g. SAGEMAKER_PROGRAM); repeatable.",
        ),
    ] = [],  # noqa: B006
    sandbox: Annotated[SandboxKind | None, typer.Option(help="How the server is isolated.")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve a model as SageMaker serves it behind an endpoint, until Ctrl-C or SIGTERM."""
    from sagepipe.engine.sandbox import choose_sandbox
    from sagepipe.engine.serve import ModelServer, registered_image
    from sagepipe.storage import open_store

    s = settings(ctx).with_overrides(
        sandbox=sandbox.value if sandbox else None, store=store.value if store else None
    )
    chosen = image or registered_image(s, model_uri)
    if chosen is None:
        raise UsageError(
            f"{model_uri} is not in the local model registry; pass --image with its inference "
            "image (e.g. the XGBoost image URI it was trained with)"
        )
    server = ModelServer(
        s,
        open_store(s),
        choose_sandbox(s.sandbox),
        model_uri,
        chosen,
        parse_pairs(env, "environment variable", "NAME=VALUE"),
        say=lambda line: err.print(f"serve | {escape(line)}", highlight=False),
    )
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in signals}
    try:
        url = server.start(port)
        console.print(f"serving {model_uri} on {url} (Ctrl-C stops)", highlight=False, markup=False)
        while not stop.wait(0.2):
            if not server.alive():
                raise ExecutionError(f"the model server for {model_uri} exited")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    err.print("stopped")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command()(serve)
