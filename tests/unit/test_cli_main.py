"""The command line builds only the command it names: same help, same errors, fewer imports."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from sagepipe.cli import main
from sagepipe.cli.main import COMMANDS, build_app, invoked_command, run_cli

SUBCOMMANDS = {
    "executions": ["list", "describe", "steps", "result", "stop", "retry", "logs"],
    "models": ["list"],
    "bucket": ["put", "init", "ls", "pull", "push"],
    "images": ["list", "build", "doctor"],
}
# Only usage errors and help: none of these reaches a command's body.
ARGVS = [
    ["--help"],
    ["--debug", "--help"],
    ["--help", "run"],
    ["nope"],
    ["--bogus"],
    ["run", "--debug", "--help"],
]
for name in COMMANDS:
    ARGVS += [[name, "--help"], ["--debug", name, "--help"], [name, "--bogus"]]
    ARGVS += [[name]] if name in SUBCOMMANDS else [[name, "a", "b", "c", "d"]]
    for sub in SUBCOMMANDS.get(name, []):
        ARGVS += [[name, sub, "--help"], [name, sub, "--bogus"], [name, "nope"]]


def _names(app: typer.Typer) -> list[str]:
    commands = [main._name(c) for c in app.registered_commands]
    return [*commands, *(str(g.name) for g in app.registered_groups)]


def test_the_table_names_every_command_of_the_app_and_its_module() -> None:
    assert sorted(_names(build_app())) == sorted(COMMANDS)
    for name, module in COMMANDS.items():
        alone = build_app(name)
        assert _names(alone) == [name]
        where = f"sagepipe.cli.{module}"
        if alone.registered_commands:
            (command,) = alone.registered_commands
            assert command.callback is not None and command.callback.__module__ == where
        else:  # a group: its Typer is defined in that module
            (group,) = alone.registered_groups
            assert group.typer_instance is getattr(sys.modules[where], f"{name}_app")


def test_building_twice_registers_nothing_twice() -> None:
    first, second = build_app(), build_app()
    assert _names(first) == _names(second)
    group = next(g for g in second.registered_groups if g.name == "executions")
    assert group.typer_instance is not None
    assert _names(group.typer_instance).count("logs") == 1


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["run", "-q"], "run"),
        (["--debug", "run"], "run"),
        (["--debug", "--debug", "bucket", "ls"], "bucket"),
        (["--help", "run"], None),
        (["run-away"], None),
        ([], None),
        (["--debug"], None),
        (["-q", "run"], None),
    ],
)
def test_the_command_a_line_names(args: list[str], command: str | None) -> None:
    assert invoked_command(args) == command


def _outcome(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = run_cli(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_and_usage_errors_match_the_whole_app(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = {tuple(a): _outcome(capsys, a) for a in ARGVS}
    monkeypatch.setattr(main, "invoked_command", lambda args: None)
    whole = {tuple(a): _outcome(capsys, a) for a in ARGVS}
    assert lazy == whole
    code, out, _ = lazy[("run", "--help")]
    assert code == 0 and "run [OPTIONS] [pipeline]" in out and "--skip-unsupported" in out
    code, _, err = lazy[("run", "--bogus")]
    assert code == 1 and "No such option: --bogus" in err and " run --help')" in err
    code, out, _ = lazy[("--help",)]
    assert code == 0 and all(f"  {name} " in out for name in COMMANDS)


def _modules_after(code: str, cwd: Path) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_command_line_loads_no_command(tmp_path: Path) -> None:
    loaded = _modules_after("import sagepipe.cli.main", tmp_path)
    assert not {m for m in loaded if m.startswith(("rich", "sagepipe.engine", "dotenv"))}
    assert not {m for m in loaded if m.startswith("sagepipe.cli.") and m != "sagepipe.cli.main"} - {
        "sagepipe.cli.consoles"
    }
    assert "sagepipe.definition" not in loaded and "logging" not in loaded
    assert "typer" not in loaded  # imported by entry(), after it slows the collector down


def test_a_command_line_loads_only_its_command(tmp_path: Path) -> None:
    code = "from sagepipe.cli.main import run_cli\nrun_cli(['run', '--help'])"
    loaded = _modules_after(code, tmp_path)
    assert "sagepipe.cli.run" in loaded
    others = {f"sagepipe.cli.{m}" for m in set(COMMANDS.values()) - {"run"}}
    assert not others & loaded
    whole = _modules_after("from sagepipe.cli.main import run_cli\nrun_cli(['--help'])", tmp_path)
    assert others <= whole


def test_warnings_are_rendered_as_richs_log_handler_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    from sagepipe.cli.logs import configure_logging

    try:
        configure_logging(debug=False)
        logging.getLogger("sagepipe.test").warning("the bucket %s is [not] there", "b")
        logging.getLogger("botocore.test").warning("retrying")  # quieted
        got = capsys.readouterr().err
        reference = RichHandler(
            console=Console(stderr=True, soft_wrap=True, width=200),
            show_path=False,
            show_time=False,
            markup=False,
        )
        reference.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord(
            "sagepipe.test",
            logging.WARNING,
            __file__,
            1,
            "the bucket %s is [not] there",
            ("b",),
            None,
        )
        reference.handle(record)
        assert got == capsys.readouterr().err
        assert "WARNING  the bucket b is [not] there" in got and "retrying" not in got
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def test_a_console_without_colours_skips_highlighting_and_prints_the_same(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console
    from rich.highlighter import NullHighlighter, ReprHighlighter

    from sagepipe.cli.consoles import _DeferredConsole, real_console

    text = "execution [bold]abc123[/] of p (bwrap sandbox, 'local' store) 1.5 s3://b/k <x> :+1:"
    ours = _DeferredConsole(stderr=False)
    ours.print(text)
    got = capsys.readouterr().out
    Console(soft_wrap=True, width=200, emoji=False).print(text)
    assert got == capsys.readouterr().out
    assert got.endswith("<x> :+1:\n")  # no emoji codes: a name is printed as it is
    assert isinstance(real_console(ours).highlighter, NullHighlighter)  # type: ignore[arg-type]
    monkeypatch.setenv("FORCE_COLOR", "1")  # colours even into a pipe: highlighted as before
    coloured = _DeferredConsole(stderr=False)
    coloured.print(text)
    got = capsys.readouterr().out
    Console(soft_wrap=True, width=200, emoji=False).print(text)
    assert got == capsys.readouterr().out and "\x1b[" in got
    assert isinstance(real_console(coloured).highlighter, ReprHighlighter)  # type: ignore[arg-type]


_EXIT = """
import atexit, pathlib, sys, threading, time
from sagepipe.cli.main import entry
mark = pathlib.Path(sys.argv[1])
atexit.register(lambda: mark.with_suffix(".atexit").write_text("ran"))
if sys.argv[2] == "thread":  # a thread the interpreter waits for: it must finish
    def late() -> None:
        time.sleep(0.5)
        mark.with_suffix(".thread").write_text("done")
    threading.Thread(target=late).start()
sys.stdout.write("x" * 200_000)  # buffered output must be flushed
sys.argv = ["sagepipe", *sys.argv[3:]]
entry()
"""


@pytest.mark.parametrize("thread", ["none", "thread"])
@pytest.mark.parametrize(("argv", "code"), [(["images", "list"], 0), (["run", "nope.py"], 1)])
def test_the_process_ends_as_python_would(
    tmp_path: Path, thread: str, argv: list[str], code: int
) -> None:
    """The exit skips tearing modules down, nothing else: exit code, flushed output, atexit
    hooks, and the threads the interpreter waits for all stay as a plain exit has them."""
    mark = tmp_path / "mark"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT, str(mark), thread, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"SAGEPIPE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith("x" * 200_000)
    if code == 0:
        assert len(done.stdout) > 200_000  # the command's own output, after ours
    else:
        assert done.stderr.startswith("error: pipeline file 'nope.py' not found")
    assert (tmp_path / "mark.atexit").read_text() == "ran"
    if thread == "thread":
        assert (tmp_path / "mark.thread").read_text() == "done"
