"""Selective executions: only the selected steps run; what they need comes from a reference.

Runs the pipeline of tests/integration/rerun_pipeline.py through the CLI, in process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagepipe.cli.main import run_cli
from sagepipe.config import Settings
from sagepipe.engine.history import History, StepRecord
from tests.integration.rerun_pipeline import set_mode, write_project


@pytest.fixture
def settings_(project: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(project)
    settings = write_project(project)
    set_mode(settings, "ok")
    return settings


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(["run", "rerun.py", "--sandbox", "process", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _newest(settings: Settings) -> str:
    return History(settings.history_path).executions("rerun")[0].id


def _steps(settings: Settings, execution_id: str) -> dict[str, StepRecord]:
    return {s.name: s for s in History(settings.history_path).steps(execution_id)}


def _store_text(settings: Settings, step: StepRecord) -> str:
    uri = step.properties["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    folder = settings.local_store_root / uri.removeprefix("s3://")
    return (folder / "r").read_text()


def test_selected_steps_run_and_the_others_come_from_the_reference(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys)[0] == 0
    reference = _newest(settings_)
    set_mode(settings_, "second")
    code, table, err = _run(capsys, "--steps", "work")
    assert code == 0, table + err
    selective = _newest(settings_)
    assert f"selective: runs work; reference {reference}" in err
    steps = _steps(settings_, selective)
    assert set(steps) == {"first", "work"}  # downstream of the selection does not run
    assert steps["first"].attempts == 0
    assert steps["first"].metadata["_selective_source"].endswith(f"/execution/{reference}")
    assert steps["work"].attempts == 1 and _store_text(settings_, steps["work"]) == "second"
    assert f"from reference {reference} (not run)" in table
    run_cli(["executions", "describe", selective])
    desc = json.loads(capsys.readouterr().out)
    assert desc["SelectiveExecutionConfig"]["SelectedSteps"] == [{"StepName": "work"}]
    assert desc["SelectiveExecutionConfig"]["SourcePipelineExecutionArn"].endswith(reference)
    run_cli(["executions", "steps", selective, "--json"])
    listed = {
        s["StepName"]: s for s in json.loads(capsys.readouterr().out)["PipelineExecutionSteps"]
    }
    assert "AttemptCount" not in listed["first"]
    assert listed["first"]["SelectiveExecutionResult"]["SourcePipelineExecutionArn"].endswith(
        reference
    )


def test_from_runs_the_step_and_everything_after_it(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys)[0] == 0
    set_mode(settings_, "third")
    code, table, err = _run(capsys, "--from", "work")
    assert code == 0, table + err
    steps = _steps(settings_, _newest(settings_))
    assert {n: s.attempts for n, s in steps.items()} == {
        "first": 0,
        "work": 1,
        "check": 1,
        "yes": 1,
    }
    assert _store_text(settings_, steps["yes"]) == "third+"


def test_from_a_step_in_a_condition_branch_needs_the_branch_taken_in_the_reference(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "--parameter", "Branch=no")[0] == 0
    took_else = _newest(settings_)
    code, _, err = _run(capsys, "--from", "yes", "--reference", took_else)
    assert code == 1
    assert (
        f"reference {took_else}: step 'yes' is in the IfSteps of condition 'check', which "
        "evaluated to False there; select 'check' too (--from check)"
    ) in err
    assert len(err.strip().splitlines()) == 1
    # The newest execution that took the if branch is found without --reference.
    assert _run(capsys)[0] == 0
    took_if = _newest(settings_)
    code, table, err = _run(capsys, "--from", "yes")
    assert code == 0, table + err
    steps = _steps(settings_, _newest(settings_))
    assert {n for n, s in steps.items() if s.attempts == 0} == {"first", "work", "check"}
    assert steps["check"].metadata["_selective_source"].endswith(took_if)
    assert _store_text(settings_, steps["yes"]) == "ok+"


def test_a_reference_without_a_needed_step_is_refused_and_skipped_by_default(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "--steps", "check")
    assert code == 1 and "no execution of 'rerun' can be the reference" in err
    assert "none has ended" in err
    assert _run(capsys)[0] == 0
    good = _newest(settings_)
    set_mode(settings_, "fail")
    assert _run(capsys)[0] == 1
    failed = _newest(settings_)
    code, _, err = _run(capsys, "--steps", "check,yes", "--reference", failed)
    assert code == 1
    assert f"reference {failed}: step 'work', which the selected steps need, Failed there" in err
    code, table, err = _run(capsys, "--steps", "check,yes")
    assert code == 0, table + err
    assert f"reference {good}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "wrok"], "no step 'wrok' (did you mean work?); steps are: first, work"),
        (["--steps", "first,check"], "step 'work' lies between the selected steps"),
        (["--steps", "work", "--from", "work"], "give --steps or --from, not both"),
        (["--reference", "abc"], "--reference goes with --steps or --from"),
        (["--from", "work", "--reference", "nosuchexecution"], "no local execution"),
    ],
)
def test_bad_selections_are_one_line(
    settings_: Settings, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 1, out + err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not History(settings_.history_path).executions("rerun")


def test_a_reference_of_another_pipeline_is_refused(
    settings_: Settings, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (project / "rerun.py").read_text().replace('Pipeline("rerun"', 'Pipeline("other"')
    (project / "other.py").write_text(text)
    assert run_cli(["run", "other.py", "--sandbox", "process"]) == 0
    other = History(settings_.history_path).executions("other")[0].id
    capsys.readouterr()
    code, _, err = _run(capsys, "--steps", "work", "--reference", other)
    assert code == 1
    assert f"execution {other} is of pipeline 'other', not 'rerun'" in err


def test_a_changed_upstream_output_is_refused(
    settings_: Settings, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys)[0] == 0
    reference = _newest(settings_)
    text = (project / "rerun.py").read_text()
    renamed = text.replace('output_name="out"', 'output_name="result"').replace(
        'Outputs["out"]', 'Outputs["result"]'
    )
    (project / "rerun.py").write_text(renamed)
    code, _, err = _run(capsys, "--steps", "check,yes", "--reference", reference)
    assert code == 1
    assert "step 'work' had no ProcessingOutputConfig.Outputs result then" in err


def test_retrying_a_selective_execution_keeps_its_selection(
    settings_: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys)[0] == 0
    reference = _newest(settings_)
    set_mode(settings_, "fail")
    assert _run(capsys, "--steps", "work")[0] == 1
    selective = _newest(settings_)
    set_mode(settings_, "fixed")
    assert run_cli(["executions", "retry", selective, "--quiet"]) == 0, capsys.readouterr()
    steps = _steps(settings_, selective)
    assert set(steps) == {"first", "work"}
    assert steps["first"].metadata["_selective_source"].endswith(reference)
    assert (steps["work"].status, steps["work"].attempts) == ("Succeeded", 2)
    assert _store_text(settings_, steps["work"]) == "fixed"
