"""Interpreter discovery on a search path and in pyenv roots, and the nearest choice."""

from __future__ import annotations

from pathlib import Path

from sagepipe.images.interpreters import Interpreter, choose_interpreter, find_interpreters


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_finds_versions_on_the_search_path_and_in_pyenv(tmp_path: Path) -> None:
    _exe(tmp_path / "bin" / "python3.9")
    _exe(tmp_path / "bin" / "python3.12")
    (tmp_path / "bin" / "python3.8").write_text("not executable")
    _exe(tmp_path / "shims" / "python3.7")  # pyenv shims fail for unselected versions
    _exe(tmp_path / "pyenv" / "versions" / "3.10.4" / "bin" / "python3.10")
    _exe(tmp_path / "pyenv" / "versions" / "miniconda3-latest" / "bin" / "python3.11")
    found = find_interpreters(
        search_path=[tmp_path / "bin", tmp_path / "shims"], pyenv_roots=[tmp_path / "pyenv"]
    )
    assert [(i.full, i.origin) for i in found] == [
        ("3.12", "path"),
        ("3.10.4", "pyenv"),
        ("3.9", "path"),
    ]


def test_an_empty_search_finds_nothing() -> None:
    assert find_interpreters(search_path=[], pyenv_roots=[]) == []


def test_links_to_one_interpreter_count_once(tmp_path: Path) -> None:
    real = _exe(tmp_path / "pyenv" / "versions" / "3.9.18" / "bin" / "python3.9")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3.9").symlink_to(real)
    found = find_interpreters(search_path=[tmp_path / "bin"], pyenv_roots=[tmp_path / "pyenv"])
    assert [i.full for i in found] == ["3.9.18"]


def test_choose_exact_then_nearest_newer_first() -> None:
    def interp(minor: int, micro: int = 1) -> Interpreter:
        return Interpreter((3, minor, micro), Path(f"/py3{minor}.{micro}"), "pyenv")

    pythons = [interp(8), interp(10), interp(10, 9), interp(12)]
    assert choose_interpreter("3.10", pythons) == (interp(10, 9), True)
    assert choose_interpreter("3.9", pythons) == (interp(10, 9), False)
    assert choose_interpreter("3.11", pythons) == (interp(12), False)
    assert choose_interpreter("3.6", pythons) == (interp(8), False)
    assert choose_interpreter("3.9", []) == (None, False)
