"""Bucket sync speed on a local SeaweedFS server: sagepipe vs `aws s3 sync` vs `s5cmd sync`.

Data: 500 files of 200 KiB plus 4 of 64 MiB. Upload (folder -> empty prefix), download
(prefix -> empty folder), median of RUNS, every tool as a command-line process; then a no-op
sync of 10,000 unchanged 1 KiB files. Also the raw transfer path: boto3 vs obstore putting the
500 small files (16 at a time), in-process. aws-cli, s5cmd and obstore live only in
bench/.venv-peers (bench/setup_peers.sh).

    python bench/sync.py [--runs 3] [--small 500] [--big 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import HERE, record, table
from tests.servers import SeaweedFS

PEERS = HERE / ".venv-peers" / "bin"
SAGEPIPE = Path(sys.executable).parent / "sagepipe"


def make_data(root: Path, small: int, big: int) -> None:
    root.mkdir(parents=True)
    for i in range(small):
        (root / f"d{i % 10}").mkdir(exist_ok=True)
        (root / f"d{i % 10}" / f"f{i:04d}.bin").write_bytes(os.urandom(200 * 1024))
    for i in range(big):
        (root / f"big{i}.bin").write_bytes(os.urandom(64 * 1024 * 1024))


def tools(endpoint: str) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (upload argv template, download argv template); {src}/{dst} filled in later."""
    out = {
        "sagepipe": (
            [
                str(SAGEPIPE),
                "bucket",
                "push",
                "{dir}",
                "--prefix",
                "{prefix}",
                "--bucket",
                "{bucket}",
                "--store",
                "s3",
            ],
            [
                str(SAGEPIPE),
                "bucket",
                "pull",
                "{prefix}",
                "--dest",
                "{dir}",
                "--bucket",
                "{bucket}",
                "--store",
                "s3",
            ],
        )
    }
    if (PEERS / "aws").exists():
        aws = [str(PEERS / "aws"), "--endpoint-url", endpoint, "s3", "sync", "--only-show-errors"]
        out["aws s3 sync"] = (
            [*aws, "{dir}", "s3://{bucket}/{prefix}"],
            [*aws, "s3://{bucket}/{prefix}", "{dir}"],
        )
    if (PEERS / "s5cmd").exists():
        s5 = [str(PEERS / "s5cmd"), "--endpoint-url", endpoint, "sync"]
        out["s5cmd sync"] = (
            [*s5, "{dir}/", "s3://{bucket}/{prefix}/"],
            [*s5, "s3://{bucket}/{prefix}/*", "{dir}/"],
        )
    return out


def run(argv: list[str], env: dict[str, str], **fill: str) -> float:
    cmd = [a.format(**fill) for a in argv]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr[-500:]}{done.stdout[-500:]}")
    return elapsed


CONDITIONAL = """
import os, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from sagepipe.config import Settings
from sagepipe.storage.s3 import S3Store
store = S3Store.from_settings(Settings.from_env(environ=dict(os.environ)))
files = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file())
def upload(prefix, conditional):
    def one(p):
        store.put_file(f"s3://bench/{prefix}/{p.name}", p, if_none_match=conditional, mode=0o644)
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start
upload("cond-warm", False)
times = {True: [], False: []}
for i in range(int(sys.argv[2])):
    for conditional in ((True, False) if i % 2 else (False, True)):
        times[conditional].append(upload(f"cond-{i}-{conditional}", conditional))
print(statistics.median(times[True]), statistics.median(times[False]))
"""


