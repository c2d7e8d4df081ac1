"""Bucket sync never loses an edit: races, links, deletions, names, modes (issue 13).

Each case runs on SeaweedFS and on the local store. CI runs as root; the last test runs this
module again as an ordinary user (uid 1000, ``setpriv``) against the same SeaweedFS server.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.storage import LocalStore, ObjectStore, put_missing
from sagepipe.storage.s3 import PART_SIZE, S3Store
from sagepipe.sync.plan import Options, Plan
from sagepipe.sync.scan import Filters
from sagepipe.sync.transfer import SyncReport, sync
from tests.servers import SEAWEED_ENDPOINT_VAR
from tests.unprivileged import rerun_as_ordinary_user

UNPRIVILEGED_UID = 1000
ENDPOINT_VAR = SEAWEED_ENDPOINT_VAR
_N = iter(range(100_000))

Target = tuple[ObjectStore, str, dict[str, str]]


def s3_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """SeaweedFS's variables: the parent run's server when rerun as another user."""
    endpoint = os.environ.get(ENDPOINT_VAR)
    if endpoint:
        from tests.servers import ACCESS_KEY, SECRET_KEY

        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_REGION": "us-east-1",
        }
    env: dict[str, str] = request.getfixturevalue("seaweed").env()
    return env


@pytest.fixture(params=["s3", "local"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    bucket = f"race-{os.getuid()}-{next(_N)}"
    if request.param == "s3":
        env = s3_env(request)
        store: ObjectStore = S3Store.from_settings(Settings.from_env(cwd=tmp_path, environ=env))
    else:
        env = {"SAGEPIPE_HOME": str(tmp_path / "home"), "SAGEPIPE_STORE": "local"}
        store = LocalStore(tmp_path / "home" / "s3")
    store.ensure_bucket(bucket)
    yield store, bucket, env


def push(t: Target, folder: Path, **kw: object) -> SyncReport:
    return sync(t[0], t[1], "p", folder, "push", Options(**kw), Filters.build([], [], folder))  # type: ignore[arg-type]


def pull(t: Target, folder: Path, **kw: object) -> SyncReport:
    on_plan = kw.pop("on_plan", None)
    return sync(
        t[0],
        t[1],
        "p",
        folder,
        "pull",
        Options(**kw),
        Filters.build([], [], None),
        on_plan=on_plan,  # type: ignore[arg-type]
    )


def folder_with(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def remote(t: Target, rel: str) -> bytes | None:
    uri = f"s3://{t[1]}/p/{rel}"
    return t[0].get(uri) if t[0].head(uri) is not None else None


def test_two_pushes_of_one_file_at_once_one_wins_one_conflicts(
    target: Target, tmp_path: Path
) -> None:
    alice = folder_with(tmp_path / "alice", {"f.txt": "v1"})
    assert push(target, alice).ok
    bob = tmp_path / "bob"
    assert pull(target, bob).ok
    (alice / "f.txt").write_text("alice's edit")
    (alice / "new.txt").write_text("alice's new file")
    (bob / "f.txt").write_text("bob's edit!!")
    (bob / "new.txt").write_text("bob's new file!")

    def bob_pushes_in_between(plan: Plan) -> None:  # after alice planned, before she uploads
        assert push(target, bob).ok

    report = sync(
        target[0], target[1], "p", alice, "push", Options(), Filters(),
        on_plan=bob_pushes_in_between,
    )  # fmt: skip
    assert not report.ok
    assert sorted(p for p, _ in report.conflicts) == ["f.txt", "new.txt"]
    assert remote(target, "f.txt") == b"bob's edit!!"
    assert remote(target, "new.txt") == b"bob's new file!"
    assert (alice / "f.txt").read_text() == "alice's edit"
    again = pull(target, alice)  # the loser's next pull keeps her edit: a conflict
    assert {a.path for a in again.plan.of("conflict")} == {"f.txt", "new.txt"}
    assert (alice / "f.txt").read_text() == "alice's edit"


def test_an_object_changed_into_the_very_file_being_pushed_is_no_conflict(
    target: Target, tmp_path: Path
) -> None:
    """What a killed push leaves behind: its last upload lands after the next push listed
    the bucket. The same bytes are no conflict; other bytes still are."""
    big = "x" * (PART_SIZE + 1000)  # a multipart object too: its ETag is compared as such
    assert push(target, folder_with(tmp_path / "was", {"other.txt": "v1"})).ok
    alice = tmp_path / "alice"
    assert pull(target, alice).ok
    folder_with(alice, {"same.txt": "v2", "other.txt": "v2", "big": big})

    def earlier_push_lands(plan: Plan) -> None:  # after alice listed, before she uploads
        assert push(target, folder_with(tmp_path / "killed", {"same.txt": "v2", "big": big})).ok
        target[0].put(f"s3://{target[1]}/p/other.txt", b"someone else's")

    report = sync(
        target[0], target[1], "p", alice, "push", Options(), Filters(),
        on_plan=earlier_push_lands,
    )  # fmt: skip
    assert [p for p, _ in report.conflicts] == ["other.txt"]
    assert remote(target, "other.txt") == b"someone else's"
    assert remote(target, "same.txt") == b"v2" and remote(target, "big") == big.encode()
    again = push(target, alice)  # same.txt and big were recorded as in sync
    assert again.plan.of("transfer") == [] and {a.path for a in again.plan.of("conflict")} == {
        "other.txt"
    }


def test_two_push_processes_at_once(target: Target, tmp_path: Path) -> None:
    _, bucket, env = target
    base = folder_with(tmp_path / "base", {"f.txt": "v1"})
    assert push(target, base).ok
    folders = []
    for who in ("a", "b"):
        f = tmp_path / who
        assert pull(target, f).ok
        folders.append(f)
    for trial in range(3):
        for f in folders:
            (f / "f.txt").write_text(f"{f.name} {trial}")
        procs = [
            cli(env, tmp_path, "push", str(f), "--prefix", "p", "--bucket", bucket) for f in folders
        ]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        codes = [p.returncode for p in procs]
        assert sorted(codes) == [0, 1], outs
        winner = folders[codes.index(0)]
        loser = folders[codes.index(1)]
        assert remote(target, "f.txt") == (winner / "f.txt").read_bytes()
        assert (loser / "f.txt").read_text() == f"{loser.name} {trial}"
        assert "conflict" in outs[codes.index(1)]
        # the loser takes the winner's version; both folders agree again
        done = cli(
            env,
            tmp_path,
            "pull",
            "p",
            "--dest",
            str(loser),
            "--bucket",
            bucket,
            "--prefer",
            "remote",
        )
        out = done.communicate(timeout=60)[0]
        assert done.returncode == 0, out


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    code = "import sys; from sagepipe.cli.main import run_cli; sys.exit(run_cli(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "bucket", *args],
        cwd=cwd,
        env={**clean, **env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_symlinked_folder_in_the_destination_is_never_written_through(
    target: Target, tmp_path: Path
) -> None:
    src = folder_with(tmp_path / "src", {"sub/x.txt": "payload", "ok.txt": "ok"})
    assert push(target, src).ok
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    for _ in range(2):
        report = pull(target, dest)
        assert not report.ok
        assert list(outside.iterdir()) == []
        assert (dest / "ok.txt").read_text() == "ok"


def test_delete_removes_only_what_was_synced(target: Target, tmp_path: Path) -> None:
    mine = folder_with(tmp_path / "mine", {"a.txt": "a", "b.txt": "b", "c.txt": "c", "d.txt": "d"})
    assert push(target, mine).ok
    target[0].put(f"s3://{target[1]}/p/colleague.txt", b"new from a colleague")
    (mine / "a.txt").unlink()
    report = push(target, mine, delete=True)
    assert report.deleted == 1 and remote(target, "a.txt") is None
    assert remote(target, "colleague.txt") == b"new from a colleague"
    clone = tmp_path / "clone"
    assert pull(target, clone).ok
    (clone / "never-synced.txt").write_text("my new local file")
    target[0].delete(f"s3://{target[1]}/p/b.txt")
    report = pull(target, clone, delete=True)
    assert report.deleted == 1 and not (clone / "b.txt").exists()
    assert (clone / "never-synced.txt").read_text() == "my new local file"
    mirrored = pull(target, clone, mirror=True)
    assert mirrored.deleted == 1 and not (clone / "never-synced.txt").exists()


def test_an_edit_during_a_pull_is_kept_as_a_conflict(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"f.txt": "v1"})
    assert push(target, src).ok
    dest = tmp_path / "dest"
    assert pull(target, dest).ok
    (src / "f.txt").write_text("v2 from the bucket")
    (src / "n.txt").write_text("new in the bucket")
    assert push(target, src).ok

    def edit_now(plan: Plan) -> None:  # the user saves while the pull is under way
        assert {a.path for a in plan.of("transfer")} == {"f.txt", "n.txt"}
        (dest / "f.txt").write_text("my local edit, longer")
        (dest / "n.txt").write_text("my own n.txt")

    report = pull(target, dest, on_plan=edit_now)
    assert sorted(p for p, _ in report.conflicts) == ["f.txt", "n.txt"] and not report.ok
    assert (dest / "f.txt").read_text() == "my local edit, longer"
    assert (dest / "n.txt").read_text() == "my own n.txt"
    assert not list((dest / ".sagepipe").glob("sync-tmp/*"))


def test_a_same_size_remote_edit_is_seen(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"f.txt": "aaaa"})
    assert push(target, src).ok
    dest = tmp_path / "dest"
    assert pull(target, dest).ok
    store, bucket, _ = target
    where = store.local_path(f"s3://{bucket}/p/f.txt")
    if isinstance(store, LocalStore) and where is not None:
        before = where.stat()
        where.write_text("bbbb")  # same size, same mtime: only the content differs
        os.utime(where, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        store.put(f"s3://{bucket}/p/f.txt", b"bbbb")
    assert pull(target, dest).sent_files == 1
    assert (dest / "f.txt").read_text() == "bbbb"
    (src / "f.txt").write_text("cccc")
    report = push(target, src)  # src never saw bbbb: a conflict, not an overwrite
    assert [a.path for a in report.plan.of("conflict")] == ["f.txt"]
    assert remote(target, "f.txt") == b"bbbb"


def test_identical_content_resolves_and_one_sync_per_folder(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"f.txt": "same"})
    assert push(target, src).ok
    target[0].put(f"s3://{target[1]}/p/f.txt", b"both")
    (src / "f.txt").write_text("both")  # changed on both sides to the same content
    report = push(target, src)
    assert report.ok and not report.plan.of("conflict")
    assert push(target, src).ok

    def pull_meanwhile(plan: Plan) -> None:
        from sagepipe.errors import SyncError

        with pytest.raises(SyncError, match=r"another sync \(pid \d+\)"):
            pull(target, src)

    assert sync(
        target[0], target[1], "p", src, "push", Options(), Filters(), on_plan=pull_meanwhile
    ).ok
    assert pull(target, src).ok  # the lock went with the sync


def test_a_file_replaced_by_a_folder_is_a_clear_refusal(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"a": "a file", "b.txt": "b"})
    assert push(target, src).ok
    (src / "a").unlink()
    folder_with(src, {"a/inner.txt": "now a folder"})
    (src / "b.txt").write_text("b2")
    report = push(target, src)
    refused = {a.path: a.reason for a in report.plan.of("refused")}
    assert set(refused) == {"a", "a/inner.txt"} and "a file (bucket) and a folder" in refused["a"]
    assert remote(target, "a/inner.txt") is None and remote(target, "a") == b"a file"
    assert remote(target, "b.txt") == b"b2"


def test_names_the_other_side_cannot_hold_are_refused_up_front(
    target: Target, tmp_path: Path
) -> None:
    src = folder_with(tmp_path / "src", {"ok.txt": "ok", "a:b.txt": "x", "back\\slash": "x"})
    (src / "new\nline").write_text("x")
    fd = os.open(os.fsencode(src) + b"/caf\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    _, bucket, env = target
    proc = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "internal" not in out.lower()
    assert "caf\\\\xe9.txt" in out and "not UTF-8" in out  # repr of the escaped name
    assert remote(target, "ok.txt") == b"ok"
    keys = {i.key for i in target[0].list(f"s3://{bucket}/p/")}
    assert keys == {"p/ok.txt"}
    again = cli(env, tmp_path, "push", str(src), "--prefix", "p", "--bucket", bucket)
    assert "sent 0 files" in again.communicate(timeout=60)[0]


def test_pull_keeps_user_temp_like_files_and_modes(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"run.sh": "#!/bin/sh\necho 1\n", "data.txt": "d"})
    assert push(target, src).ok
    dest = tmp_path / "dest"
    old = os.umask(0o002)
    try:
        assert pull(target, dest).ok
        user = folder_with(dest, {"sub/.sagepipe-tmp-mine": "my file", ".sagepipe-tmp-x": "mine"})
        (dest / "run.sh").chmod(0o775)
        (src / "run.sh").write_text("#!/bin/sh\necho 2\n")
        assert push(target, src).ok
        assert pull(target, dest).sent_files == 1
    finally:
        os.umask(old)
    assert stat.S_IMODE((dest / "data.txt").stat().st_mode) == 0o664
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o775
    assert (dest / "run.sh").read_text().endswith("echo 2\n")
    assert (user / "sub" / ".sagepipe-tmp-mine").read_text() == "my file"
    assert (user / ".sagepipe-tmp-x").read_text() == "mine"
    (src / "tool.sh").write_text("#!/bin/sh\n")
    (src / "tool.sh").chmod(0o755)  # a new executable: its mode travels as object metadata
    assert push(target, src).ok
    assert pull(target, dest).ok
    assert (dest / "tool.sh").stat().st_mode & 0o111
    big = src / "tool.bin"  # a multipart object: its mode comes with the first part
    big.write_bytes(b"\x7fELF" + bytes(PART_SIZE))
    big.chmod(0o755)
    assert push(target, src).ok
    assert pull(target, dest).ok
    assert (dest / "tool.bin").stat().st_mode & 0o111


def test_credentials_stay_local(target: Target, tmp_path: Path) -> None:
    names = [
        ".env",
        ".env.local",
        "id_rsa",
        "id_ed25519",
        "certs/server.pem",
        "tls.key",
        ".aws/credentials",
    ]
    src = folder_with(tmp_path / "src", {n: "secret" for n in names} | {"app.py": "x"})
    assert push(target, src).ok
    assert {i.key for i in target[0].list(f"s3://{target[1]}/p/")} == {"p/app.py"}


class _Blob:
    def __init__(self, uri: str, data: bytes) -> None:
        self.uri, self.data = uri, data

    def read(self) -> bytes:
        return self.data


def test_a_tampered_content_addressed_object_is_uploaded_again(target: Target) -> None:
    store, bucket, _ = target
    uri = f"s3://{bucket}/app/pipe/code/abc/train.py"
    blob = _Blob(uri, b"print('train')\n")
    assert put_missing(store, [blob])[0] == [uri]
    assert put_missing(store, [blob])[0] == []
    store.put(uri, b"print('tampered')\n")
    assert put_missing(store, [blob])[0] == [uri]
    assert store.get(uri) == b"print('train')\n"


def test_a_fifo_is_skipped_not_read(target: Target, tmp_path: Path) -> None:
    src = folder_with(tmp_path / "src", {"ok.txt": "ok"})
    os.mkfifo(src / "pipe")
    report = push(target, src)
    assert ("pipe", "not a regular file (FIFO, socket or device)") in report.skipped_local
    assert remote(target, "ok.txt") == b"ok" and remote(target, "pipe") is None


def test_the_same_holds_for_an_ordinary_user(request: pytest.FixtureRequest) -> None:
    """Run this module again as uid 1000 against this run's SeaweedFS."""
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user")
    files = [__file__, str(Path(__file__).with_name("test_sync_kills.py"))]
    endpoint = s3_env(request)["AWS_ENDPOINT_URL_S3"]
    rerun_as_ordinary_user(files, {ENDPOINT_VAR: endpoint}, timeout=400)
