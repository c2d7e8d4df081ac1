"""Every malformed definition in tests/fixtures/bad/ is refused with one line naming the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagepipe.cli.main import run_cli
from sagepipe.definition import load
from sagepipe.errors import DefinitionError
from tests.conftest import FIXTURES

BAD = FIXTURES / "bad"
EXPECTED: dict[str, str] = json.loads((BAD / "expected.json").read_text())


def test_there_are_at_least_twenty() -> None:
    assert len(EXPECTED) >= 20
    assert {p.name for p in BAD.glob("*.json")} - {"expected.json"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loader_names_the_problem(name: str) -> None:
    with pytest.raises(DefinitionError) as info:
        load(BAD / name)
    assert EXPECTED[name] in str(info.value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_exits_1_with_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["validate", str(BAD / name)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["cycle.json", "malformed_json.json", "unknown_output_name.json"])
def test_validate_as_a_real_process(name: str) -> None:
    exe = Path(sys.executable).parent / "sagepipe"
    done = subprocess.run(
        [str(exe), "validate", str(BAD / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert EXPECTED[name] in " ".join(done.stderr.split())
