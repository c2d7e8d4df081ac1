"""Warm-start launcher: import a script's modules early, then run the script as ``__main__``.

Started by the engine while the step's upstream still runs::

    python launcher.py '["pandas", "sklearn.ensemble"]'

It imports those modules (failures are ignored: the script will meet them itself), then waits
for one JSON line on stdin: ``{"argv": [script, ...], "env": {...}, "cwd": "..."}``. It then
becomes ``python script ...``: environment, working directory, ``sys.argv``, ``sys.path[0]``
and a traceback that shows the script's frames only. An empty line means "not needed": exit 0.

It runs on every Python the image catalogue names, down to 3.6 (XGBoost 0.90-2): no
``from __future__ import annotations``, typing generics only.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import contextlib
import json
import os
import runpy
import sys
import traceback
from types import TracebackType
from typing import Any, Dict, List, Optional


def preload(modules: List[str]) -> None:
    """Import ``modules``, ignoring any that fail."""
    for module in modules:
        with contextlib.suppress(BaseException):  # the script meets it itself if it matters
            __import__(module)


def become(message: Dict[str, Any]) -> str:
    """Take on the step's environment, directory and arguments; return the script path."""
    argv = [str(a) for a in message["argv"]]
    env = {str(k): str(v) for k, v in message["env"].items()}
    os.environ.clear()
    os.environ.update(env)
    os.chdir(str(message["cwd"]))
    sys.argv = argv
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    return argv[0]


def script_frames(tb: Optional[TracebackType], script: str) -> Optional[TracebackType]:
    """The traceback from the first frame of ``script`` on (the launcher's frames dropped)."""
    target = os.path.abspath(script)
    current = tb
    while current is not None:
        if os.path.abspath(current.tb_frame.f_code.co_filename) == target:
            return current
        current = current.tb_next
    return tb


def run(script: str) -> int:
    """Run ``script`` as ``__main__``; an uncaught exception prints as Python would."""
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:  # reported as the interpreter would
        tb = script_frames(exc.__traceback__, script)
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
        return 1
    return 0


def main(args: List[str]) -> int:
    """Preload, wait for the command, run it."""
    preload([str(m) for m in json.loads(args[0])] if args else [])
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    script = become(json.loads(line))
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - stays open for the script, as python's would
    return run(script)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