def conditional_cost(env: dict[str, str], folder: Path, runs: int) -> tuple[float, float]:
    """S3Store.put_file of every file, 16 at a time, with If-None-Match: * and without;
    in-process, alternating, median of ``runs`` each: (with, without) seconds."""
    done = subprocess.run(
        [sys.executable, "-c", CONDITIONAL, str(folder), str(runs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    with_, without = (float(x) for x in done.stdout.split())
    return with_, without


def raw_transfer(env: dict[str, str], endpoint: str, folder: Path, bucket: str) -> dict[str, float]:
    """boto3 (main venv) vs obstore (peers venv) putting the small files, 16 at a time."""
    files = sorted(p for p in folder.rglob("f*.bin"))
    listing = folder.parent / "small-files.txt"
    listing.write_text("\n".join(str(p) for p in files))
    boto = f"""
import boto3, time
from concurrent.futures import ThreadPoolExecutor
from botocore.config import Config
c = boto3.client('s3', endpoint_url={endpoint!r}, config=Config(max_pool_connections=32, request_checksum_calculation='when_required'))
paths = open({str(listing)!r}).read().split()
t = time.perf_counter()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda p: c.put_object(Bucket={bucket!r}, Key='boto/' + p.rsplit('/', 1)[1], Body=open(p, 'rb').read()), paths))
print(time.perf_counter() - t)
"""
    obs = f"""
import asyncio, time
from obstore.store import S3Store
import obstore
s = S3Store({bucket!r}, endpoint={endpoint!r}, access_key_id={env["AWS_ACCESS_KEY_ID"]!r}, secret_access_key={env["AWS_SECRET_ACCESS_KEY"]!r}, region='us-east-1', client_options={{'allow_http': True}})
paths = open({str(listing)!r}).read().split()
async def main():
    sem = asyncio.Semaphore(16)
    async def one(p):
        async with sem:
            await obstore.put_async(s, 'obstore/' + p.rsplit('/', 1)[1], open(p, 'rb').read())
    t = time.perf_counter()
    await asyncio.gather(*(one(p) for p in paths))
    print(time.perf_counter() - t)
asyncio.run(main())
"""
    out = {}
    for name, python, code in (
        ("boto3", sys.executable, boto),
        ("obstore", str(PEERS / "python"), obs),
    ):
        if not Path(python).exists():
            continue
        samples = []
        for _ in range(3):
            done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name}: {done.stderr[-300:]}")
                break
            samples.append(float(done.stdout.strip()))
        if samples:
            out[name] = statistics.median(samples)
    return out


def require_peers() -> None:
    """A comparison without its baselines is no comparison: refuse to run without them."""
    missing = [n for n in ("aws", "s5cmd", "python") if not (PEERS / n).exists()]
    if (
        not missing
        and subprocess.run(
            [str(PEERS / "python"), "-c", "import obstore"], capture_output=True
        ).returncode
    ):
        missing.append("obstore")
    if missing:
        raise SystemExit(
            f"bench/sync.py compares against aws-cli, s5cmd and obstore; missing in "
            f"{PEERS.parent}: {', '.join(missing)}. Run bench/setup_peers.sh first."
        )


def main() -> None:
    require_peers()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--big", type=int, default=4)
    parser.add_argument("--noop-files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        base = Path(tmp)
        # 1 GiB volumes (tests use 64 MiB): growing a volume stalls every upload in flight for a
        # second or more, which would measure the server's volume growth, not the clients
        server = SeaweedFS(base / "weed", volume_size_mb=1024).start()
        try:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))},
                **server.env(),
            }
            env["AWS_ENDPOINT_URL"] = server.endpoint
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # installed tools have their bytecode
            env["SAGEPIPE_HOME"] = str(base / "home")
            import boto3

            boto3.client(
                "s3",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            ).create_bucket(Bucket="bench")
            data = base / "data"
            make_data(data, args.small, args.big)
            size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
            rows, results = [], {}
            peers = tools(server.endpoint)
            # one untimed upload first: the server's first volumes are created outside the runs
            run(peers["s5cmd sync"][0], env, dir=str(data), prefix="warm-up", bucket="bench")
            ups: dict[str, list[float]] = {name: [] for name in peers}
            downs: dict[str, list[float]] = {name: [] for name in peers}
            names = list(peers)
            for run_no in range(args.runs):  # the tools take turns, each run starting elsewhere
                for name in names[run_no % len(names) :] + names[: run_no % len(names)]:
                    up, down = peers[name]
                    prefix = f"{name.split()[0]}-{run_no}"
                    ups[name].append(run(up, env, dir=str(data), prefix=prefix, bucket="bench"))
                    dest = base / f"dl-{prefix}"
                    downs[name].append(run(down, env, dir=str(dest), prefix=prefix, bucket="bench"))
                    shutil.rmtree(dest)
            for name in names:
                results[name] = (statistics.median(ups[name]), statistics.median(downs[name]))
                print(f"{name:12s} upload {results[name][0]:.2f}s download {results[name][1]:.2f}s")
            noop_dir = base / "many"
            noop_dir.mkdir()
            for i in range(args.noop_files):
                sub = noop_dir / f"d{i % 100:02d}"
                sub.mkdir(exist_ok=True)
                (sub / f"f{i:05d}.txt").write_bytes(os.urandom(1024))
            first = run(
                tools(server.endpoint)["sagepipe"][0],
                env,
                dir=str(noop_dir),
                prefix="many",
                bucket="bench",
            )
            print(f"initial push of {args.noop_files} files: {first:.2f}s")
            noops = {}
            for name, (up, _) in tools(server.endpoint).items():
                samples = [
                    run(up, env, dir=str(noop_dir), prefix="many", bucket="bench")
                    for _ in range(args.runs)
                ]
                noops[name] = statistics.median(samples)
                print(f"{name:12s} no-op sync of {args.noop_files} files {noops[name]:.2f}s")
            raw = raw_transfer(env, server.endpoint, data, "bench")
            conditional = conditional_cost(env, data, max(args.runs, 5))
        finally:
            server.stop()
    sp = results["sagepipe"]
    for name, (u, d) in results.items():
        rows.append(
            [
                name,
                f"{u:.2f}",
                f"{size / u / 1e6:.0f}",
                f"{d:.2f}",
                f"{size / d / 1e6:.0f}",
                f"{noops[name]:.2f}",
                f"{u / sp[0]:.2f}x / {d / sp[1]:.2f}x / {noops[name] / noops['sagepipe']:.2f}x",
            ]
        )
    body = (
        f"SeaweedFS (`weed mini`) on 127.0.0.1; {args.small} files x 200 KiB + {args.big} x 64 MiB "
        f"({size / 1e6:.0f} MB), 1 GiB volumes, one untimed upload first; median of {args.runs}, the "
        "tools taking turns run by run; every tool run as a process (start-up included). "
        f"No-op: a second sync of {args.noop_files:,} unchanged 1 KiB files. Ratios are the tool's time over "
        "sagepipe's (above 1: sagepipe is faster).\n\n"
        + table(
            [
                "tool",
                "upload (s)",
                "MB/s",
                "download (s)",
                "MB/s",
                "no-op (s)",
                "time vs sagepipe (up / down / no-op)",
            ],
            rows,
        )
    )
    if raw:
        body += (
            "\n\nRaw transfer path, the small files only, 16 concurrent puts, in-process: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in raw.items())
            + ". sagepipe sends these through its own lean path (signed by botocore, sent by "
            "urllib3), with boto3 as its fallback."
        )
    with_, without = conditional
    body += (
        f"\n\nConditional writes (If-None-Match: *, every file), in-process put_file, 16 at a "
        f"time, median of {max(args.runs, 5)} alternating: {with_:.2f}s with, {without:.2f}s "
        f"without: {100 * (with_ / without - 1):+.1f}% (target: at most +5%)."
    )
    print(body)
    record("sync: push / pull / no-op on SeaweedFS", body)


if __name__ == "__main__":
    main()
