"""The ``sagepipe`` command and its error boundary.

Exit codes: 0 ok, 1 a user error (one line on stderr), 2 an internal error (one line; the
traceback with ``--debug``).
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import TYPE_CHECKING

from sagepipe.cli.consoles import err, escape
from sagepipe.errors import SagepipeError

if TYPE_CHECKING:
    import typer
    from typer.models import CommandInfo

HELP = "Author SageMaker pipelines, run them locally in seconds, deploy them to SageMaker."

# Each top-level command or group, and the module of sagepipe.cli that registers it, in the
# order `sagepipe --help` lists them: a command line naming one imports and builds only that
# one (tests/unit/test_cli_main.py checks this table against the whole app).
COMMANDS = {
    "definition": "pipeline",
    "validate": "pipeline",
    "graph": "pipeline",
    "run": "run",
    "executions": "executions",
    "logs": "executions",
    "models": "models",
    "predict": "models",
    "deploy": "deploy",
    "serve": "serve",
    "bucket": "bucket",
    "images": "images",
    "doctor": "doctor",
}
MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def build_app(command: str | None = None) -> typer.Typer:
    """The ``sagepipe`` app: every command, or only ``command`` (a key of COMMANDS).

    Building a command costs its module's imports and typer's reading of its signature; a
    command line that names one needs no other.
    """
    import typer

    from sagepipe.cli.root import main

    app = typer.Typer(
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,  # plain help: rich's help formatter costs more than the command
    )
    app.callback()(main)
    for module in MODULES if command is None else (COMMANDS[command],):
        importlib.import_module(f"sagepipe.cli.{module}").register(app)
    if command is not None:
        app.registered_commands = [c for c in app.registered_commands if _name(c) == command]
        app.registered_groups = [g for g in app.registered_groups if g.name == command]
    return app


def _name(info: CommandInfo) -> str:
    """A registered command's name, as typer derives it."""
    if info.name:
        return info.name
    from typer.main import get_command_name

    assert info.callback is not None
    return get_command_name(info.callback.__name__)


def invoked_command(args: list[str]) -> str | None:
    """The command ``args`` run when only ``--debug`` comes before it; else None (then
    anything can happen: help, a usage error, completion) and the whole app is built."""
    for arg in args:
        if arg != "--debug":
            return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole app, built on first use
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _error(message: str, debug: bool, label: str = "error") -> None:
    if debug:
        err.print_exception()
    err.print(f"[red]{label}[/]: {escape(' '.join(message.split()))}", highlight=False)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command line; map every outcome to an exit code and at most one error line."""
    import typer  # here, not at the top: see entry()

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app = build_app(invoked_command(args))
        result = app(args=args, standalone_mode=False)
        if isinstance(result, int):  # click returns Exit codes when not standalone
            return result
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except typer.TyperException as exc:  # click's usage errors: bad options or arguments
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
            sys.stdout.write(exc.format_message().rstrip("\n") + "\n")
            return 0
        where = getattr(getattr(exc, "ctx", None), "command_path", "sagepipe")
        _error(f"{exc.format_message()} (see '{where} --help')", debug)
        return 1
    except SagepipeError as exc:
        _error(str(exc), debug)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):  # one translation, even if one slipped by
            from sagepipe.storage.aws import translate_aws_error

            _error(str(translate_aws_error(exc, "AWS")), debug)
            return 1
        _error(
            f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            debug,
            "internal error",
        )
        return 2
    return 0


def entry() -> None:
    """Console script."""
    # Start-up makes tens of thousands of objects that live until the process ends (typer,
    # the commands, the pipeline, the engine): the garbage collector's default pace (every
    # 700 new objects) walks them again and again, for nothing. A slower pace for this
    # process; collections still happen.
    gc.set_threshold(100_000)
    code = run_cli()
    if not _history_open():
        # The process ends here. Python's last garbage collections would walk every object
        # the command made, modules included (a tenth of a fully cached rerun); frozen, they
        # are skipped. What needs closing is closed: a history connection left open (which a
        # collection would close) keeps them; atexit hooks (temporary folders) still run.
        gc.freeze()
        if not _threads_left():
            _exit_now(code)
    sys.exit(code)


def _threads_left() -> bool:
    """Whether a thread the interpreter would wait for at exit still runs."""
    import threading

    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def _exit_now(code: int) -> None:
    """End the process as the interpreter's exit would when nothing is left to wait for (no
    thread, no history connection open): atexit hooks run (temporary folders, logging) and
    the output is flushed; what is skipped is tearing down every module one by one, about 8 ms
    of a fully cached rerun, which no sagepipe object needs (files are closed by their `with`
    blocks, histories by their owners)."""
    import atexit
    import contextlib
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing reaches it
            stream.flush()
    os._exit(code)


def _history_open() -> bool:
    history = sys.modules.get("sagepipe.engine.history")  # not imported: none was opened
    return history is not None and bool(history.any_open())
