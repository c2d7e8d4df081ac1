"""Warm starts: launch the next processing step's interpreter while its upstream still runs.

A step's process spends a second or more importing pandas and scikit-learn before its first
line of work. When a step is about to become ready (every upstream step running or done), its
sandbox is started with the step's own mounts, code and environment, and a small launcher
imports the modules the script imports at top level, then waits. When the step really starts,
its inputs are staged into the same workspace and the launcher receives the resolved arguments
and runs the script as ``__main__``. On a free core the imports overlap the upstream work.

Only processing steps qualify whose entrypoint is ``python <script.py>``, whose image's
environment is built and is an image environment or the host interpreter (a command standing
for an image may be anything; the launcher runs on the environment's own Python) and whose
image, environment, network setting and input paths hold no expressions; everything else
starts cold. The launcher is
``sagepipe/container/launcher.py``, run as a file inside the step's sandbox.
"""

from __future__ import annotations

import ast
import contextlib
import json
import shutil
import subprocess
from dataclasses import field
from pathlib import Path
from typing import Any

from sagepipe.config import Settings
from sagepipe.definition import StepDef
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.sandbox import CONTAINER_ROOT, Sandbox, limits_for
from sagepipe.errors import SagepipeError
from sagepipe.records import record
from sagepipe.storage import ObjectStore

LAUNCHER = "launcher.py"
PYTHON_NAMES = frozenset({"python", "python3"})
WARM_KINDS = ("env", "host")  # a command standing for an image may be anything


def is_static(value: Any) -> bool:
    """Whether ``value`` holds no expression (Get, Std:Join, Std:JsonGet)."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Get", "Std:Join", "Std:JsonGet"):
            return False
        return all(is_static(v) for v in value.values())
    if isinstance(value, list):
        return all(is_static(v) for v in value)
    return True


def top_level_imports(script: Path) -> list[str]:
    """Absolute modules the script imports at its top level (not its own sibling modules)."""
    try:
        tree = ast.parse(script.read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    siblings = {p.stem for p in script.parent.iterdir()} | {p.name for p in script.parent.iterdir()}
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [
        n for n in dict.fromkeys(names) if n.split(".")[0] not in siblings and n != "__future__"
    ]


@record(frozen=False)
class Warm:
    """A started, waiting step process."""

    proc: subprocess.Popen[bytes]
    workspace: Path
    staged: set[str] = field(default_factory=set)
    keep_workspace: bool = False

    def go(self, message: dict[str, Any]) -> None:
        """Hand the launcher the resolved command; it runs the script."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.close()

    def discard(self) -> None:
        """Stop the waiting process."""
        from sagepipe.engine.jobs import kill_group

        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        kill_group(self.proc, grace=1.0)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if not self.keep_workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)  # the step never ran here


class Prewarmer:
    """Starts eligible steps early; the engine decides when."""

    def __init__(
        self, settings: Settings, store: ObjectStore, sandbox: Sandbox, images: StepEnvironments
    ) -> None:
        self.settings = settings
        self.store = store
        self.sandbox = sandbox
        self.images = images

    def eligible(self, step: StepDef) -> bool:
        """Whether ``step`` can start warm."""
        args = step.arguments
        if step.type != "Processing":
            return False
        app = args.get("AppSpecification", {})
        entry = app.get("ContainerEntrypoint", [])
        if not (is_static(app.get("ImageUri")) and is_static(entry) and len(entry) >= 2):
            return False
        if str(entry[0]).rsplit("/", 1)[-1] not in PYTHON_NAMES or not str(entry[1]).endswith(
            ".py"
        ):
            return False
        if not (is_static(args.get("Environment")) and is_static(args.get("NetworkConfig"))):
            return False
        inputs = args.get("ProcessingInputs", [])
        if not all(is_static((i.get("S3Input") or {}).get("LocalPath")) for i in inputs):
            return False
        try:  # only a built environment: a warm start never waits for a build
            env = self.images.cached(str(app.get("ImageUri", "")))
        except SagepipeError:
            return False
        return env is not None and env.kind in WARM_KINDS and self._code_input(step) is not None

    def _code_input(self, step: StepDef) -> dict[str, Any] | None:
        script = str(step.arguments["AppSpecification"]["ContainerEntrypoint"][1])
        for inp in step.arguments.get("ProcessingInputs", []):
            s3 = inp.get("S3Input") or {}
            local = str(s3.get("LocalPath", "")).rstrip("/")
            if script.startswith(local + "/") and is_static(s3.get("S3Uri")):
                return dict(inp)
        return None

    def start(self, step: StepDef, workspace: Path) -> Warm | None:
        """Launch ``step``'s sandbox and launcher; None when anything is off."""
        # the job and staging modules load with the first step that starts a process
        from sagepipe.engine.jobs import base_env, job_spec
        from sagepipe.engine.processing import host_path
        from sagepipe.engine.staging import stage_input

        args = step.arguments
        try:
            code = self._code_input(step)
            assert code is not None
            workspace.mkdir(parents=True, exist_ok=True)
            for inp in args.get("ProcessingInputs", []):
                host_path(workspace, str(inp["S3Input"]["LocalPath"])).mkdir(
                    parents=True, exist_ok=True
                )
            s3 = code["S3Input"]
            stage_input(
                self.store,
                str(s3["S3Uri"]),
                host_path(workspace, s3["LocalPath"]),
                s3.get("S3DataType", "S3Prefix"),
            )
            for out in (args.get("ProcessingOutputConfig") or {}).get("Outputs", []):
                host_path(workspace, out["S3Output"]["LocalPath"]).mkdir(
                    parents=True, exist_ok=True
                )
            app = args["AppSpecification"]
            script = host_path(workspace, str(app["ContainerEntrypoint"][1]))
            environment = self.images.cached(str(app.get("ImageUri", "")))
            assert environment is not None and environment.kind in WARM_KINDS
            env = base_env(
                environment,
                {k: str(v) for k, v in (args.get("Environment") or {}).items()},
                self.settings.env,
            )
            network = not (args.get("NetworkConfig") or {}).get("EnableNetworkIsolation", False)
            imports = json.dumps(top_level_imports(script))
            argv = [str(environment.python), self.sandbox.program(LAUNCHER), imports]
            cluster = (args.get("ProcessingResources") or {}).get("ClusterConfig") or {}
            limits = limits_for(cluster.get("InstanceType"))
            spec = job_spec(
                self.settings, argv, env, workspace, CONTAINER_ROOT, network, environment, limits
            )
            proc = self.sandbox.launch(
                spec, subprocess.PIPE, subprocess.PIPE, stdin=subprocess.PIPE
            )
        except (SagepipeError, OSError, KeyError, AssertionError):
            return None
        return Warm(proc, workspace, {str(code.get("InputName"))}, self.settings.keep_workspace)
