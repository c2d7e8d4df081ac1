"""One typed Settings object, built at the edge from the environment, ``.env`` and pyproject.

Precedence: variables already in the environment, then ``.env`` in the working directory
(``find_dotenv(usecwd=True)``, never overriding), then ``[tool.sagepipe]`` in the project's
pyproject.toml, then defaults. Credentials are kept out of ``repr``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from sagepipe.bucket_layout import SEED_FOLDERS
from sagepipe.errors import ConfigError
from sagepipe.records import record

DEFAULT_BUCKET = "sagepipe-local"
DEFAULT_REGION = "us-east-1"
STORES = ("local", "s3")
SANDBOXES = ("auto", "bwrap", "process")


BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")

ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")


def check_bucket_name(name: str) -> str:
    """Return ``name`` when S3 accepts it as a bucket name, else raise ConfigError."""
    if not BUCKET_NAME.match(name) or ".." in name or re.fullmatch(r"[\d.]+", name):
        raise ConfigError(
            f"bucket name {name!r} is not valid on S3: 3-63 lowercase letters, digits, '.' "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def find_project_root(start: Path) -> Path:
    """The nearest folder upward holding a sagepipe pyproject or ``.sagepipe/``; else ``start``."""
    for folder in (start, *start.parents):
        if (folder / ".sagepipe").is_dir():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "sagepipe" in _table(_read_toml(pyproject), "tool", pyproject):
            return folder
    return start


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {_one_line(exc)}") from None


def _no_dotenv(cwd: Path) -> bool:
    """Whether there is surely no ``.env`` to read: nothing of that name in ``cwd``, in the
    working directory or in a folder above it (then python-dotenv need not load)."""
    try:
        here = os.getcwd()
    except OSError:
        return False  # find_dotenv says what is wrong
    folders = [str(cwd)]
    while True:
        folders.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return not any(os.path.lexists(os.path.join(folder, ".env")) for folder in folders)


def _read_dotenv(cwd: Path) -> dict[str, str]:
    if _no_dotenv(cwd):
        return {}
    from dotenv import dotenv_values, find_dotenv

    path = str(cwd / ".env") if (cwd / ".env").is_file() else find_dotenv(usecwd=True)
    if not path:
        return {}
    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {_one_line(exc)}; .env must be UTF-8 text"
        ) from None
    return {k: v for k, v in values.items() if v is not None}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _table(data: Mapping[str, Any], key: str, where: object) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table, not {type(value).__name__}")
    return value


def _str(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[tool.sagepipe] {name} must be a string, not {value!r}")
    return value


@record
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
    images: Mapping[str, str | Mapping[str, Any]] = field(default_factory=dict)
    bucket_folders: tuple[str, ...] = SEED_FOLDERS
    role_arn: str | None = None
    prewarm: bool = True
    keep_workspace: bool = False
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir({}))
    images_strict: bool = False
    images_offline: bool = False
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        cwd: Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), ``.env`` and pyproject.

        Raises:
            ConfigError: one line naming the variable, file or key to fix.
        """
        cwd = (cwd or Path.cwd()).resolve()
        env = _read_dotenv(cwd)
        env.update(os.environ if environ is None else environ)
        root = find_project_root(cwd)
        pyproject = root / "pyproject.toml"
        tool = (
            _table(_table(_read_toml(pyproject), "tool", pyproject), "sagepipe", pyproject)
            if pyproject.is_file()
            else {}
        )
        home = Path(env["SAGEPIPE_HOME"]) if env.get("SAGEPIPE_HOME") else root / ".sagepipe"
        # [tool.sagepipe] bucket = "name", or a [tool.sagepipe.bucket] table with name and folders
        bucket_table = tool["bucket"] if isinstance(tool.get("bucket"), dict) else {}
        bucket_name = _str(
            bucket_table.get("name") if bucket_table else tool.get("bucket"), "bucket"
        )
        folders = bucket_table.get("folders", SEED_FOLDERS)
        if not isinstance(folders, list | tuple) or not all(isinstance(f, str) for f in folders):
            raise ConfigError("[tool.sagepipe.bucket] folders must be a list of strings")
        images = tool.get("images", {})
        if not isinstance(images, dict) or not all(
            isinstance(v, str | dict) for v in images.values()
        ):
            raise ConfigError(
                '[tool.sagepipe.images] must map image patterns to "host", a command, or a table '
                '{ python = "3.10", requirements = "requirements.txt" }'
            )
        values: dict[str, Any] = {
            "project_root": root,
            "home": home,
            "bucket": env.get("SAGEPIPE_BUCKET") or bucket_name or DEFAULT_BUCKET,
            "store": env.get("SAGEPIPE_STORE") or _str(tool.get("store"), "store") or "local",
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            "endpoint_url": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            "sandbox": env.get("SAGEPIPE_SANDBOX")
            or _str(tool.get("sandbox"), "sandbox")
            or "auto",
            "max_parallel": _int(
                env.get("SAGEPIPE_MAX_PARALLEL") or tool.get("max_parallel"),
                "SAGEPIPE_MAX_PARALLEL / max_parallel",
            ),
            "python": env.get("SAGEPIPE_PYTHON")
            or _str(tool.get("python"), "python")
            or sys.executable,
            "images": dict(images),
            "bucket_folders": tuple(folders),
            "role_arn": env.get("SAGEPIPE_ROLE_ARN") or _str(tool.get("role_arn"), "role_arn"),
            "prewarm": _flag(
                env.get("SAGEPIPE_PREWARM", tool.get("prewarm", True)),
                "SAGEPIPE_PREWARM / prewarm",
            ),
            "keep_workspace": _flag(
                env.get("SAGEPIPE_KEEP_WORKSPACE", False), "SAGEPIPE_KEEP_WORKSPACE"
            ),
            "cache_dir": Path(
                env.get("SAGEPIPE_CACHE_DIR")
                or _str(tool.get("cache_dir"), "cache_dir")
                or _default_cache_dir(env)
            ).expanduser(),
            "images_strict": _flag(
                env.get("SAGEPIPE_IMAGES_STRICT", tool.get("images_strict", False)),
                "SAGEPIPE_IMAGES_STRICT / images_strict",
            ),
            "images_offline": _flag(
                env.get("SAGEPIPE_IMAGES_OFFLINE", tool.get("images_offline", False)),
                "SAGEPIPE_IMAGES_OFFLINE / images_offline",
            ),
            "env": env,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """These settings with the given (non-None) values replaced, checked again."""
        changed = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        changed.check()
        return changed

    def check(self) -> None:
        """Raise ConfigError for values that cannot work."""
        if self.store not in STORES:
            raise ConfigError(f"SAGEPIPE_STORE={self.store!r}; use one of {', '.join(STORES)}")
        if self.sandbox not in SANDBOXES:
            raise ConfigError(
                f"SAGEPIPE_SANDBOX={self.sandbox!r} is unknown; use {', '.join(SANDBOXES)}"
            )
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ConfigError(
                f"SAGEPIPE_MAX_PARALLEL / max_parallel must be at least 1, not {self.max_parallel}"
            )
        check_bucket_name(self.bucket)
        if self.role_arn is not None and not ROLE_ARN.match(self.role_arn):
            raise ConfigError(
                f"role {self.role_arn!r} (--role / SAGEPIPE_ROLE_ARN) is not an IAM role ARN "
                "(arn:aws:iam::<account>:role/<name>)"
            )
        if self.home.exists() and not self.home.is_dir():
            raise ConfigError(f"SAGEPIPE_HOME {str(self.home)!r} is a file; it must name a folder")
        if self.endpoint_url and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(
                f"S3 endpoint {self.endpoint_url!r} (AWS_ENDPOINT_URL) must be an http(s):// URL"
            )
        for pattern in self.images:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"[tool.sagepipe.images] key {pattern!r} is not a valid regex: {exc}"
                ) from None
        if not (shutil.which(self.python) or Path(self.python).is_file()):
            raise ConfigError(f"step interpreter {self.python!r} (SAGEPIPE_PYTHON) not found")

    @property
    def local_store_root(self) -> Path:
        """Where the embedded local store keeps buckets."""
        return self.home / "s3"

    @property
    def history_path(self) -> Path:
        """The SQLite history file."""
        return self.home / "history.sqlite"


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/sagepipe``, else ``~/.cache/sagepipe`` (as images.default_cache_dir)."""
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "sagepipe"
    return Path(env.get("HOME", "~")).expanduser() / ".cache" / "sagepipe"


def _int(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, bool | float):
            raise TypeError
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, not {str(value)[:40]!r}") from None


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise ConfigError(f"{name} must be on or off (1/0, true/false), not {str(value)[:40]!r}")
