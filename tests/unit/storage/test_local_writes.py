"""Local writes go through one temp-file-then-rename helper: all of a file, or none of it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from sagepipe.storage.base import md5_chunks, md5_stream
from sagepipe.storage.local import TMP_PREFIX, atomic_copy, atomic_write, replaced_on_success


def test_the_file_appears_whole_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    with replaced_on_success(target) as fd:
        os.write(fd, b"hello")
        assert not target.exists()
    assert target.read_bytes() == b"hello"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_nothing_is_left_when_the_block_raises(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replaced_on_success(target) as fd:
        os.write(fd, b"new, half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


def test_write_and_copy_replace_the_destination(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "out" / "dest"
    atomic_write(src, b"x" * 3_000_000)
    assert atomic_copy(src, dest) == md5_stream(io.BytesIO(b"x" * 3_000_000))
    assert dest.read_bytes() == src.read_bytes()


def test_md5_of_chunks_feeds_the_sink() -> None:
    seen: list[bytes] = []
    assert md5_chunks([b"ab", b"c"], seen.append) == md5_stream(io.BytesIO(b"abc"))
    assert seen == [b"ab", b"c"]
