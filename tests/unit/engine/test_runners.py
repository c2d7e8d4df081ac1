"""Step types map to their runners; a runner's module loads when a step of its type runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sagepipe.engine.control import run_condition, run_fail, run_model, run_register_model
from sagepipe.engine.engine import RUNNERS
from sagepipe.engine.functions import run_training_step
from sagepipe.engine.processing import run_processing
from sagepipe.engine.transform import run_transform


def test_each_step_type_has_its_runner_in_the_order_messages_name_them() -> None:
    assert dict(RUNNERS) == {
        "Processing": run_processing,
        "Training": run_training_step,
        "Condition": run_condition,
        "Fail": run_fail,
        "RegisterModel": run_register_model,
        "Model": run_model,
        "CreateModel": run_model,
        "Transform": run_transform,
    }
    assert "Processing" in RUNNERS and "EMR" not in RUNNERS and 3 not in RUNNERS
    assert len(RUNNERS) == 8
    with pytest.raises(KeyError):
        RUNNERS["EMR"]


def test_runner_modules_load_on_first_use() -> None:
    code = (
        "import sys, json\n"
        "from sagepipe.engine.engine import RUNNERS\n"
        "names = ('processing', 'functions', 'training', 'transform', 'rerun', 'control')\n"
        "before = [n for n in names if f'sagepipe.engine.{n}' in sys.modules]\n"
        "RUNNERS['Condition']\n"
        "after = [n for n in names if f'sagepipe.engine.{n}' in sys.modules]\n"
        "loaded = [m for m in ('cloudpickle', 'sagepipe.definition.functions', 'gzip') "
        "if m in sys.modules]\n"
        "print(json.dumps([before, after, loaded]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, loaded = json.loads(done.stdout)
    assert before == []
    assert after == ["control"]
    assert loaded == []  # compiling a pipeline without function steps needs no pickling
