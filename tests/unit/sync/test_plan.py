"""The pure sync plan: change detection, conflicts, refusals, deletion limits."""

from __future__ import annotations

from sagepipe.sync.manifest import Entry
from sagepipe.sync.plan import (
    CONFLICT,
    DELETE,
    MKDIR,
    REFUSED,
    SKIP,
    TRANSFER,
    UNCHANGED,
    Options,
    make_plan,
    refuse_unsafe,
)
from sagepipe.sync.scan import Filters, LocalFile, RemoteObject


def r(size: int, etag: str, key: str = "k") -> RemoteObject:
    return RemoteObject(size, etag, 100.0, key)


def kinds(plan) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {a.path: a.kind for a in plan.actions}


MD5 = {"same": "aaaa", "new": "bbbb", "edited": "cccc"}


def md5(rel: str) -> str:
    return MD5.get(rel, "ffff")


def etag(rel: str, remote: str) -> str | None:
    return md5(rel)


def test_push_detects_local_changes_and_conflicts() -> None:
    local = {
        "same": LocalFile(1, 10.0),
        "edited": LocalFile(2, 20.0),
        "both": LocalFile(3, 30.0),
        "remote-only-change": LocalFile(4, 40.0),
        "new": LocalFile(5, 50.0),
        "empty/": LocalFile(0, 0, True),
    }
    remote = {
        "same": r(1, "aaaa"),
        "edited": r(2, "old"),
        "both": r(3, "changed-remote"),
        "remote-only-change": r(4, "changed-remote"),
        "gone-locally": r(6, "gggg"),
    }
    manifest = {
        "same": Entry(1, "aaaa", "aaaa", 10.0, 1),
        "edited": Entry(2, "old", "old", 19.0, 1),
        "both": Entry(3, "old", "old", 29.0, 1),
        "remote-only-change": Entry(4, "old", "ffff", 40.0, 1),
        "gone-locally": Entry(6, "gggg", "gggg", 1, 1),
    }
    plan = make_plan("push", local, remote, manifest, Options(), md5, etag)
    assert kinds(plan) == {
        "same": UNCHANGED,
        "edited": TRANSFER,
        "both": CONFLICT,
        "remote-only-change": SKIP,
        "new": TRANSFER,
        "empty/": MKDIR,
    }
    with_delete = make_plan(
        "push", local, remote, manifest, Options(delete=True, max_delete=5), md5, etag
    )
    assert kinds(with_delete)["gone-locally"] == DELETE
    preferred = make_plan("push", local, remote, manifest, Options(prefer="local"), md5, etag)
    assert kinds(preferred)["both"] == TRANSFER


def test_first_sync_compares_content() -> None:
    local = {"same": LocalFile(1, 10.0), "edited": LocalFile(1, 10.0)}
    remote = {"same": r(1, "aaaa"), "edited": r(1, "zzzz")}
    plan = make_plan("pull", local, remote, {}, Options(), md5, etag)
    assert kinds(plan) == {"same": UNCHANGED, "edited": CONFLICT}


def test_deleting_more_than_half_is_refused_by_default() -> None:
    remote = {f"f{i}": r(1, "e") for i in range(4)}
    synced = {f"f{i}": Entry(1, "e", "", 1, 100.0) for i in range(4)}
    plan = make_plan(
        "push", {"f0": LocalFile(1, 1)}, remote, synced, Options(delete=True), md5, lambda *_: "e"
    )
    assert [a.kind for a in plan.actions if a.path != "f0"] == [REFUSED] * 3
    assert "more than half" in plan.of(REFUSED)[0].reason
    allowed = make_plan(
        "push",
        {"f0": LocalFile(1, 1)},
        remote,
        synced,
        Options(delete=True, max_delete=3),
        md5,
        lambda *_: "e",
    )
    assert len(allowed.of(DELETE)) == 3


def test_hostile_keys_are_refused() -> None:
    keys = ["../x", "/etc/x", "a\\..\\b", "a", "a/b", "A.txt", "a.txt", "ok/file", "C:x", "nul\x00"]
    refused = refuse_unsafe({k: r(1, "e", k) for k in keys})
    assert set(refused) == {
        "../x",
        "/etc/x",
        "a\\..\\b",
        "a",
        "a/b",
        "A.txt",
        "a.txt",
        "C:x",
        "nul\x00",
    }
    assert "a file (bucket) and a folder" in refused["a"]
    assert "case-only" in refused["A.txt"]


def test_filters_default_excludes_and_globs() -> None:
    f = Filters.build([], ["*.log"], None)
    assert not f.wanted(".env")
    assert not f.wanted(".git/config")
    assert not f.wanted("pkg/__pycache__/m.pyc")
    assert not f.wanted("x.pyc")
    assert not f.wanted("run.log")
    assert f.wanted("src/app.py")
    only = Filters.build(["src/*"], [], None)
    assert only.wanted("src/a.py") and not only.wanted("README.md")


def test_delete_only_what_the_manifest_shows_was_synced() -> None:
    remote = {"synced": r(1, "e"), "colleague": r(1, "e")}
    manifest = {"synced": Entry(1, "e", "", 1, 100.0)}
    plan = make_plan(
        "push",
        {"keep": LocalFile(1, 1)},
        remote,
        manifest,
        Options(delete=True, max_delete=9),
        md5,
        lambda *_: "e",
    )
    assert kinds(plan)["synced"] == DELETE
    assert kinds(plan)["colleague"] == SKIP
    mirror = make_plan(
        "push",
        {"keep": LocalFile(1, 1)},
        remote,
        manifest,
        Options(mirror=True, max_delete=9),
        md5,
        lambda *_: "e",
    )
    assert kinds(mirror)["colleague"] == DELETE


def test_file_replaced_by_a_folder_is_refused_before_anything_moves() -> None:
    local = {"a/x": LocalFile(1, 5), "b": LocalFile(1, 5)}
    remote = {"a": r(1, "e", "p/a")}
    plan = make_plan("push", local, remote, {}, Options(), md5, lambda *_: "e")
    assert kinds(plan)["a"] == REFUSED and kinds(plan)["a/x"] == REFUSED
    assert kinds(plan)["b"] == TRANSFER
    pulled = make_plan("pull", local, remote, {}, Options(), md5, lambda *_: "e")
    assert kinds(pulled)["a"] == REFUSED


def test_push_refuses_names_pull_would_refuse() -> None:
    local = {n: LocalFile(1, 5) for n in ("line\nbreak", "a:b.txt", "back\\slash", "ok.txt")}
    local["new\nline"] = LocalFile(1, 5)
    plan = make_plan("push", local, {}, {}, Options(), md5, lambda *_: "e")
    assert {a.path for a in plan.of(REFUSED)} == set(local) - {"ok.txt"}


def test_default_excludes_keep_credentials_out() -> None:
    f = Filters.build([], [], None)
    for name in (
        ".env.local",
        ".envrc",
        "id_rsa",
        "id_ed25519.pub",
        "k/server.pem",
        "tls.key",
        ".aws/credentials",
        ".ssh/config",
        ".netrc",
        "x/.git-credentials",
    ):
        assert not f.wanted(name), name
    assert f.wanted("src/keyboard.py")
