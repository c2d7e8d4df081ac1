"""Model serving and the batch agent run for real: ``batch_transform.py`` on image environments.

Each test lays out ``/opt/ml`` in a temporary folder (a model under ``model/``, input files under
``transform/input``, the job's settings in ``transform/job.json``), runs the program as a
subprocess on the image's environment and compares ``transform/output/<file>.out`` with what the
environment's own library predicts for the same rows.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sagepipe.images import Environment
from tests.conftest import ROOT

PROGRAM = ROOT / "src" / "sagepipe" / "container" / "batch_transform.py"


def rows(n: int, seed: int) -> list[list[float]]:
    """Abalone-like features: eight measurements."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        length = round(rnd.uniform(0.1, 0.8), 3)
        out.append([float(rnd.choice([0, 1, 2])), length, round(length * 0.8, 3),
                    round(length * 0.3, 3), round(length**3 * 2, 4), round(length**3, 4),
                    round(length**3 * 0.4, 4), round(length**3 * 0.6, 4)])  # fmt: skip
    return out


def as_csv(data: list[list[float]]) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in data)


def python(env: Environment, code: str) -> str:
    done = subprocess.run(
        env.argv(["python", "-c", textwrap.dedent(code)]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def xgb_model(xgb17: Environment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.7-1 regression booster saved as the image saves it (``xgboost-model``, binary)."""
    folder = tmp_path_factory.mktemp("xgb-model")
    python(
        xgb17,
        f"""
        import numpy as np, xgboost as xgb
        rng = np.random.RandomState(0)
        x = rng.uniform(0, 1, (300, 8))
        y = 3 + 15 * x[:, 1] + 5 * x[:, 4] + rng.normal(0, 0.5, 300)
        booster = xgb.train({{"max_depth": 3, "eta": 0.3}}, xgb.DMatrix(x, label=y), 10)
        booster.save_model({str(folder / "xgboost-model")!r})
        """,
    )
    return folder / "xgboost-model"


def expected(env: Environment, model: Path, csv_text: str) -> list[str]:
    """The environment's own predictions for ``csv_text``, one ``str(float)`` per row."""
    out = python(
        env,
        f"""
        import io, numpy as np, xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(model)!r})
        x = np.loadtxt(io.StringIO({csv_text!r}), delimiter=",", ndmin=2)
        print("\\n".join(map(str, b.predict(xgb.DMatrix(x)).tolist())))
        """,
    )
    return out.splitlines()


def layout(
    root: Path, job: dict[str, Any], files: dict[str, str | bytes], model: Path | None
) -> Path:
    (root / "model").mkdir(parents=True)
    if model is not None:
        (root / "model" / "xgboost-model").write_bytes(model.read_bytes())
    for rel, content in files.items():
        path = root / "transform" / "input" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (root / "transform" / "output").mkdir(parents=True)
    (root / "transform" / "job.json").write_text(json.dumps(job))
    return root


def transform(
    env: Environment, root: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.argv(["python", str(PROGRAM), "--root", str(root)]),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(extra or {})},
    )


def output(root: Path, rel: str) -> list[str]:
    return (root / "transform" / "output" / (rel + ".out")).read_text().splitlines()


CSV_LINES = {"ContentType": "text/csv", "SplitType": "Line", "AssembleWith": "Line"}


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
def test_csv_lines_give_the_environment_s_predictions_line_by_line(
    xgb17: Environment, xgb_model: Path, tmp_path: Path, strategy: str
) -> None:
    data = as_csv(rows(50, 1))
    job = {**CSV_LINES, "BatchStrategy": strategy, "MaxPayloadInMB": 0.0005}  # ~10 rows a batch
    root = layout(tmp_path, job, {"test.csv": data, "more/part-1.csv": data}, xgb_model)
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    want = expected(xgb17, xgb_model, data)
    assert output(root, "test.csv") == want
    assert output(root, "more/part-1.csv") == want
    assert "transformed test.csv (50 records)" in done.stdout


def test_a_whole_file_with_no_split_is_one_invocation(
    xgb17: Environment, xgb_model: Path, tmp_path: Path
) -> None:
    data = as_csv(rows(20, 2))
    root = layout(tmp_path, {"ContentType": "text/csv"}, {"test.csv": data}, xgb_model)
    assert transform(xgb17, root).returncode == 0
    assert output(root, "test.csv") == expected(xgb17, xgb_model, data)


def test_libsvm_and_gzip_input(xgb17: Environment, xgb_model: Path, tmp_path: Path) -> None:
    import gzip

    data = rows(30, 3)
    libsvm = "".join(
        "0 " + " ".join(f"{i + 1}:{v:g}" for i, v in enumerate(r)) + "\n" for r in data
    )
    job = {"ContentType": "text/libsvm", "SplitType": "Line", "CompressionType": "Gzip"}
    root = layout(tmp_path, job, {"test.libsvm.gz": gzip.compress(libsvm.encode())}, xgb_model)
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert output(root, "test.libsvm.gz") == expected(xgb17, xgb_model, as_csv(data))


def test_csv_filters_and_join_keep_the_id_and_the_prediction(
    xgb17: Environment, xgb_model: Path, tmp_path: Path
) -> None:
    data = rows(25, 4)
    with_ids = "".join(f"id{i}," + ",".join(f"{v:g}" for v in r) + "\n" for i, r in enumerate(data))
    job = {
        **CSV_LINES,
        "BatchStrategy": "MultiRecord",
        "DataProcessing": {
            "InputFilter": "$[1:]",
            "JoinSource": "Input",
            "OutputFilter": "$[0,-1]",
        },
    }
    root = layout(tmp_path, job, {"test.csv": with_ids}, xgb_model)
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    want = [f"id{i},{p}" for i, p in enumerate(expected(xgb17, xgb_model, as_csv(data)))]
    assert output(root, "test.csv") == want


def test_json_lines_join_under_sagemaker_output(sklearn_env: Environment, tmp_path: Path) -> None:
    code = tmp_path / "root" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(
        textwrap.dedent(
            """
            import json, os

            class Model:
                def __init__(self, factor):
                    self.factor = factor
                def predict(self, x):
                    return x.sum(axis=1) * self.factor

            def model_fn(model_dir):
                with open(os.path.join(model_dir, "factor.json")) as fh:
                    return Model(json.load(fh))

            def input_fn(body, content_type):
                import numpy as np
                assert content_type == "application/jsonlines", content_type
                return np.array([json.loads(l)["features"] for l in body.decode().splitlines()])

            def output_fn(prediction, accept):
                return "".join(json.dumps(float(p)) + "\\n" for p in prediction)
            """
        )
    )
    records = "".join(json.dumps({"id": i, "features": [i, 1.5]}) + "\n" for i in range(6))
    job = {
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
        "AssembleWith": "Line",
        "DataProcessing": {"JoinSource": "Input", "OutputFilter": "$['id','SageMakerOutput']"},
        "Program": "inference.py",
        "Framework": "sklearn",
    }
    root = layout(tmp_path / "root", job, {"in.jsonl": records}, None)
    (root / "model" / "factor.json").write_text("2")
    done = transform(sklearn_env, root)
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in output(root, "in.jsonl")]
    assert got == [{"id": i, "SageMakerOutput": (i + 1.5) * 2} for i in range(6)]


def test_a_script_with_model_fn_only_gets_the_toolkit_s_csv_defaults(
    sklearn_env: Environment, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "code").mkdir(parents=True)
    (root / "code" / "serve.py").write_text(
        textwrap.dedent(
            """
            import os, joblib

            def model_fn(model_dir):
                return joblib.load(os.path.join(model_dir, "model.joblib"))
            """
        )
    )
    data = rows(40, 5)
    job = {**CSV_LINES, "Accept": "text/csv", "Program": "serve.py", "Framework": "sklearn"}
    layout(root, job, {"test.csv": as_csv(data)}, None)
    want = python(
        sklearn_env,
        f"""
        import io, joblib, numpy as np
        from sklearn.linear_model import LinearRegression
        x = np.loadtxt(io.StringIO({as_csv(data)!r}), delimiter=",")
        m = LinearRegression().fit(x, x[:, 1] * 3 + 1)
        joblib.dump(m, {str(root / "model" / "model.joblib")!r})
        out = io.StringIO()
        np.savetxt(out, m.predict(x.astype("float32")), delimiter=",", fmt="%s")
        print(out.getvalue(), end="")
        """,
    )
    done = transform(sklearn_env, root)
    assert done.returncode == 0, done.stderr
    assert output(root, "test.csv") == want.splitlines()


def test_a_script_without_model_fn_fails_as_the_toolkit_does(
    sklearn_env: Environment, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "code").mkdir(parents=True)
    (root / "code" / "serve.py").write_text("X = 1\n")
    job = {**CSV_LINES, "Program": "serve.py", "Framework": "sklearn"}
    layout(root, job, {"test.csv": "1,2\n"}, None)
    done = transform(sklearn_env, root)
    assert done.returncode == 1
    assert "Please provide a model_fn implementation." in (root / "output" / "failure").read_text()


def test_an_unknown_content_type_fails_with_the_container_s_415(
    xgb17: Environment, xgb_model: Path, tmp_path: Path
) -> None:
    job = {"ContentType": "application/json", "SplitType": "Line"}
    root = layout(tmp_path, job, {"test.json": "[1, 2]\n"}, xgb_model)
    done = transform(xgb17, root)
    assert done.returncode == 1
    failure = (root / "output" / "failure").read_text()
    assert failure == (
        "ClientError: Bad HTTP status received from algorithm for input test.json: 415 "
        "Unsupported Media Type. application/json is not an accepted ContentType: csv, libsvm, "
        "parquet, recordio-protobuf, text/csv, text/libsvm, text/x-libsvm, "
        "application/x-parquet, application/x-recordio-protobuf."
    )
    assert failure in done.stderr


def test_a_missing_model_fails_with_unable_to_load_model(
    xgb17: Environment, tmp_path: Path
) -> None:
    root = layout(tmp_path, CSV_LINES, {"test.csv": "1,2\n"}, None)
    done = transform(xgb17, root)
    assert done.returncode == 1
    failure = (root / "output" / "failure").read_text()
    assert "500 Internal Server Error. Unable to load model: no model file in" in failure


def test_a_pickled_booster_is_served_and_its_feature_count_checked(
    xgb17: Environment, xgb_model: Path, tmp_path: Path
) -> None:
    pickled = tmp_path / "pickled"
    python(
        xgb17,
        f"""
        import pickle, xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(xgb_model)!r})
        pickle.dump(b, open({str(pickled)!r}, "wb"))
        """,
    )
    data = as_csv(rows(10, 6))
    root = layout(tmp_path / "ok", CSV_LINES, {"t.csv": data}, pickled)
    assert transform(xgb17, root).returncode == 0
    assert output(root, "t.csv") == expected(xgb17, xgb_model, data)
    narrow = layout(tmp_path / "bad", CSV_LINES, {"t.csv": "1,2,3\n"}, pickled)
    assert transform(xgb17, narrow).returncode == 1
    assert (
        "400 Bad Request. Unable to evaluate payload provided: Feature size of csv inference "
        "data 3 is not consistent with feature size of trained model 8."
        in (narrow / "output" / "failure").read_text()
    )


@pytest.mark.parametrize(("version", "averaged"), [("1.7-1", True), ("1.2-1", False)])
def test_several_model_files_are_an_ensemble_from_1_2_2_on(
    xgb17: Environment, xgb_model: Path, tmp_path: Path, version: str, averaged: bool
) -> None:
    data = as_csv(rows(15, 7))
    root = layout(tmp_path, {**CSV_LINES, "ImageVersion": version}, {"t.csv": data}, xgb_model)
    out = python(
        xgb17,
        f"""
        import io, numpy as np, os, xgboost as xgb
        x = np.loadtxt(io.StringIO({data!r}), delimiter=",", ndmin=2)
        first = xgb.Booster()
        first.load_model({str(xgb_model)!r})
        other = xgb.train({{"max_depth": 2}}, xgb.DMatrix(x, label=x[:, 1] * 7), 5)
        other.save_model({str(root / "model" / "other-model")!r})
        names = [n for n in os.listdir({str(root / "model")!r})]
        d = xgb.DMatrix(x)
        if {averaged!r}:
            p = np.mean([first.predict(d), other.predict(d)], axis=0)
        else:
            p = (first if names[0] == "xgboost-model" else other).predict(d)
        print("\\n".join(map(str, p.tolist())))
        """,
    )
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert output(root, "t.csv") == out.splitlines()


@pytest.mark.parametrize(
    ("accept", "line"),
    [
        ("text/csv", '{label},{p},"[0, 1]"'),
        (
            "application/jsonlines",
            '{{"predicted_label": {label}, "labels": [0, 1], "probability": {p}}}',
        ),
    ],
)
def test_selectable_inference_output_answers_the_keys_asked_for(
    xgb17: Environment, tmp_path: Path, accept: str, line: str
) -> None:
    data = as_csv(rows(12, 8))
    model = tmp_path / "classifier"
    probabilities = python(
        xgb17,
        f"""
        import io, numpy as np, xgboost as xgb
        x = np.loadtxt(io.StringIO({data!r}), delimiter=",", ndmin=2)
        y = (x[:, 1] > 0.45).astype(float)
        b = xgb.train({{"objective": "binary:logistic"}}, xgb.DMatrix(x, label=y), 4)
        b.save_model({str(model)!r})
        print("\\n".join(map(str, b.predict(xgb.DMatrix(x)).tolist())))
        """,
    ).splitlines()
    root = layout(tmp_path / "root", {**CSV_LINES, "Accept": accept}, {"t.csv": data}, model)
    done = transform(
        xgb17, root, {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability,labels"}
    )
    assert done.returncode == 0, done.stderr
    want = [line.format(label=int(float(p) > 0.5), p=p) for p in probabilities]
    if accept == "text/csv":  # in the order asked for
        want = [f'{int(float(p) > 0.5)},{p},"[0, 1]"' for p in probabilities]
    assert output(root, "t.csv") == want


def test_an_xgboost_script_with_model_fn_gets_a_dmatrix_and_the_csv_encoder(
    xgb17: Environment, xgb_model: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(
        textwrap.dedent(
            """
            import os, xgboost as xgb

            def model_fn(model_dir):
                booster = xgb.Booster()
                booster.load_model(os.path.join(model_dir, "xgboost-model"))
                return booster
            """
        )
    )
    data = as_csv(rows(20, 9))
    job = {**CSV_LINES, "Accept": "text/csv", "Program": "inference.py", "Framework": "xgboost"}
    layout(root, job, {"t.csv": data}, xgb_model)
    done = transform(xgb17, root)
    assert done.returncode == 0, done.stderr
    want = python(  # the toolkit's csv encoder: np.savetxt of the float32 predictions, "%s"
        xgb17,
        f"""
        import io, numpy as np, xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(xgb_model)!r})
        x = np.loadtxt(io.StringIO({data!r}), delimiter=",", ndmin=2)
        out = io.StringIO()
        np.savetxt(out, b.predict(xgb.DMatrix(x)), delimiter=",", fmt="%s")
        print(out.getvalue(), end="")
        """,
    )
    assert output(root, "t.csv") == want.splitlines()
    assert want.splitlines()[0] != expected(xgb17, xgb_model, data)[0]  # float32's own str
