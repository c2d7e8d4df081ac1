"""The destination folder of a sync, written without following symlinks.

Every write and delete resolves its parent folder one component at a time with
``O_NOFOLLOW | O_DIRECTORY``, so a symlinked folder inside the destination is never written
through, and replaces a file only after checking it is still the one the plan saw. Downloads
land in a private temporary folder of this process (``.sagepipe/sync-tmp/<pid>-<random>``),
so no user file can be mistaken for a temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from sagepipe.errors import SyncError

STATE_DIR = ".sagepipe"
TMP_DIR = "sync-tmp"
LOCK_NAME = "sync.lock"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ChangedError(SyncError):
    """The local path is no longer what the plan saw (edited during the sync)."""


def current_umask() -> int:
    """The process umask (read once, before any thread starts)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One sync per folder at a time: ``.sagepipe/sync.lock`` holds the holder's PID.

    The lock is an ``flock``: the kernel releases it when its holder dies, so a killed sync
    leaves no stale lock behind.
    """
    state = folder / STATE_DIR
    if state.is_symlink():
        raise SyncError(
            f"{state} is a symlink; sync keeps its state there and refuses to follow it"
        )
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise SyncError(
                f"another sync (pid {holder}) is using {folder}; run again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Destination:
    """Writes and deletes under ``root`` that never follow a symlink."""

    def __init__(self, root: Path, umask: int) -> None:
        self.root = root
        self.umask = umask
        self._tmp: Path | None = None
        self._count = 0
        self._lock = threading.Lock()  # transfer threads ask for temp paths at once

    def temp_path(self) -> Path:
        """A fresh path in this process's private temporary folder."""
        with self._lock:
            if self._tmp is None:
                base = self.root / STATE_DIR / TMP_DIR
                base.mkdir(parents=True, exist_ok=True)
                _remove_dead_temp_folders(base)
                self._tmp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
            self._count += 1
            return self._tmp / f"f{self._count}"

    def close(self) -> None:
        """Remove this process's temporary folder (never anything else)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                self._tmp.parent.rmdir()  # only when no other sync's folder is left there
            self._tmp = None

    def _parent(self, rel: str, create: bool) -> tuple[int, str]:
        """An fd of ``rel``'s folder (opened without following links) and the last name."""
        parts = rel.rstrip("/").split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # may be a link
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[: i + 1])
                        raise SyncError(
                            f"'{where}' is a symlink or a file, not a folder; not written through"
                        ) from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1]

    def install(
        self,
        tmp: Path,
        rel: str,
        expected: tuple[int, float] | None,
        mtime: float,
        executable: bool | None,
    ) -> os.stat_result:
        """Move the downloaded ``tmp`` to ``rel`` if the local path is still as planned.

        ``expected`` is (size, mtime) of the file the plan saw there, or None for no file.
        A file that appeared or changed since raises ChangedError and is left as it is.
        ``executable`` (the object's recorded mode) or the replaced file's executable bits make
        the file executable; otherwise it gets ``0o666`` less the umask.
        """
        fd, name = self._parent(rel, create=True)
        try:
            try:
                now = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            _check_unchanged(rel, now, expected)
            mode = 0o666
            if executable or (now is not None and now.st_mode & 0o111):
                mode = 0o777
            os.chmod(tmp, mode & ~self.umask)
            os.utime(tmp, (mtime, mtime))
            if now is None:
                try:  # link() never replaces: a file created a moment ago is kept
                    os.link(tmp, name, dst_dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    raise ChangedError(f"{rel}: created locally during the pull; kept") from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    os.replace(tmp, name, dst_dir_fd=fd)
                else:
                    os.unlink(tmp)
            else:
                os.replace(tmp, name, dst_dir_fd=fd)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def mkdir(self, rel: str) -> None:
        """Create the folder ``rel`` (and its parents) without following links."""
        fd, name = self._parent(rel + "/x", create=True)
        os.close(fd)
        del name

    def remove(self, rel: str, expected: tuple[int, float] | None) -> None:
        """Delete the file ``rel`` if still as planned, or the empty folder ``rel/``."""
        fd, name = self._parent(rel, create=False)
        try:
            if rel.endswith("/"):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(name, dir_fd=fd)
                return
            try:
                now = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            _check_unchanged(rel, now, expected)
            os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)


def _check_unchanged(
    rel: str, now: os.stat_result | None, expected: tuple[int, float] | None
) -> None:
    if now is None:
        if expected is not None:
            raise ChangedError(f"{rel}: deleted locally during the sync; kept deleted")
        return
    if expected is None:
        raise ChangedError(f"{rel}: created locally during the pull; kept")
    if not stat.S_ISREG(now.st_mode):
        raise ChangedError(f"{rel}: is no longer a regular file; left as it is")
    if (now.st_size, now.st_mtime) != expected:
        raise ChangedError(f"{rel}: edited locally during the sync; kept")


def _remove_dead_temp_folders(base: Path) -> None:
    """Temporary folders of syncs that were killed (their PID no longer runs)."""
    for entry in base.iterdir():
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or entry.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's
