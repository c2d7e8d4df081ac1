"""The sandbox's pure parts: the bwrap command line, path rewriting, limits, failure reasons."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from sagepipe.engine.jobs import failure_cause
from sagepipe.engine.sandbox import LaunchSpec, limits_for, out_of_memory_reason, rewrite
from sagepipe.engine.sandbox.base import runtime_paths
from sagepipe.engine.sandbox.bwrap import BwrapSandbox
from sagepipe.engine.sandbox.limits import GIB, instance_resources


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/opt/ml", "/ws"),
        ("/opt/ml/processing/input", "/ws/processing/input"),
        ("--out=/opt/ml/processing/o", "--out=/ws/processing/o"),
        ("/a:/opt/ml/code", "/a:/ws/code"),
        ("/opt/mlflow/x", "/opt/mlflow/x"),
        ("s3://b/opt/ml/x", "s3://b/opt/ml/x"),
        ("/x/opt/ml/y", "/x/opt/ml/y"),
        ("/opt/ml.bak", "/opt/ml.bak"),
        ("/opt/ml-x", "/opt/ml-x"),
        ("a /opt/ml b", "a /ws b"),
    ],
)
def test_the_process_sandbox_rewrites_opt_ml_at_path_boundaries_only(
    value: str, expected: str
) -> None:
    assert rewrite(value, "/ws") == expected


def spec(tmp_path: Path, **kw: object) -> LaunchSpec:
    return LaunchSpec(["python3", "-c", "pass"], {}, tmp_path, **kw)  # type: ignore[arg-type]


def test_the_bwrap_command_builds_a_fresh_root(tmp_path: Path) -> None:
    runtime = [Path("/tmp/some-venv")]
    args = BwrapSandbox("bwrap", slirp4netns=None).command(spec(tmp_path, runtime=runtime))
    pairs = list(itertools.pairwise(args))
    assert ("--ro-bind", "/") not in pairs  # nothing of the host but what is listed
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in args
    assert "--as-pid-1" not in args  # bwrap's init kills every process when the first exits
    assert ("--cap-drop", "ALL") in pairs and "--new-session" in args
    assert "--die-with-parent" in args and "--unshare-net" not in args
    assert ("--tmpfs", "/tmp") in pairs and ("--proc", "/proc") in pairs
    assert ("--dev", "/dev") in pairs
    assert args.index("/tmp/some-venv") > args.index("/tmp")  # a runtime under /tmp stays seen
    assert args[args.index(str(tmp_path)) + 1] == "/opt/ml"
    etc = [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind-try"]
    assert all(p.startswith("/etc/") for p in etc) and "/etc/shadow" not in etc
    assert args[-3:] == ["python3", "-c", "pass"]


def test_network_isolation_unshares_the_network(tmp_path: Path) -> None:
    args = BwrapSandbox("bwrap", slirp4netns=None).command(spec(tmp_path, network=False))
    assert "--unshare-net" in args


def test_a_held_step_waits_for_its_limits_and_a_networked_one_for_its_network(
    tmp_path: Path,
) -> None:
    sandbox = BwrapSandbox("bwrap", slirp4netns=None)
    limits = limits_for("ml.m5.large")
    assert limits is not None
    held = sandbox.command(spec(tmp_path, limits=limits), hold=(7, 8))
    assert held[held.index("--info-fd") + 1] == "7" and held[held.index("--block-fd") + 1] == "8"
    assert held[-3:] == ["python3", "-c", "pass"]  # no program in front of the step's
    networked = sandbox.command(spec(tmp_path, limits=limits), handshake=(7, 11, 12))
    assert "--unshare-net" in networked
    script = networked[networked.index("-c") + 1]
    assert script.startswith("printf 1 >&11; exec 11>&-; read -r _ <&12; exec 12<&-;")
    assert f"ulimit -v {limits.memory_bytes // 1024} -u {limits.processes};" in script
    assert networked[-4:] == ["bash", "python3", "-c", "pass"]


def test_instance_types_give_limits_capped_at_this_machine() -> None:
    assert instance_resources("ml.m5.large") == (2, 8)
    assert instance_resources("ml.c5.xlarge") == (4, 8)
    assert instance_resources("ml.t3.medium") == (2, 4)
    assert instance_resources("ml.m5.24xlarge") == (96, 384)
    assert instance_resources("ml.g4dn.2xlarge") == (8, 32)
    assert instance_resources("local") is None
    assert limits_for(None) is None
    huge = limits_for("ml.m5.24xlarge")
    assert huge is not None
    assert huge.vcpus == os.cpu_count()
    assert huge.memory_bytes <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    small = limits_for("ml.t3.medium")
    assert small is not None and small.memory_bytes == min(4 * GIB, huge.memory_bytes)


def test_an_allocation_failure_reads_like_sagemaker() -> None:
    limits = limits_for("ml.t3.medium")
    reason = out_of_memory_reason(limits, "MemoryError")
    assert reason is not None
    assert reason.startswith("ClientError: Please use an instance type with more memory")
    assert "ml.t3.medium" in reason
    assert out_of_memory_reason(limits, "ValueError: bad") is None
    assert out_of_memory_reason(None, "MemoryError") is None
    assert out_of_memory_reason(limits, "OSError: [Errno 12] Cannot allocate memory") is not None


def test_the_failure_cause_is_the_error_not_only_the_last_line() -> None:
    traceback = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    raise ValueError('bad')",
        "ValueError: bad",
    ]
    assert failure_cause(traceback) == "ValueError: bad"
    tar = [
        "extracting",
        "tar: preprocess.py: Cannot open: Read-only file system",
        "tar: Exiting with failure status due to previous errors",
    ]
    assert failure_cause(tar) == (
        "tar: preprocess.py: Cannot open: Read-only file system "
        "(last output: tar: Exiting with failure status due to previous errors)"
    )
    assert (
        failure_cause([*traceback, "cleanup done"]) == "ValueError: bad (last output: cleanup done)"
    )
    assert failure_cause(["just this"]) == "just this"
    assert failure_cause([]) is None


def test_runtime_paths_are_the_runtime_prefixes(tmp_path: Path) -> None:
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    found = runtime_paths(str(venv / "python"))
    assert found[0] == tmp_path / "venv"
    assert runtime_paths("/usr/bin/python3") == []
    assert runtime_paths("python3") == []


def test_a_probe_started_early_answers_like_the_probe_run_at_once(tmp_path: Path) -> None:
    from sagepipe.engine.sandbox import BwrapProbe, bwrap_works, choose_sandbox, probe_sandbox

    assert not BwrapProbe(str(tmp_path / "no-bwrap")).works()  # cannot start: not usable
    failing = tmp_path / "bwrap"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    assert not BwrapProbe(str(failing)).works() and not bwrap_works(str(failing))
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    probe = BwrapProbe(str(slow))
    assert not probe.works(timeout=0.2)  # killed, not left behind
    assert probe._proc is not None and probe._proc.returncode is not None
    assert probe_sandbox("process") is None
    early = probe_sandbox("auto")
    chosen = choose_sandbox("auto", early)
    assert chosen.name == choose_sandbox("auto").name
    # a probe of another bubblewrap than the one found now is not trusted
    assert choose_sandbox("auto", BwrapProbe(str(failing))).name == chosen.name
