"""The bucket layout from the seed project: where code, logs, outputs and models live."""

from __future__ import annotations

import re

CODE_PREFIX = "app"
LOGS_PREFIX = "other/logs"
OUTPUTS_PREFIX = "other/outputs"
MODELS_PREFIX = "other/models"
# Function steps: payloads and results under one base, as the SDK's invoke_function expects.
FUNCTIONS_PREFIX = "other/functions"

SEED_FOLDERS: tuple[str, ...] = (
    "app/",
    "app/src/",
    "other/",
    "other/logs/",
    "other/outputs/",
    "other/models/",
    "other/data/",
)


def code_key(pipeline: str, sha256: str, filename: str) -> str:
    """Content-addressed key of a code file: ``app/<pipeline>/code/<sha256>/<file>``."""
    return f"{CODE_PREFIX}/{pipeline}/code/{sha256}/{filename}"


# app/<pipeline>/code/<sha256>/<file>: the key names the content it must hold.
_CODE_OBJECT = re.compile(rf"^{CODE_PREFIX}/[^/]+/code/(?P<digest>[0-9a-f]{{64}})/[^/]+$")
_CODE_FOLDER = re.compile(rf"^{CODE_PREFIX}/[^/]+/code(/|$)")


def code_digest(key: str) -> str | None:
    """The sha256 a content-addressed code object must hash to, or None for any other key."""
    m = _CODE_OBJECT.match(key)
    return m.group("digest") if m else None


def in_code_prefix(key: str) -> bool:
    """Whether ``key`` (an object or a prefix) lies in a pipeline's content-addressed code.

    Empty segments do not count: the local store (and a filer-backed S3 server) reads
    ``app//p/code`` as ``app/p/code``.
    """
    return bool(_CODE_FOLDER.match("/".join(part for part in key.split("/") if part)))


def log_key(pipeline: str, execution_id: str, step: str) -> str:
    """Key of a step's log: ``other/logs/<pipeline>/<execution>/<step>.log``."""
    return f"{LOGS_PREFIX}/{pipeline}/{execution_id}/{step}.log"


def functions_base_key(pipeline: str) -> str:
    """Base of a pipeline's function steps (``--s3_base_uri``): ``other/functions/<pipeline>``.

    Payloads are at ``<base>/<step>/<sha256>/``, the job writes results at
    ``<base>/<execution>/<step>/results/``.
    """
    return f"{FUNCTIONS_PREFIX}/{pipeline}"
