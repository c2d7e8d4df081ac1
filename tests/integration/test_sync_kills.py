"""A push or pull killed (SIGKILL) at any phase: the next run recovers, nothing lost or stuck.

Phases: at start (scan and plan), mid-transfer (some entries journaled), and while a large
download sits in the private temporary folder. Runs on SeaweedFS and on the local store, and
again as uid 1000 from test_sync_races.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration import test_sync_races as races
from tests.integration.test_sync_races import Target, cli

target = races.target  # the same stores: SeaweedFS and the local store

JOURNAL = ".sagepipe/sync-journal.jsonl"


def make_source(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(120):
        (root / f"d{i % 7}").mkdir(exist_ok=True)
        (root / f"d{i % 7}" / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    (root / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    return root


def digest_tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d != ".sagepipe"]
        for f in files:
            if f.startswith(".sagepipe"):
                continue
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def wait_then_kill(proc: object, ready: Callable[[], bool], limit: float = 60) -> None:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def phases(folder: Path) -> dict[str, Callable[[], bool]]:
    journal = folder / JOURNAL
    tmp = folder / ".sagepipe" / "sync-tmp"

    def journaled() -> bool:
        return journal.is_file() and journal.stat().st_size > 0

    def downloading() -> bool:
        return any(p.is_file() and p.stat().st_size > 0 for p in tmp.rglob("*"))

    return {"start": lambda: True, "mid-transfer": journaled, "downloading": downloading}


@pytest.mark.parametrize("phase", ["start", "mid-transfer", "downloading"])
def test_killed_push_then_pull_recover(target: Target, tmp_path: Path, phase: str) -> None:
    _, bucket, env = target
    src = make_source(tmp_path / "src")
    if phase != "downloading":  # a push has no download phase
        proc = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
        wait_then_kill(proc, phases(src)[phase])
    again = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
    out = again.communicate(timeout=120)[0]
    assert again.returncode == 0 and " 0 conflicts" in out, out
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("a local file the pull must keep")
    proc = cli(env, tmp_path, "pull", "p", "--dest", str(dest), "--bucket", bucket)
    wait_then_kill(proc, phases(dest)[phase])
    done = cli(env, tmp_path, "pull", "p", "--dest", str(dest), "--bucket", bucket)
    out = done.communicate(timeout=120)[0]
    assert done.returncode == 0 and " 0 conflicts" in out, out
    expected = digest_tree(src)
    expected["mine.txt"] = hashlib.sha256(b"a local file the pull must keep").hexdigest()
    assert digest_tree(dest) == expected
    assert not list((dest / ".sagepipe" / "sync-tmp").glob("*"))
    assert not (dest / JOURNAL).exists()
    for folder, sent in ((dest, "sent 1 files"), (src, "sent 0 files")):  # nothing stuck
        check = cli(env, tmp_path, "push", str(folder), "--prefix", "p", "--bucket", bucket)
        out = check.communicate(timeout=120)[0]
        assert check.returncode == 0 and sent in out and " 0 conflicts" in out, out


def test_pull_and_push_of_one_folder_at_once(target: Target, tmp_path: Path) -> None:
    """Two real processes on one folder: one runs, the other says so; no edit is lost."""
    _, bucket, env = target
    src = make_source(tmp_path / "src")
    first = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
    assert first.communicate(timeout=120)[0] and first.returncode == 0
    (src / "d0" / "f0.txt").write_text("edited before the race\n")
    procs = [
        cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket),
        cli(env, tmp_path, "pull", "p", "--dest", str(src), "--bucket", bucket),
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0 or "another sync" in out, out
    assert (src / "d0" / "f0.txt").read_text() == "edited before the race\n"
    settle = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
    out = settle.communicate(timeout=120)[0]
    assert settle.returncode == 0 and " 0 conflicts" in out, out
