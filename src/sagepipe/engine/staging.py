"""Move data between the object store and a step's workspace.

Inputs are private copies (``copy_file_range``: a reflink where the filesystem offers one, an
in-kernel copy otherwise), so nothing a step does to its inputs reaches the store. Outputs are
published only as regular files, opened without following links and without blocking, and
copied into the store: a symlink, FIFO, socket or device fails the step naming it, a total size
cap keeps a runaway output from filling the disk, and no step process ever holds a stored file.
Keys that would escape the destination are refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sagepipe.bucket_layout import CODE_PREFIX, code_digest, in_code_prefix
from sagepipe.engine.publishing import Publication
from sagepipe.errors import ExecutionError, StorageError
from sagepipe.records import record
from sagepipe.storage import ObjectStore, join_uri, parse_uri, safe_key

MAX_OUTPUT_BYTES = 50 << 30  # per step, all outputs together; also capped at the free disk
FAILURE_REASON_MAX = 1024  # SageMaker's FailureReason length
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_TMP_PREFIX = ".sagepipe-tmp-"


def stage_input(store: ObjectStore, uri: str, dest: Path, data_type: str = "S3Prefix") -> int:
    """Copy the objects ``uri`` names under ``dest``; returns how many files were staged."""
    dest.mkdir(parents=True, exist_ok=True)
    if data_type == "ManifestFile":
        return _stage_manifest(store, uri, dest)
    _bucket, prefix = parse_uri(uri)
    count = 0
    for info in store.list(uri):
        if info.is_folder:
            rel = info.key[len(prefix) :].strip("/")
            if rel:
                (dest / safe_key(rel)).mkdir(parents=True, exist_ok=True)
            continue
        _place(store, info.uri, dest / _relative(info.key, prefix))
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


def _stage_manifest(store: ObjectStore, uri: str, dest: Path) -> int:
    try:
        manifest = json.loads(store.get(uri))
        base = manifest[0]["prefix"]
        entries = [str(e) for e in manifest[1:]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ExecutionError(
            f"manifest {uri} is not a SageMaker manifest ([{{'prefix': ...}}, 'key', ...])"
        ) from None
    for rel in entries:
        _place(store, join_uri(base, rel), dest / safe_key(rel))
    return len(entries)


def _place(store: ObjectStore, uri: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    local = store.local_path(uri)
    if local is not None and local.is_file():
        try:
            src = os.open(local, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise ExecutionError(
                f"input {uri} is a symbolic link in the local store; inputs are read without "
                "following links (put the file itself there)"
            ) from None
        try:
            with open(target, "wb") as out:
                copy_fd(src, out.fileno(), os.fstat(src).st_size)
        finally:
            os.close(src)
    else:
        store.get_file(uri, target)
    verify_code_object(uri, target)


def verify_code_object(uri: str, copy: Path) -> None:
    """Refuse a content-addressed code object whose staged copy does not hash to its key.

    Such an object was changed after it was uploaded (by hand, or by a step whose output
    pointed there); running it would run code nobody compiled.
    """
    expected = code_digest(parse_uri(uri)[1])
    if expected is None:
        return
    with open(copy, "rb") as fh:
        actual = hashlib.file_digest(fh, "sha256").hexdigest()
    if actual != expected:
        raise ExecutionError(
            f"code object {uri} does not match its content hash (its key says sha256 "
            f"{expected[:12]}..., its content is {actual[:12]}...): it changed after "
            "upload; refusing to run it. Compile the pipeline again (`sagepipe run PIPELINE.py` "
            "uploads it afresh) or delete the object"
        )


def check_destination(uri: str, shown_as: str) -> None:
    """Refuse a step output bound for a pipeline's content-addressed code prefix."""
    try:
        key = parse_uri(uri)[1]
    except StorageError:
        return  # the store refuses a malformed URI with its own message
    if in_code_prefix(key):
        raise ExecutionError(
            f"output {shown_as} points into the code prefix ({uri}): objects under "
            f"{CODE_PREFIX}/<pipeline>/code/ hold compiled code addressed by its content and "
            "no step may write there; choose another S3Uri"
        )


