"""The warm-start launcher, run as the engine runs it: a file, on the step's Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parents[3] / "src" / "sagepipe" / "container" / "launcher.py"
PYTHONS = [sys.executable] + [
    p for p in (shutil.which("python3", path="/usr/bin"),) if p and p != sys.executable
]


def launch(python: str, imports: list[str], message: dict[str, object] | None, cwd: Path):
    line = json.dumps(message) + "\n" if message is not None else "\n"
    return subprocess.run(
        [python, str(LAUNCHER), json.dumps(imports)],
        input=line,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
        timeout=60,
    )


@pytest.mark.parametrize("python", PYTHONS)
def test_a_script_without_imports_runs(python: str, tmp_path: Path) -> None:
    """The old launcher deleted a loop variable that a script without imports never bound."""
    script = tmp_path / "hello.py"
    script.write_text('print("hello")\n')
    msg = {"argv": [str(script)], "env": {"A": "1"}, "cwd": str(tmp_path)}
    done = launch(python, [], msg, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"


@pytest.mark.parametrize("python", PYTHONS)
def test_the_script_sees_what_python_script_would(python: str, tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "helper.py").write_text("VALUE = 7\n")
    script = tmp_path / "code" / "main.py"
    script.write_text(
        "import json, os, sys\n"
        "import helper\n"
        "print(json.dumps({'argv': sys.argv, 'name': __name__, 'cwd': os.getcwd(),"
        " 'env': dict(os.environ), 'value': helper.VALUE, 'stdin': sys.stdin.read(),"
        " 'launcher': 'preload' in globals()}))\n"
    )
    msg = {"argv": [str(script), "--x", "1"], "env": {"ONLY": "this"}, "cwd": str(tmp_path)}
    done = launch(python, ["json", "no_such_module_anywhere"], msg, Path("/"))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == [str(script), "--x", "1"]
    assert seen["name"] == "__main__" and seen["value"] == 7
    assert seen["cwd"] == str(tmp_path) and seen["env"] == {"ONLY": "this"}
    assert seen["stdin"] == "" and seen["launcher"] is False


@pytest.mark.parametrize("python", PYTHONS)
def test_a_failing_script_shows_its_own_traceback(python: str, tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("def main():\n    raise ValueError('bad input')\n\nmain()\n")
    done = launch(python, [], {"argv": [str(script)], "env": {}, "cwd": str(tmp_path)}, tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "ValueError: bad input"
    assert "launcher.py" not in done.stderr and "runpy" not in done.stderr


@pytest.mark.parametrize("python", PYTHONS)
def test_exit_codes_pass_through(python: str, tmp_path: Path) -> None:
    script = tmp_path / "exit.py"
    script.write_text("import sys\nsys.exit(3)\n")
    done = launch(python, [], {"argv": [str(script)], "env": {}, "cwd": str(tmp_path)}, tmp_path)
    assert done.returncode == 3


def test_an_empty_line_means_not_needed(tmp_path: Path) -> None:
    done = launch(sys.executable, ["json"], None, tmp_path)
    assert done.returncode == 0 and done.stdout == ""


def test_the_launcher_is_python_3_8_syntax() -> None:
    import ast

    ast.parse(LAUNCHER.read_text(), feature_version=(3, 8))
    source = LAUNCHER.read_text()
    assert "import sagepipe" not in source and "from sagepipe" not in source
