"""``sagepipe bucket``: the bucket's folder layout, pull, push, ls and put."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sagepipe.config import Settings
from sagepipe.errors import SagepipeError
from sagepipe.storage import open_store, parse_uri

bucket_app = typer.Typer(help="Manage the bucket: layout, pull, push.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    from sagepipe.cli.main import settings

    return settings()


@bucket_app.command("put")
def put(
    source: Path,
    uri: str,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when the object exists.")
    ] = False,
    store: Annotated[str | None, typer.Option(help="local (default) or s3.")] = None,
) -> None:
    """Upload one local file to an s3:// URI."""
    s = _settings()
    target = open_store(s, store)
    if not source.is_file():
        raise SagepipeError(f"{source} is not a file")
    bucket, _ = parse_uri(uri)
    if if_missing and target.head(uri) is not None:
        err.print(f"{uri} already exists; left as is")
        return
    target.ensure_bucket(bucket)
    target.put_file(uri, source)
    err.print(f"uploaded {source} -> {uri}")
