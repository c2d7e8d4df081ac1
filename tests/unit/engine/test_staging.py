"""Publishing rules: regular files only, never followed links; the failure file read safely."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sagepipe.engine.staging import (
    FAILURE_REASON_MAX,
    OutputBudget,
    output_files,
    publish_output,
    read_failure_file,
    stage_input,
)
from sagepipe.errors import ExecutionError
from sagepipe.storage import LocalStore


def test_regular_files_and_empty_folders_are_listed(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "y.txt").write_text("yy")
    files, empty = output_files(tmp_path, "/opt/ml/o")
    assert [(f.rel, f.size) for f in files] == [("a/x.txt", 1), ("y.txt", 2)]
    assert empty == ["a/b"]


@pytest.mark.parametrize("kind", ["symbolic link", "FIFO", "socket"])
def test_anything_but_a_regular_file_is_refused_by_name(tmp_path: Path, kind: str) -> None:
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "bad"
    if kind == "symbolic link":
        target.symlink_to("/etc/passwd")
    elif kind == "FIFO":
        os.mkfifo(target)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
        sock.close()
    with pytest.raises(ExecutionError, match=f"output /opt/ml/o/sub/bad is a {kind}"):
        output_files(tmp_path, "/opt/ml/o")


def test_a_linked_folder_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(ExecutionError, match="/opt/ml/o/etc is a symbolic link"):
        output_files(tmp_path, "/opt/ml/o")


def test_outputs_are_copied_not_moved(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "out"
    src.mkdir()
    (src / "f.txt").write_text("data")
    publish_output(store, src, "s3://bkt/out", "/opt/ml/o")
    assert store.get("s3://bkt/out/f.txt") == b"data"
    stored = store.local_path("s3://bkt/out/f.txt")
    assert stored is not None
    assert (src / "f.txt").exists() and os.stat(stored).st_ino != os.stat(src / "f.txt").st_ino


def test_the_output_budget_caps_the_total(tmp_path: Path) -> None:
    budget = OutputBudget(limit=10)
    budget.take(6, "a", None)
    with pytest.raises(ExecutionError, match="output b"):
        budget.take(6, "b", None)


def test_inputs_are_private_copies(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("s3://bkt/in/x.csv", b"1,2\n")
    dest = tmp_path / "ws"
    assert stage_input(store, "s3://bkt/in", dest) == 1
    (dest / "x.csv").write_text("changed")
    assert store.get("s3://bkt/in/x.csv") == b"1,2\n"


def test_the_failure_file_is_capped_and_never_followed(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    failure.write_text("x" * 5000)
    assert read_failure_file(failure) == "x" * FAILURE_REASON_MAX
    failure.unlink()
    secret = tmp_path / "secret"
    secret.write_text("secret")
    failure.symlink_to(secret)
    assert read_failure_file(failure) is None
    failure.unlink()
    os.mkfifo(failure)
    assert read_failure_file(failure) is None  # opened without blocking, then refused
    assert read_failure_file(tmp_path / "missing") is None
