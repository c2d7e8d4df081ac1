"""``sagepipe serve``: a model's code at a content-addressed code key is verified, as a step's is."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.engine.sandbox import ProcessSandbox
from sagepipe.engine.serve import ModelServer
from sagepipe.errors import ExecutionError
from sagepipe.storage import LocalStore

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_a_changed_code_archive_is_not_served(project: Path, image_cache: Path) -> None:
    settings = Settings.from_env(
        cwd=project, environ={"SAGEPIPE_CACHE_DIR": str(image_cache), "SAGEPIPE_BUCKET": "serving"}
    )
    store = LocalStore(settings.local_store_root)
    store.put("s3://serving/models/m/model.tar.gz", _tar_gz({"weights.json": b"[1]"}))
    compiled = _tar_gz({"inference.py": b"def model_fn(d):\n    return 1\n"})
    submit = f"s3://serving/app/p/code/{hashlib.sha256(compiled).hexdigest()}/sourcedir.tar.gz"
    store.put(submit, _tar_gz({"inference.py": b"raise SystemExit('not the compiled code')\n"}))
    server = ModelServer(
        settings,
        store,
        ProcessSandbox(),
        "s3://serving/models/m/model.tar.gz",
        SKLEARN,
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": submit},
    )
    with pytest.raises(ExecutionError, match="does not match its content hash"):
        server.start(port=0)
    assert server.proc is None
