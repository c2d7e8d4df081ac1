"""The joined-expression matcher decides exactly as pathspec's GitIgnoreSpec does."""

from __future__ import annotations

import itertools

import pathspec
import pytest

from sagepipe.sync.scan import DEFAULT_EXCLUDES, Filters, _matcher

PATTERN_SETS = [
    list(DEFAULT_EXCLUDES),
    [*DEFAULT_EXCLUDES, "*.log", "/build/", "data/**/raw", "a?c.txt", "[ab]*.csv", "docs/*.md"],
    [*DEFAULT_EXCLUDES, "*.log", "!keep.log"],  # a re-include: pathspec decides
    ["# a comment", "", "tmp/"],
    [],
]
NAMES = [
    ".env",
    ".env.local",
    "id_rsa",
    "id_rsa.pub",
    "x.pem",
    "x.PEM",
    "keep.log",
    "a.log",
    "abc.txt",
    "a.csv",
    "c.csv",
    "raw",
    "README.md",
    ".git",
    "__pycache__",
    "m.pyc",
    "ok.py",
    ".sagepipe-tmp-1",
    "config.json",
    "credentials.json",
    "service-account-1.json",
]
FOLDERS = [
    "",
    "build/",
    "src/build/",
    "data/",
    "data/x/y/",
    "docs/",
    "docs/sub/",
    ".git/",
    "a/.venv/",
    ".docker/",
    "tmp/",
    "deep/tmp/",
]


@pytest.mark.parametrize("lines", PATTERN_SETS)
def test_the_fast_matcher_agrees_with_pathspec(lines: list[str]) -> None:
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    fast = _matcher(lines)
    paths = [f + n for f, n in itertools.product(FOLDERS, NAMES)]
    paths += [f for f in FOLDERS if f] + [f + n + "/" for f, n in itertools.product(FOLDERS, NAMES)]
    disagree = [p for p in paths if fast(p) != spec.match_file(p)]
    assert disagree == []


def test_filters_keep_and_drop_as_before() -> None:
    f = Filters.build([], ["*.log", "!keep.log"], None)
    assert not f.wanted(".env.local") and not f.wanted("a/b/server.pem")
    assert not f.wanted("x.log") and f.wanted("keep.log") and f.wanted("src/app.py")
    g = Filters.build(["*.py"], [], None)
    assert g.wanted("src/app.py") and not g.wanted("README.md") and not g.wanted(".git/x.py")
