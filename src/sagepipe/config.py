"""One typed Settings object, built at the edge from the environment, ``.env`` and pyproject.

Precedence: variables already in the environment, then ``.env`` in the working directory
(``find_dotenv(usecwd=True)``, never overriding), then ``[tool.sagepipe]`` in the project's
pyproject.toml, then defaults. Credentials are kept out of ``repr``.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagepipe.errors import ConfigError
from sagepipe.layout import SEED_FOLDERS

DEFAULT_BUCKET = "sagepipe-local"
DEFAULT_REGION = "us-east-1"
STORES = ("local", "s3")
SANDBOXES = ("auto", "bwrap", "process")


def find_project_root(start: Path) -> Path:
    """The nearest folder upward holding a sagepipe pyproject or ``.sagepipe/``; else ``start``."""
    for folder in (start, *start.parents):
        if (folder / ".sagepipe").is_dir():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "sagepipe" in _read_toml(pyproject).get("tool", {}):
            return folder
    return start


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Everything configurable, resolved once."""

    project_root: Path
    home: Path
    bucket: str = DEFAULT_BUCKET
    store: str = "local"
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    sandbox: str = "auto"
    max_parallel: int | None = None
    python: str = field(default_factory=lambda: sys.executable)
    images: Mapping[str, str] = field(default_factory=dict)
    bucket_folders: tuple[str, ...] = SEED_FOLDERS
    role_arn: str | None = None
    prewarm: bool = True
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        cwd: Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), ``.env`` and pyproject."""
        from dotenv import dotenv_values, find_dotenv

        cwd = (cwd or Path.cwd()).resolve()
        base = dict(os.environ if environ is None else environ)
        dotenv_path = str(cwd / ".env") if (cwd / ".env").is_file() else find_dotenv(usecwd=True)
        env = (
            {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            if dotenv_path
            else {}
        )
        env.update(base)
        root = find_project_root(cwd)
        tool = (
            _read_toml(root / "pyproject.toml").get("tool", {}).get("sagepipe", {})
            if (root / "pyproject.toml").is_file()
            else {}
        )
        home = Path(env["SAGEPIPE_HOME"]) if env.get("SAGEPIPE_HOME") else root / ".sagepipe"
        # [tool.sagepipe] bucket = "name", or a [tool.sagepipe.bucket] table with name and folders
        bucket_table = tool["bucket"] if isinstance(tool.get("bucket"), dict) else {}
        bucket_name = bucket_table.get("name") if bucket_table else tool.get("bucket")
        values: dict[str, Any] = {
            "project_root": root,
            "home": home,
            "bucket": env.get("SAGEPIPE_BUCKET") or bucket_name or DEFAULT_BUCKET,
            "store": env.get("SAGEPIPE_STORE") or tool.get("store") or "local",
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "sandbox": env.get("SAGEPIPE_SANDBOX") or tool.get("sandbox") or "auto",
            "max_parallel": _int(env.get("SAGEPIPE_MAX_PARALLEL") or tool.get("max_parallel")),
            "python": env.get("SAGEPIPE_PYTHON") or tool.get("python") or sys.executable,
            "images": dict(tool.get("images", {})),
            "bucket_folders": tuple(bucket_table.get("folders", SEED_FOLDERS)),
            "role_arn": env.get("SAGEPIPE_ROLE_ARN") or tool.get("role_arn"),
            "prewarm": str(env.get("SAGEPIPE_PREWARM", tool.get("prewarm", "1"))).lower()
            not in ("0", "false", "no", "off"),
            "env": env,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError for values that cannot work."""
        if self.store not in STORES:
            raise ConfigError(f"SAGEPIPE_STORE={self.store!r}; use one of {', '.join(STORES)}")
        if self.sandbox not in SANDBOXES:
            raise ConfigError(f"sandbox {self.sandbox!r} is unknown; use {', '.join(SANDBOXES)}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ConfigError("max_parallel must be at least 1")

    @property
    def local_store_root(self) -> Path:
        """Where the embedded local store keeps buckets."""
        return self.home / "s3"

    @property
    def history_path(self) -> Path:
        """The SQLite history file."""
        return self.home / "history.sqlite"


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected an integer, got {value!r}") from None
