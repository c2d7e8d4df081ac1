"""Prepare a function step's training job before the SDK's invoke_function runs it.

Runs inside the job (``function_job_driver.sh``), on the image's Python, standard library only.
It reads the same ContainerArguments invoke_function does and:

1. refuses to run when the job's Python ``major.minor`` differs from the one the payload was
   pickled with (``--client_python_version``): cloudpickle's code objects are version-bound;
2. runs ``pre_exec.sh`` from the ``pre_exec_script_and_dependencies`` channel, when present;
3. installs the channel's requirements file (``--dependency_settings``) with pip, which also
   brings the SageMaker SDK that invoke_function needs.

A failure is written to ``/opt/ml/output/failure`` (SageMaker's FailureReason) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

OPT_ML = "/opt/ml"
CHANNEL = "pre_exec_script_and_dependencies"
PRE_EXEC = "pre_exec.sh"


class BootstrapError(Exception):
    """The job cannot run the function; the message becomes the failure reason."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The arguments this program reads; invoke_function's own are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--client_python_version", type=str, default=None)
    parser.add_argument("--dependency_settings", type=str, default=None)
    args, _ = parser.parse_known_args(argv)
    return args


def check_python(client_version: str | None, job_version: str) -> None:
    """Raise when the job's ``major.minor`` is not the client's."""
    if client_version and client_version.strip() != job_version:
        raise BootstrapError(
            f"the job runs Python {job_version} but the function was pickled with Python "
            f"{client_version}: use an image with Python {client_version}"
        )


def dependency_file(settings: str | None) -> str | None:
    """The requirements file named by ``--dependency_settings`` (JSON), or None."""
    if not settings:
        return None
    try:
        value = json.loads(settings)
    except ValueError:
        raise BootstrapError(f"--dependency_settings is not JSON: {settings!r}") from None
    name = value.get("dependency_file") if isinstance(value, dict) else None
    if name is None:
        return None
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise BootstrapError(f"dependency_file {name!r} is not a file name")
    return name


def run(command: list[str], cwd: str, what: str) -> None:
    """Run ``command``, streaming its output; raise naming ``what`` when it fails."""
    print("INFO: " + " ".join(command), flush=True)
    code = subprocess.call(command, cwd=cwd)
    if code != 0:
        raise BootstrapError(f"{what} failed with exit code {code}")


def prepare(argv: list[str], opt_ml: str = OPT_ML) -> None:
    """Check the Python version, run the pre-execution script, install the requirements."""
    args = parse_args(argv)
    job_version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    check_python(args.client_python_version, job_version)
    channel = os.path.join(opt_ml, "input", "data", CHANNEL)
    script = os.path.join(channel, PRE_EXEC)
    if os.path.isfile(script):
        run(["/bin/bash", script], channel, "the pre-execution script")
    name = dependency_file(args.dependency_settings)
    if name is not None:
        path = os.path.join(channel, name)
        if not os.path.isfile(path):
            raise BootstrapError(f"dependency file {path} is missing from the job")
        run([sys.executable, "-m", "pip", "install", "-r", path], channel, "pip install")


def main(argv: list[str] | None = None, opt_ml: str = OPT_ML) -> int:
    """Prepare the job; 0 when ready, 1 with the reason in ``/opt/ml/output/failure``."""
    try:
        prepare(sys.argv[1:] if argv is None else argv, opt_ml)
    except BootstrapError as exc:
        message = f"ERROR: {exc}"
        print(message, file=sys.stderr, flush=True)
        failure = os.path.join(opt_ml, "output", "failure")
        try:
            os.makedirs(os.path.dirname(failure), exist_ok=True)
            with open(failure, "w") as fh:
                fh.write(message + "\n")
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