def copy_fd(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes between file descriptors in the kernel (a reflink where it can)."""
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(src, dst, size - copied)
            if n == 0:
                break
            copied += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(src, copied, os.SEEK_SET)
    os.lseek(dst, copied, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        os.write(dst, chunk)


@record
class OutputFile:
    """A regular file of an output folder, by its path relative to the folder."""

    rel: str
    size: int


def output_files(folder: Path, shown_as: str) -> tuple[list[OutputFile], list[str]]:
    """The regular files and the empty folders under ``folder``, never following a link.

    Anything else (a symlink, FIFO, socket or device) is an ExecutionError naming the path as
    the step sees it (``shown_as`` is ``folder``'s container path).
    """
    files: list[OutputFile] = []
    empty: list[str] = []
    for rel, entry in _walk(folder, ""):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise ExecutionError(
                f"output {shown_as.rstrip('/')}/{rel} is a {_kind(st.st_mode)}; only regular "
                "files are published"
            )
        files.append(OutputFile(rel, st.st_size))
    for rel, entry in _walk(folder, ""):
        if entry.is_dir(follow_symlinks=False) and _is_empty(entry.path):
            empty.append(rel)
    return files, empty


def _is_empty(path: str) -> bool:
    with os.scandir(path) as entries:  # closed at once: an open iterator warns when collected
        return not any(entries)


def _walk(folder: Path, rel_root: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    with os.scandir(folder / rel_root if rel_root else folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{rel_root}/{entry.name}" if rel_root else entry.name
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(folder, rel)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


class OutputBudget:
    """How many bytes a step may still publish."""

    def __init__(self, limit: int = MAX_OUTPUT_BYTES) -> None:
        self.left = limit

    def take(self, size: int, where: str, store_dir: Path | None) -> None:
        """Account for ``size`` bytes; ExecutionError when over the cap or the free disk."""
        self.left -= size
        if self.left < 0:
            raise ExecutionError(
                f"output {where}: the step's outputs exceed {MAX_OUTPUT_BYTES >> 30} GiB"
            )
        if store_dir is not None:
            with contextlib.suppress(OSError):
                st = os.statvfs(_existing(store_dir))
                if size > st.f_bavail * st.f_frsize:
                    raise ExecutionError(f"output {where}: not enough free disk for {size} bytes")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def publish_output(
    store: ObjectStore,
    src: Path,
    uri: str,
    shown_as: str,
    budget: OutputBudget | None = None,
    publication: Publication | None = None,
) -> int:
    """Copy every regular file under ``src`` to ``uri``; empty folders become markers.

    With ``publication``, files bound for the local store are staged there instead, to be
    committed all at once when the step has published everything.
    """
    check_destination(uri, shown_as)
    files, empty = output_files(src, shown_as)
    for rel in [item.rel for item in files] + empty:
        check_destination(join_uri(uri, rel), f"{shown_as.rstrip('/')}/{rel}")
    budget = budget or OutputBudget()
    if publication is not None:  # the whole list is in the history before the first write
        targets = [join_uri(uri, item.rel) for item in files]
        targets += [join_uri(uri, rel) + "/" for rel in empty]
        remote = [t for t in targets if store.local_path(t) is None]
        folder = uri.rstrip("/") + "/"  # every target lies below it
        there = {i.uri: i.etag for i in store.list(folder)} if remote else {}
        publication.intend_remote(remote, {t: there[t] for t in remote if t in there})
    for item in files:
        target = join_uri(uri, item.rel)
        local = store.local_path(target)
        budget.take(
            item.size, f"{shown_as.rstrip('/')}/{item.rel}", local.parent if local else None
        )
        fd = _open_regular(src / item.rel, f"{shown_as.rstrip('/')}/{item.rel}")
        try:
            _publish_fd(store, fd, target, local, publication)
        finally:
            os.close(fd)
    for rel in empty:
        marker = join_uri(uri, rel) + "/"
        local = store.local_path(marker)
        if publication is not None and local is not None:
            publication.marker(local)
        else:
            store.put(marker, b"")
            if publication is not None:
                publication.wrote(marker)
    return len(files)


def _open_regular(path: Path, shown: str) -> int:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ExecutionError(f"output {shown} is a symbolic link; not published") from None
        raise ExecutionError(f"output {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExecutionError(f"output {shown} is not a regular file; not published")
    return fd


def _publish_fd(
    store: ObjectStore, fd: int, uri: str, local: Path | None, publication: Publication | None
) -> None:
    if local is None:  # a remote store reads the already-opened file
        if publication is not None:
            publication.check_stop()
        store.put_file(uri, Path(f"/proc/self/fd/{fd}"))
        if publication is not None:
            publication.wrote(uri)
        return
    if local.is_dir():
        raise StorageError(f"{uri}: a folder with this name exists in the store")
    if publication is not None:
        local = publication.stage(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    out, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=local.parent)
    try:
        copy_fd(fd, out, os.fstat(fd).st_size)
        os.close(out)
        os.replace(tmp, local)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(out)
        Path(tmp).unlink(missing_ok=True)
        raise


def read_failure_file(path: Path) -> str | None:
    """``/opt/ml/output/failure``'s text, read like an output, capped at SageMaker's length.

    A symlink or anything but a regular file is ignored (None), so a step cannot put a host
    file into its FailureReason.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, FAILURE_REASON_MAX * 4)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace").strip()
    return text[:FAILURE_REASON_MAX] or None
