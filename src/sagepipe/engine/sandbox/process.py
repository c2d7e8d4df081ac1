"""The fallback where namespaces are unavailable: no isolation, ``/opt/ml`` rewritten.

Inputs are still private copies and outputs follow the same publishing rules (both are done by
the engine, not the sandbox); limits still apply through ``prlimit``.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import IO

from sagepipe.engine.sandbox.base import PROGRAMS, LaunchSpec, popen
from sagepipe.engine.sandbox.limits import prlimit_prefix

log = logging.getLogger(__name__)
# /opt/ml as a whole path component: not /opt/mlflow, not s3://b/opt/ml, not /x/opt/ml.
_ROOT_AT_BOUNDARY = re.compile(r"(?<![\w.\-/~])/opt/ml(?![\w.\-])")


def rewrite(value: str, root: str) -> str:
    """Replace the container root ``/opt/ml`` with ``root`` where it starts a path."""
    return _ROOT_AT_BOUNDARY.sub(lambda _: root, value)


class ProcessSandbox:
    """No namespaces: ``/opt/ml`` in arguments and environment points at the workspace."""

    name = "process"
    _warned = False

    def __init__(self) -> None:
        self.prlimit = shutil.which("prlimit")

    def container_path(self, value: str, workspace: Path) -> str:
        return rewrite(value, str(workspace))

    def program(self, name: str) -> str:
        return str(PROGRAMS / name)

    def launch(
        self,
        spec: LaunchSpec,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        stdin: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        if not ProcessSandbox._warned:
            ProcessSandbox._warned = True
            log.warning(
                "process sandbox: steps are not isolated (they see this machine's files, "
                "processes and network); /opt/ml is rewritten in arguments and environment only, "
                "so scripts that hardcode /opt/ml paths will not find their files (install "
                "bubblewrap for a container-like sandbox)"
            )
        root = str(spec.workspace)
        argv = [rewrite(a, root) for a in spec.argv]
        if spec.limits is not None and self.prlimit:
            argv = prlimit_prefix(self.prlimit, spec.limits) + argv
        env = {k: rewrite(v, root) for k, v in spec.env.items()}
        return popen(argv, env, rewrite(spec.cwd, root), stdout, stderr, stdin)
