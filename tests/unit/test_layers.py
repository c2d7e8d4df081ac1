"""Every module of the package is placed by an import-linter contract, so none slips through.

A module is placed when a layer of a layers contract, or the source of a forbidden contract,
names it or a package above it (the root package only counts when named by itself).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "sagepipe"


def _contracts() -> list[dict[str, Any]]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        contracts: list[dict[str, Any]] = tomllib.load(fh)["tool"]["importlinter"]["contracts"]
    return contracts


def _modules() -> Iterator[str]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _placed() -> set[str]:
    placed: set[str] = set()
    for contract in _contracts():
        if contract["type"] == "layers":
            containers = contract.get("containers") or [""]
            for layer in contract["layers"]:
                for name in re.split(r"[|:]", layer):
                    name = name.strip().strip("()")
                    placed.update(f"{c}.{name}" if c else name for c in containers)
        elif contract["type"] == "forbidden":
            placed.update(contract["source_modules"])
    return placed


def _is_placed(module: str, placed: set[str]) -> bool:
    parts = module.split(".")
    ancestors = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    return module in placed or bool(ancestors & placed)


def test_every_module_is_placed_by_a_contract() -> None:
    placed = _placed()
    modules = list(_modules())
    assert "sagepipe" in modules and "sagepipe.cli.main" in modules
    loose = [m for m in modules if not _is_placed(m, placed)]
    assert not loose, f"modules no import-linter contract places (pyproject.toml): {loose}"


def test_every_name_a_contract_places_exists() -> None:
    modules = set(_modules())
    stale = sorted(name for name in _placed() if name not in modules)
    assert not stale, f"contracts name modules that do not exist: {stale}"


def test_the_layers_contract_is_exhaustive() -> None:
    layered = [c for c in _contracts() if c["type"] == "layers"]
    assert layered and all(c.get("exhaustive") for c in layered)


def test_a_module_outside_every_contract_is_found() -> None:
    assert not _is_placed("sagepipe.newthing", _placed())
    assert not _is_placed("sagepipe.newthing.part", _placed())
    assert _is_placed("sagepipe.engine.sandbox.bwrap", _placed())


def test_container_programs_may_import_no_other_module_of_the_package() -> None:
    tops = {".".join(m.split(".")[:2]) for m in _modules() if m.count(".") >= 1}
    others = tops - {"sagepipe.container"}
    for contract in _contracts():
        if contract["type"] == "forbidden" and contract["source_modules"] == ["sagepipe.container"]:
            missing = sorted(others - set(contract["forbidden_modules"]))
            assert not missing, f"the container contract does not forbid {missing}"
            return
    raise AssertionError("no contract keeps the container programs apart")


def test_no_other_module_of_the_package_may_import_the_container_programs() -> None:
    tops = {".".join(m.split(".")[:2]) for m in _modules() if m.count(".") >= 1}
    others = tops - {"sagepipe.container"}
    for contract in _contracts():
        if contract["type"] == "forbidden" and contract["forbidden_modules"] == [
            "sagepipe.container"
        ]:
            missing = sorted(others - set(contract["source_modules"]))
            assert not missing, f"the contract keeping out of the container omits {missing}"
            return
    raise AssertionError("no contract keeps the package from importing the container programs")
