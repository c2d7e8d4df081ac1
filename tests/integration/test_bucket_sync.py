"""Bucket tooling against a real S3 server (SeaweedFS), a hostile bucket (moto keeps any key),
and the local store: round trips, conflicts, refusals, interrupted pulls, the seed wrappers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from sagepipe.cli.main import run_cli
from sagepipe.config import Settings
from sagepipe.storage import LocalStore, ObjectStore
from sagepipe.storage.s3 import S3Store
from sagepipe.sync.plan import Options
from sagepipe.sync.scan import Filters
from sagepipe.sync.transfer import sync
from tests.conftest import ROOT
from tests.servers import MotoServer, SeaweedFS

_N = iter(range(100_000))


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (folders as 'dir'), ignoring sync bookkeeping."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirs[:] = [d for d in dirs if d != ".sagepipe"]
        if rel != "." and not dirs and not files:
            out[rel + "/"] = "dir"
        for f in files:
            if f.startswith(".sagepipe"):
                continue
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_app(root: Path) -> Path:
    app = root / "app"
    (app / "src").mkdir(parents=True)
    (app / "sagemaker_pipeline.py").write_text("print('pipeline')\n")
    (app / "src" / "train.py").write_text("print('train')\n")
    (app / "src" / "big.bin").write_bytes(os.urandom(40 * 1024 * 1024))  # multipart (> 16 MiB)
    (app / "empty_dir").mkdir()
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (app / ".env").write_text("AWS_SECRET_ACCESS_KEY=do-not-upload\n")
    return app


@pytest.fixture(params=["s3", "local"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ObjectStore, str, dict[str, str]]]:
    bucket = f"sync-{next(_N)}"
    if request.param == "s3":
        seaweed: SeaweedFS = request.getfixturevalue("seaweed")
        env = seaweed.env()
        store: ObjectStore = S3Store.from_settings(Settings.from_env(cwd=tmp_path, environ=env))
    else:
        env = {"SAGEPIPE_HOME": str(tmp_path / "home")}
        store = LocalStore(tmp_path / "home" / "s3")
    store.ensure_bucket(bucket)
    yield store, bucket, env


def test_round_trip_then_noop(
    target: tuple[ObjectStore, str, dict[str, str]], tmp_path: Path
) -> None:
    store, bucket, _ = target
    app = make_app(tmp_path / "src")
    report = sync(store, bucket, "app", app, "push", Options(), Filters.build([], [], app))
    assert report.ok, report.errors
    keys = {i.key for i in store.list(f"s3://{bucket}/app/")}
    assert "app/empty_dir/" in keys and "app/src/big.bin" in keys
    assert not any(".env" in k or "__pycache__" in k for k in keys)
    again = sync(store, bucket, "app", app, "push", Options(), Filters.build([], [], app))
    assert again.sent_files == 0 and again.ok
    big = app / "src" / "big.bin"
    os.utime(big, (big.stat().st_atime, big.stat().st_mtime + 60))  # touched, not changed
    touched = sync(store, bucket, "app", app, "push", Options(), Filters.build([], [], app))
    assert touched.sent_files == 0 and touched.ok
    dest = tmp_path / "clone"
    pulled = sync(store, bucket, "app", dest, "pull", Options(), Filters.build([], [], None))
    assert pulled.ok, pulled.errors
    expected = {k: v for k, v in tree(app).items() if not k.startswith(("__pycache__", ".env"))}
    assert tree(dest) == expected
    remote_mtime = {i.key: i.last_modified for i in store.list(f"s3://{bucket}/app/src/train.py")}
    assert abs((dest / "src" / "train.py").stat().st_mtime - remote_mtime["app/src/train.py"]) < 1
    assert (
        sync(store, bucket, "app", dest, "pull", Options(), Filters.build([], [], None)).sent_files
        == 0
    )


def test_changes_on_both_sides_are_conflicts(
    target: tuple[ObjectStore, str, dict[str, str]], tmp_path: Path
) -> None:
    store, bucket, _ = target
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "a.txt").write_text("v1")
    (folder / "b.txt").write_text("v1")
    sync(store, bucket, "p", folder, "push", Options(), Filters())
    (folder / "a.txt").write_text("local edit")
    store.put(f"s3://{bucket}/p/a.txt", b"remote edit")
    (folder / "b.txt").write_text("only local edit")
    report = sync(store, bucket, "p", folder, "push", Options(), Filters())
    assert [a.path for a in report.plan.of("conflict")] == ["a.txt"]
    assert not report.ok
    assert store.get(f"s3://{bucket}/p/a.txt") == b"remote edit"
    assert (folder / "a.txt").read_text() == "local edit"
    assert store.get(f"s3://{bucket}/p/b.txt") == b"only local edit"
    resolved = sync(store, bucket, "p", folder, "push", Options(prefer="local"), Filters())
    assert resolved.ok and store.get(f"s3://{bucket}/p/a.txt") == b"local edit"


def test_delete_and_dry_run(
    target: tuple[ObjectStore, str, dict[str, str]], tmp_path: Path
) -> None:
    store, bucket, _ = target
    folder = tmp_path / "w"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}").write_text(str(i))
    sync(store, bucket, "d", folder, "push", Options(), Filters())
    (folder / "f0").unlink()
    dry = sync(store, bucket, "d", folder, "push", Options(delete=True), Filters(), dry_run=True)
    assert [a.path for a in dry.plan.of("delete")] == ["f0"]
    assert store.head(f"s3://{bucket}/d/f0") is not None
    done = sync(store, bucket, "d", folder, "push", Options(delete=True), Filters())
    assert done.deleted == 1 and store.head(f"s3://{bucket}/d/f0") is None
    for i in range(1, 4):
        (folder / f"f{i}").unlink()
    refused = sync(store, bucket, "d", folder, "push", Options(delete=True), Filters())
    assert len(refused.plan.of("refused")) == 3 and not refused.ok
    assert store.head(f"s3://{bucket}/d/f1") is not None


def test_hostile_bucket_writes_nothing_outside(moto_server: MotoServer, tmp_path: Path) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(request_checksum_calculation="when_required"),
    )
    client.create_bucket(Bucket="hostile")
    keys = ["../x", "/etc/x", "a\\..\\b", "a", "a/b", "A.txt", "a.txt", "fine/ok.txt"]
    for key in keys:
        client.put_object(Bucket="hostile", Key=key, Body=b"payload " + key.encode())
    listed = {o["Key"] for o in client.list_objects_v2(Bucket="hostile")["Contents"]}
    store = S3Store.from_settings(Settings.from_env(cwd=tmp_path, environ=moto_server.env()))
    dest = tmp_path / "box" / "dest"
    dest.mkdir(parents=True)
    before = set(tmp_path.rglob("*"))
    report = sync(store, "hostile", "", dest, "pull", Options(), Filters())
    refused = {a.path for a in report.plan.of("refused")}
    assert refused == listed - {"fine/ok.txt"}
    assert (dest / "fine" / "ok.txt").read_bytes() == b"payload fine/ok.txt"
    created = set(tmp_path.rglob("*")) - before
    assert all(dest in p.parents or p == dest for p in created), created
    assert not Path("/etc/x").exists()


def test_sigkill_during_pull_leaves_no_partial_file(seaweed: SeaweedFS, tmp_path: Path) -> None:
    settings = Settings.from_env(cwd=tmp_path, environ=seaweed.env())
    store = S3Store.from_settings(settings)
    store.ensure_bucket("killme")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(96 * 1024 * 1024))
    store.put_file("s3://killme/data/big.bin", big)
    dest = tmp_path / "dest"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))},
        **seaweed.env(),
    }
    cmd = [
        str(Path(sys.executable).parent / "sagepipe"),
        "bucket",
        "pull",
        "data",
        "--dest",
        str(dest),
        "--bucket",
        "killme",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        p.name.startswith(".sagepipe-tmp-") and p.stat().st_size > 0
        for p in dest.rglob("*")
        if p.is_file()
    ):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (dest / "big.bin").exists()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        hashlib.sha256((dest / "big.bin").read_bytes()).digest()
        == hashlib.sha256(big.read_bytes()).digest()
    )
    assert not [p for p in dest.rglob(".sagepipe-tmp-*")]


def test_seed_wrappers_and_cli(seaweed: SeaweedFS, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}}
    (tmp_path / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in {**seaweed.env(), "SAGEPIPE_BUCKET": "seed"}.items())
    )
    init = subprocess.run(
        [sys.executable, str(ROOT / "create_s3_folder_structure_ml_project_sagemaker.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    assert "+ other/logs/" in init.stdout
    again = subprocess.run(
        [sys.executable, str(ROOT / "create_s3_folder_structure_ml_project_sagemaker.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "+ " not in again.stdout and "= app/src/" in again.stdout
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "app" / "x.py").write_text("x = 1\n")
    push = subprocess.run(
        [sys.executable, str(ROOT / "clone_s3_bucket_update_push.py"), "--mode=s3_push", str(work)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert push.returncode == 0, push.stdout + push.stderr
    assert "sent 1 files" in push.stdout
    pull = subprocess.run(
        [
            sys.executable,
            str(ROOT / "clone_s3_bucket_update_push.py"),
            "--mode=s3_pull",
            "--dest",
            str(tmp_path / "copy"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert (tmp_path / "copy" / "app" / "x.py").read_text() == "x = 1\n"
    assert (tmp_path / "copy" / "other" / "logs").is_dir()
    secret = seaweed.env()["AWS_SECRET_ACCESS_KEY"]
    assert secret not in push.stdout + push.stderr + pull.stdout + pull.stderr


def test_wrong_credentials_is_one_line(
    seaweed: SeaweedFS,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    for k, v in {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}.items():
        monkeypatch.setenv(k, v)
    code = run_cli(["--debug", "bucket", "ls", "--bucket", "nope"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "wrong-secret-value" not in out + err
    assert "rejected" in err or "denied" in err or "does not exist" in err


def test_symlinks_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "home" / "s3")
    store.ensure_bucket("links")
    secret = tmp_path / "outside.txt"
    secret.write_text("outside")
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "inside.txt").write_text("in")
    (folder / "alias.txt").symlink_to(folder / "inside.txt")
    (folder / "escape.txt").symlink_to(secret)
    (folder / "escape_dir").symlink_to(tmp_path)
    report = sync(store, "links", "p", folder, "push", Options(), Filters())
    keys = {i.key for i in store.list("s3://links/p/")}
    assert keys == {"p/inside.txt", "p/alias.txt"}
    assert {path for path, _ in report.skipped_local} == {"escape.txt", "escape_dir/"}


def test_the_report_prints_names_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped output lists every transfer by its name, untouched: no emoji codes, no markup,
    no wrapping of long names."""
    monkeypatch.setenv("SAGEPIPE_HOME", str(tmp_path / "home"))
    folder = tmp_path / "src"
    names = [":smile:.txt", "[red]x[/].txt", "/".join(["long-" * 40] * 3) + ".txt"]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    code = run_cli(["bucket", "push", str(folder), "--prefix", "p", "--bucket", "names"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    for name in names:
        assert f"upload {name} (new)" in out
    (folder / ":smile:.txt").write_text("edited here")  # and edited remotely: a conflict
    store = LocalStore(tmp_path / "home" / "s3")
    store.put("s3://names/p/:smile:.txt", b"edited there")
    assert run_cli(["bucket", "push", str(folder), "--prefix", "p", "--bucket", "names"]) == 1
    assert ":smile:.txt" in capsys.readouterr().out


def test_a_terminal_gets_the_progress_bar_and_the_same_report(tmp_path: Path) -> None:
    """With stderr on a terminal the transfer runs under rich's progress bar (drawn there and
    removed); the report on stdout is the same as without one."""
    folder = tmp_path / "src"
    (folder / "d").mkdir(parents=True)
    (folder / "d" / "a.txt").write_text("a")
    env = {**os.environ, "SAGEPIPE_HOME": str(tmp_path / "home")}
    env.pop("SAGEPIPE_STORE", None)
    sagepipe = str(Path(sys.executable).parent / "sagepipe")
    argv = [sagepipe, "bucket", "push", str(folder), "--prefix", "p", "--bucket", "bar-test"]
    primary, secondary = os.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    drawn = b""
    with contextlib.suppress(OSError):  # read while it runs; EIO once it has closed it
        while chunk := os.read(primary, 65536):
            drawn += chunk
    os.close(primary)
    out, _ = proc.communicate(timeout=60)  # a few lines: the pipe never filled meanwhile
    assert proc.returncode == 0
    assert out.decode().splitlines()[0] == "upload d/a.txt (new)"
    assert b"push" in drawn  # the bar's description, written to the terminal
