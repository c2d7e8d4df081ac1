"""Move data between the object store and a step's workspace.

From the local store, inputs are hard-linked (no copy); outputs are renamed into the store.
Keys that would escape the destination are refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sagepipe.errors import ExecutionError, StorageError
from sagepipe.storage import ObjectStore, join_uri, parse_uri, safe_key


def stage_input(
    store: ObjectStore, uri: str, dest: Path, data_type: str = "S3Prefix", link: bool = True
) -> int:
    """Place the objects ``uri`` names under ``dest``; returns how many files were staged.

    With ``link`` (for inputs mounted read-only) local-store objects are hard-linked; without
    it they are copied, so the step may change them without touching the store.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if data_type == "ManifestFile":
        return _stage_manifest(store, uri, dest, link)
    _bucket, prefix = parse_uri(uri)
    count = 0
    for info in store.list(uri):
        if info.is_folder:
            rel = info.key[len(prefix) :].strip("/")
            if rel:
                (dest / safe_key(rel)).mkdir(parents=True, exist_ok=True)
            continue
        _place(store, info.uri, dest / _relative(info.key, prefix), link)
        count += 1
    if count == 0 and not any(dest.iterdir()):
        raise ExecutionError(f"input {uri} is empty: no objects under this prefix")
    return count


def _relative(key: str, prefix: str) -> str:
    if key == prefix or not prefix:
        return safe_key(key.rsplit("/", 1)[-1] if key == prefix else key)
    rest = key[len(prefix) :]
    if prefix.endswith("/") or rest.startswith("/"):
        return safe_key(rest.lstrip("/"))
    return safe_key(key.rsplit("/", 1)[-1])


def _stage_manifest(store: ObjectStore, uri: str, dest: Path, link: bool) -> int:
    try:
        manifest = json.loads(store.get(uri))
        base = manifest[0]["prefix"]
        entries = [str(e) for e in manifest[1:]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ExecutionError(
            f"manifest {uri} is not a SageMaker manifest ([{{'prefix': ...}}, 'key', ...])"
        ) from None
    for rel in entries:
        _place(store, join_uri(base, rel), dest / safe_key(rel), link)
    return len(entries)


def _place(store: ObjectStore, uri: str, target: Path, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    local = store.local_path(uri)
    if local is not None and local.is_file():
        if link:
            try:
                os.link(local, target)
                return
            except OSError:  # another filesystem
                pass
        shutil.copyfile(local, target)
        return
    store.get_file(uri, target)


def publish_output(store: ObjectStore, src: Path, uri: str) -> int:
    """Publish every file under ``src`` to ``uri``; empty folders become markers."""
    count = 0
    for root, dirs, files in os.walk(src):
        rel_root = Path(root).relative_to(src).as_posix()
        rel_root = "" if rel_root == "." else rel_root
        if rel_root and not dirs and not files:
            store.put(join_uri(uri, rel_root) + "/", b"")
        for name in files:
            rel = f"{rel_root}/{name}" if rel_root else name
            _publish_file(store, Path(root) / name, join_uri(uri, rel))
            count += 1
    return count


def _publish_file(store: ObjectStore, path: Path, uri: str) -> None:
    local = store.local_path(uri)
    if local is not None and not path.is_symlink():  # local_path refused unsafe keys already
        if local.is_dir():
            raise StorageError(f"{uri}: a folder with this name exists in the store")
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, local)
            return
        except OSError:  # another filesystem: copy instead
            pass
    store.put_file(uri, path)
