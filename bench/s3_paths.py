"""Does the lean S3 request path (storage/fast.py) pay for itself? In one process, on SeaweedFS.

The same requests a sync makes, through three clients: sagepipe's lean path (botocore's signer
and urllib3), a boto3 client (what S3Store falls back to), and obstore when it is importable.
List N objects; GET and PUT N small objects, 16 at a time. Median of RUNS; ratios are each
client's time over the lean path's (above 1: the lean path is faster).

    python bench/s3_paths.py [--objects 2000] [--size 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import median_of, record, table
from sagepipe.config import Settings
from sagepipe.storage.fast import CRC32_HEADER, RawS3, crc32_b64
from sagepipe.storage.s3 import _credentials, s3_client
from tests.servers import SeaweedFS

BUCKET = "paths"


def lean(settings: Settings) -> dict[str, Callable[[list[str], bytes], object]]:
    assert settings.endpoint_url
    raw = RawS3(settings.endpoint_url, settings.region, lambda: _credentials(settings), True)

    def get(keys: list[str], _: bytes) -> None:
        with tempfile.TemporaryFile() as fh:
            fd = fh.fileno()
            pool(keys, lambda k: raw.get(BUCKET, k, fd))

    return {
        "list": lambda keys, _: sum(len(page) for page in raw.pages(BUCKET, "k/")),
        "get": get,
        "put": lambda keys, data: pool(
            keys, lambda k: raw.put(BUCKET, k, data, {CRC32_HEADER: crc32_b64(data)})
        ),
    }


def boto(settings: Settings) -> dict[str, Callable[[list[str], bytes], object]]:
    client = s3_client(settings)

    def listing(keys: list[str], _: bytes) -> int:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="k/")
        return sum(len(page.get("Contents", [])) for page in pages)

    return {
        "list": listing,
        "get": lambda keys, _: pool(
            keys, lambda k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
        ),
        "put": lambda keys, data: pool(
            keys,
            lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=data, ContentMD5=_md5(data)),
        ),
    }


def obstore_client(settings: Settings) -> dict[str, Callable[[list[str], bytes], object]] | None:
    try:
        import obstore  # type: ignore[import-not-found]  # optional: measured when installed
        from obstore.store import S3Store  # type: ignore[import-not-found]
    except ImportError:
        return None
    store = S3Store(
        BUCKET,
        endpoint=settings.endpoint_url,
        region=settings.region,
        access_key_id=settings.env["AWS_ACCESS_KEY_ID"],
        secret_access_key=settings.env["AWS_SECRET_ACCESS_KEY"],
        client_options={"allow_http": True},
    )

    def listing(keys: list[str], _: bytes) -> int:
        return sum(len(batch) for batch in obstore.list(store, prefix="k/", chunk_size=1000))

    return {
        "list": listing,
        "get": lambda keys, _: pool(keys, lambda k: obstore.get(store, k).bytes()),
        "put": lambda keys, data: pool(keys, lambda k: obstore.put(store, k, data)),
    }


def _md5(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def pool(keys: list[str], fn: Callable[[str], Any]) -> None:
    with ThreadPoolExecutor(max_workers=16) as workers:
        list(workers.map(fn, keys))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = SeaweedFS(Path(tmp)).start()
        try:
            settings = Settings.from_env(cwd=Path(tmp), environ=server.env())
            s3_client(settings).create_bucket(Bucket=BUCKET)
            keys = [f"k/{i:06d}" for i in range(args.objects)]
            data = os.urandom(args.size)
            clients = {"lean path (fast.py)": lean(settings), "boto3": boto(settings)}
            extra = obstore_client(settings)
            if extra is not None:
                clients["obstore"] = extra
            clients["boto3"]["put"](keys, data)  # the objects the list and get runs read
            times: dict[str, dict[str, float]] = {}
            for name, ops in clients.items():
                times[name] = {
                    op: median_of(functools.partial(ops[op], keys, data), args.runs)[0]
                    for op in ("list", "get", "put")
                }
        finally:
            server.stop()
    base = times["lean path (fast.py)"]
    rows = [
        [
            name,
            *(f"{t[op]:.3f}" for op in ("list", "get", "put")),
            " / ".join(f"{t[op] / base[op]:.2f}x" for op in ("list", "get", "put")),
        ]
        for name, t in times.items()
    ]
    body = table(
        ["client", "list (s)", "get (s)", "put (s)", "time vs lean (list / get / put)"], rows
    )
    note = (
        f"SeaweedFS on 127.0.0.1, one process; {args.objects} objects of {args.size} bytes; "
        f"list all, GET all and PUT all, 16 at a time; median of {args.runs}."
    )
    boto_ratio = [times["boto3"][op] / base[op] for op in ("list", "get", "put")]
    verdict = (
        f"boto3 (S3Store's fallback) takes {min(boto_ratio):.1f}-{max(boto_ratio):.1f}x the "
        "lean path's time: the lean path pays for itself against boto3."
    )
    if "obstore" in times:
        best = min(times["obstore"][op] / base[op] for op in ("list", "get", "put"))
        verdict += f" obstore is faster still where it wins most ({best:.2f}x of the lean path)."
    print(note + "\n\n" + body + "\n\n" + verdict)
    record(
        "s3 request paths: lean (fast.py) vs boto3 vs obstore",
        note + "\n\n" + body + "\n\n" + verdict,
    )


if __name__ == "__main__":
    main()
