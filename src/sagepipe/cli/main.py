"""The ``sagepipe`` command and its error boundary.

Exit codes: 0 ok, 1 a user error (one line on stderr), 2 an internal error (one line; the
traceback with ``--debug``).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from sagepipe.cli import bucket, deploy, executions, images, models, pipeline, run, serve
from sagepipe.cli.consoles import err, escape, real_console
from sagepipe.cli.doctor import doctor_command
from sagepipe.cli.state import CliState
from sagepipe.errors import SagepipeError

app = typer.Typer(
    help="Author SageMaker pipelines, run them locally in seconds, deploy them to SageMaker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's help formatter costs more than the command
)


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """sagepipe."""
    ctx.obj = CliState(debug=debug)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[
            RichHandler(console=real_console(err), show_path=False, show_time=False, markup=False)
        ],
        force=True,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        # their retry warnings are noise: the error that follows says what went wrong
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.ERROR)


pipeline.register(app)
run.register(app)
executions.register(app)
models.register(app)
deploy.register(app)
serve.register(app)
app.add_typer(bucket.bucket_app, name="bucket")
app.add_typer(images.images_app, name="images")
app.command("doctor")(doctor_command)


def _error(message: str, debug: bool, label: str = "error") -> None:
    if debug:
        err.print_exception()
    err.print(f"[red]{label}[/]: {escape(' '.join(message.split()))}", highlight=False)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command line; map every outcome to an exit code and at most one error line."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
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
    sys.exit(run_cli())
