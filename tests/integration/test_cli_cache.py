"""The cache as `sagepipe run` and `executions describe` show it, on the example app."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import app_project, sp

__all__ = ["app_project"]  # the fixture, shared with test_cli

STEPS = ("read_data", "clean_data", "prepare_data", "normalize_data", "train", "evaluate")


def execution_id(stderr: str) -> str:
    return stderr.split("execution ", 1)[1].split()[0]


def describe(project: Path, stderr: str) -> dict[str, dict[str, str]]:
    done = sp(project, "executions", "describe", execution_id(stderr))
    assert done.returncode == 0, done.stderr
    decisions: dict[str, dict[str, str]] = json.loads(done.stdout)["CacheDecisions"]
    return decisions


def test_run_shows_and_stores_each_decision(app_project: Path) -> None:
    first = sp(app_project, "run", "-q")
    assert first.returncode == 0, first.stderr
    assert " cache " in first.stdout or "┃ cache" in first.stdout
    assert {d["Reason"] for d in describe(app_project, first.stderr).values()} == {"no earlier run"}
    source = execution_id(first.stderr)

    second = sp(app_project, "run", "-q", "--refresh", "train", "-p", "TestFraction=0.25")
    assert second.returncode == 0, second.stderr
    got = describe(app_project, second.stderr)
    assert got["read_data"] == {
        "Result": "hit",
        "Reason": f"reuses the run of execution {source}",
        "SourceExecutionId": source,
    }
    assert got["prepare_data"]["Reason"] == (
        f"changed since execution {source}: parameter TestFraction 0.2 → 0.25"
    )
    assert got["train"]["Reason"] == "refreshed (--refresh)"
    assert "quality_gate" not in got  # a condition never caches
    assert "hit: reuses the run of execution" in " ".join(second.stdout.split())

    # new data at the same URI: a hit all the same, with a warning naming the object
    data = app_project / ".sagepipe/s3/sagepipe-local/other/data/raw/penguins.csv"
    rows = data.read_text().splitlines()
    data.write_text("\n".join([*rows, rows[-1]]) + "\n")  # one more row, still valid data
    third = sp(app_project, "run", "-q", "-p", "TestFraction=0.25")
    assert third.returncode == 0, third.stderr
    hit = describe(app_project, third.stderr)["read_data"]
    assert hit["Result"] == "hit"
    uri = "s3://sagepipe-local/other/data/raw/penguins.csv"
    (warning,) = hit["Warnings"]
    assert f"{uri} (changed)" in warning
    said = " ".join(third.stderr.split())
    assert "warning (read_data): input data changed since the run of execution" in said
    assert "--refresh read_data" in said

    fourth = sp(app_project, "run", "-q", "--no-cache", "--refresh", "nope")
    assert fourth.returncode == 1
    assert fourth.stderr.strip().splitlines() == [
        "error: --refresh nope: no such step; steps are: clean_data, evaluate, normalize_data, "
        "prepare_data, publish_model, quality_gate, quality_too_low, read_data, "
        "register_model, train"
    ]
    fifth = sp(app_project, "run", "-q", "--no-cache")
    assert fifth.returncode == 0, fifth.stderr
    reasons = {d["Reason"] for d in describe(app_project, fifth.stderr).values()}
    assert reasons == {"cache disabled for this run (--no-cache)"}


def test_refresh_and_no_cache_are_for_local_runs(app_project: Path) -> None:
    done = sp(app_project, "run", "--backend", "sagemaker", "--no-cache")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --refresh and --no-cache apply to local runs; on SageMaker, turn caching off "
        "in the step's CacheConfig"
    ]


def test_a_fully_cached_rerun_loads_only_what_it_uses(app_project: Path) -> None:
    import os
    import subprocess
    import sys

    first = sp(app_project, "run", "-q")
    assert first.returncode == 0, first.stderr
    dump = app_project / "modules.json"
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(dump)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from sagepipe.cli.main import entry\n"
        "entry()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    env["SAGEPIPE_CACHE_DIR"] = os.environ["SAGEPIPE_CACHE_DIR"]
    again = subprocess.run(
        [sys.executable, "-c", code, "run", "-q"],
        cwd=app_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert said.count(f"hit: reuses the run of execution {execution_id(first.stderr)}") == 7
    loaded = set(json.loads(dump.read_text()))
    assert "sagepipe.engine.control" in loaded  # the condition and the registration ran
    unused = {
        "sagepipe.engine.processing",  # every processing step hit the cache
        "sagepipe.engine.training",
        "sagepipe.engine.functions",
        "sagepipe.engine.transform",
        "sagepipe.engine.rerun",  # not selective
        "sagepipe.engine.jobs",  # no step process started
        "sagepipe.engine.staging",
        "sagepipe.core.functions",  # no function steps
        "sagepipe.definition.functions",
        "cloudpickle",
        "sagepipe.cli.executions",  # other commands
        "sagepipe.cli.bucket",
        "rich.logging",  # nothing was logged
        "rich.live",  # not a terminal
        "dotenv",  # no .env
        "importlib.resources",
        "html",
        "gzip",
    }
    assert not unused & loaded
    # the history's connection was closed: nothing was left for a garbage collection to do
    assert not list((app_project / ".sagepipe").glob("history.sqlite-*"))
