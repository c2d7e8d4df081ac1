"""``.sagepipeignore`` and --include/--exclude follow gitignore, as users expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagepipe.errors import SyncError
from sagepipe.sync.scan import Filters, scan_local

IGNORE = """
# comments and blank lines are skipped

*.csv
!keep.csv
/build
logs/**/*.tmp
cache/
"""


def _tree(root: Path, paths: list[str]) -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def test_sagepipeignore_is_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".sagepipeignore").write_text(IGNORE)
    _tree(
        tmp_path,
        [
            "a.csv",
            "data/b.csv",
            "keep.csv",
            "data/keep.csv",
            "build/out.bin",
            "src/build/kept.py",
            "logs/x.tmp",
            "logs/a/b/y.tmp",
            "logs/a/y.log",
            "other/logs/z.tmp",
            "cache/c.txt",
            "src/cache/d.txt",
            "main.py",
        ],
    )
    scanned = scan_local(tmp_path, Filters.build([], [], tmp_path))
    assert sorted(scanned.files) == [
        ".sagepipeignore",
        "data/keep.csv",
        "keep.csv",
        "logs/a/y.log",
        "main.py",
        "other/logs/z.tmp",
        "src/build/kept.py",
    ]


def test_defaults_and_command_line_patterns(tmp_path: Path) -> None:
    filters = Filters.build(["*.py"], ["tests/"], None)
    assert not filters.wanted(".git/config")
    assert not filters.wanted("pkg/__pycache__/m.pyc")
    assert not filters.wanted(".env")
    assert not filters.wanted("tests/test_a.py")
    assert filters.wanted("src/a.py")
    assert not filters.wanted("src/a.txt")  # --include keeps only matching files
    assert filters.wanted("src/")  # folders are walked to find them


def test_a_later_negation_cannot_reach_into_an_excluded_folder(tmp_path: Path) -> None:
    filters = Filters.build([], ["build/", "!build/keep.txt"], None)
    assert not filters.wanted("build/keep.txt")  # as in git


def test_an_unreadable_ignore_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / ".sagepipeignore").write_bytes(b"\xff\xfe")
    with pytest.raises(SyncError, match="cannot read"):
        Filters.build([], [], tmp_path)
