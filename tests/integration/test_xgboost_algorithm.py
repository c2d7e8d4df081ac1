"""Built-in XGBoost (algorithm mode) run for real: the container program on image environments.

Each test lays out ``/opt/ml`` in a temporary folder, runs ``xgboost_algorithm.py`` as a
subprocess on the XGBoost image's environment (built once per session by uv; uv's package cache
makes that seconds) and reads what the image would leave: stdout, ``model/xgboost-model`` and
``output/failure``. The data are small synthetic sets in the shape of AWS's examples: abalone-like
regression (rings from eight measurements) and a binary classification set.
"""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from sagepipe.images import Environment, ensure_environment, resolve
from sagepipe.images.algorithms import metric_definitions
from tests.conftest import ROOT

PROGRAM = ROOT / "src" / "sagepipe" / "container" / "xgboost_algorithm.py"
XGBOOST = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:{}"
ROUND = re.compile(r"^\[(\d+)\]\ttrain-rmse:(\d+\.\d{5})\tvalidation-rmse:(\d+\.\d{5})$")
Rows = list[tuple[float, list[float]]]


@pytest.fixture(scope="session")
def cache(image_cache: Path) -> Path:
    """The session's environment cache (tests/conftest.py): each image is built once."""
    return image_cache


@pytest.fixture(scope="session")
def xgb17(cache: Path) -> Environment:
    return ensure_environment(resolve(XGBOOST.format("1.7-1"), {}), cache)


def abalone(n: int, seed: int) -> Rows:
    """Rings from length, diameter, height and weights, with noise (abalone's shape)."""
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        sex = rnd.choice([0.0, 1.0, 2.0])
        length = rnd.uniform(0.1, 0.8)
        x = [sex, length, length * 0.8, length * 0.3, length**3 * 2, length**3, length**3 * 0.4]
        x.append(length**3 * 0.6)
        rows.append((round(3 + 15 * length + 5 * x[4] + rnd.gauss(0, 0.5), 3), x))
    return rows


def churn(n: int, seed: int) -> Rows:
    """A 0/1 label from two of five features (a churn/marketing-like binary set)."""
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        x = [rnd.uniform(0, 1) for _ in range(5)]
        rows.append((1.0 if x[0] + 0.5 * x[1] + rnd.gauss(0, 0.1) > 0.8 else 0.0, x))
    return rows


def as_csv(rows: Rows, weights: list[float] | None = None) -> str:
    lines = []
    for i, (y, x) in enumerate(rows):
        cells = [y, *([weights[i]] if weights else []), *x]
        lines.append(",".join(f"{v:g}" for v in cells))
    return "\n".join(lines) + "\n"


def as_libsvm(rows: Rows, skip_zeros: bool = False) -> str:
    return "".join(
        f"{y:g} "
        + " ".join(f"{i + 1}:{v:g}" for i, v in enumerate(x) if v or not skip_zeros)
        + "\n"
        for y, x in rows
    )


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _float32_value(values: list[float], keys: list[int] | None = None, width: int = 0) -> bytes:
    tensor = _field(1, struct.pack(f"<{len(values)}f", *values))
    if keys is not None:
        tensor += _field(2, b"".join(_varint(k) for k in keys)) + _field(3, _varint(width))
    return _field(2, tensor)  # Value.float32_tensor


def as_recordio(rows: Rows, sparse: bool = False) -> bytes:
    """RecordIO-framed aialgs.data.Record messages, as the SageMaker SDK's writers make them."""
    out = b""
    for y, x in rows:
        if sparse:
            keys = [i for i, v in enumerate(x) if v]
            features = _float32_value([x[i] for i in keys], keys, len(x))
        else:
            features = _float32_value(x)
        record = _field(1, _field(1, b"values") + _field(2, features))
        record += _field(2, _field(1, b"values") + _field(2, _float32_value([y])))
        out += struct.pack("<II", 0xCED7230A, len(record)) + record + b"\0" * (-len(record) % 4)
    return out


def layout(
    root: Path,
    hyperparameters: dict[str, str],
    channels: dict[str, dict[str, str | bytes]],
    content_type: str | None = "text/csv",
) -> Path:
    """Write ``/opt/ml`` under ``root``: configs and channel files (``{channel: {name: text}}``)."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    data_config = {}
    for name, files in channels.items():
        entry = {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        if content_type is not None:
            entry["ContentType"] = content_type
        data_config[name] = entry
        for rel, content in files.items():
            path = root / "input" / "data" / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    (root / "model").mkdir()
    return root


def train(env: Environment, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.argv(["python", str(PROGRAM), "--root", str(root)]),
        capture_output=True,
        text=True,
        timeout=240,
    )


def python(env: Environment, code: str) -> str:
    done = subprocess.run(
        env.argv(["python", "-c", textwrap.dedent(code)]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def failure(root: Path) -> str:
    return (root / "output" / "failure").read_text()


REGRESSION = {"num_round": "12", "objective": "reg:squarederror", "max_depth": "4", "eta": "0.3"}


def regression_channels() -> dict[str, dict[str, str | bytes]]:
    return {
        "train": {"abalone_train.csv": as_csv(abalone(400, 1))},
        "validation": {"abalone_validation.csv": as_csv(abalone(120, 2))},
    }


def test_csv_regression_prints_each_round_as_the_image_and_saves_a_binary_model(
    xgb17: Environment, tmp_path: Path
) -> None:
    root = layout(tmp_path, REGRESSION, regression_channels())
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    rounds = [ROUND.match(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert [int(m.group(1)) for m in rounds if m] == list(range(12))
    assert len(rounds) == 12 and all(rounds)
    assert "train-rmse" not in done.stderr  # the rounds go to stdout, the log to stderr
    assert "[INFO] Single node training." not in done.stderr
    assert re.search(r"^\[\d{4}-\d\d-\d\d:\d\d:\d\d:\d\d:INFO\] Single node", done.stderr, re.M)
    model = root / "model" / "xgboost-model"
    assert model.read_bytes()[:1] not in (b"{", b"\x80")  # 1.7-1: xgboost binary, not JSON/pickle
    out = python(
        xgb17,
        f"""
        import xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(model)!r})
        d = xgb.DMatrix({str(root / "input/data/validation")!r} + "?format=csv&label_column=0")
        print(b.num_boosted_rounds(), d.num_row(), len(b.predict(d)))
        """,
    )
    assert out == "12 120 120"


def test_the_registered_metric_definitions_read_the_last_round(
    xgb17: Environment, tmp_path: Path
) -> None:
    root = layout(tmp_path, {**REGRESSION, "eval_metric": "mae"}, regression_channels())
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    found: dict[str, float] = {}
    for definition in metric_definitions("xgboost"):
        pattern = re.compile(definition["Regex"].replace("#011", "\t"))  # as the runner reads it
        for line in done.stdout.splitlines():
            for match in pattern.finditer(line):
                found[definition["Name"]] = float(match.group(1))
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("[11]\t")
    expected = {
        name.replace("-", ":", 1): float(value)
        for name, value in (cell.split(":") for cell in last.split("\t")[1:])
    }
    # mae is one of the image's own (scikit-learn) metrics; rmse is the objective's default
    assert set(found) == {"train:rmse", "train:mae", "validation:rmse", "validation:mae"}
    assert found == expected


def test_libsvm_is_the_default_content_type_and_early_stopping_keeps_the_best_round(
    xgb17: Environment, tmp_path: Path
) -> None:
    train_rows, val_rows = churn(400, 3), churn(150, 4)
    val_rows = [(1.0 - y, x) for y, x in val_rows]  # validation gets worse as training fits
    hps = {
        "num_round": "50",
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "early_stopping_rounds": "3",
        "max_depth": "3",
    }
    channels = {
        "train": {"train.libsvm": as_libsvm(train_rows), "_SUCCESS": ""},
        "validation": {"validation.libsvm": as_libsvm(val_rows)},
    }
    root = layout(tmp_path, hps, channels, content_type=None)
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    rounds = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert rounds[0].startswith("[0]\ttrain-logloss:") and "\tvalidation-logloss:" in rounds[0]
    assert len(rounds) < 50  # stopped early, by xgboost 1.7's own EarlyStopping
    best = min(range(len(rounds)), key=lambda i: float(rounds[i].rsplit(":", 1)[1]))
    assert best < len(rounds) - 1
    out = python(
        xgb17,
        f"""
        import xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(root / "model/xgboost-model")!r})
        print(b.num_boosted_rounds())
        """,
    )
    assert int(out) == best + 1  # the best model is kept (save_best)


def test_the_image_s_own_classification_metrics_print_beside_xgboost_s(
    xgb17: Environment, tmp_path: Path
) -> None:
    hps = {"num_round": "5", "objective": "binary:logistic", "eval_metric": "auc,accuracy,f1"}
    channels: dict[str, dict[str, str | bytes]] = {
        "train": {"train.csv": as_csv(churn(300, 10))},
        "validation": {"validation.csv": as_csv(churn(100, 11))},
    }
    done = train(xgb17, layout(tmp_path, hps, channels))
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    values = dict(cell.split(":") for cell in last.split("\t")[1:])
    assert set(values) == {
        f"{data}-{metric}"
        for data in ("train", "validation")
        for metric in ("auc", "accuracy", "f1")
    }
    assert all(0.5 < float(v) <= 1.0 for v in values.values())


def test_csv_weights_reads_the_second_column_as_instance_weights(
    xgb17: Environment, tmp_path: Path
) -> None:
    rows = abalone(200, 5)
    weights = [0.0 if i % 2 else 1.0 for i in range(len(rows))]
    hps = {**REGRESSION, "csv_weights": "1", "num_round": "3"}
    root = layout(tmp_path, hps, {"train": {"train.csv": as_csv(rows, weights)}})
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert (
        "Train matrix has 200 rows and 8 columns" in done.stderr
    )  # weight column is not a feature
    # the same model as xgboost trains with those weights given directly
    out = python(
        xgb17,
        f"""
        import numpy as np, xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(root / "model/xgboost-model")!r})
        a = np.loadtxt({str(root / "input/data/train/train.csv")!r}, delimiter=",")
        d = xgb.DMatrix(a[:, 2:], label=a[:, 0], weight=a[:, 1])
        direct = xgb.train({{"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3}}, d, 3)
        unweighted = xgb.train({{"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3}},
                               xgb.DMatrix(a[:, 2:], label=a[:, 0]), 3)
        print(np.abs(b.predict(d) - direct.predict(d)).max() < 1e-5,
              np.abs(b.predict(d) - unweighted.predict(d)).max() > 1e-3)
        """,
    )
    assert out == "True True"


def test_files_below_the_channel_are_read_from_its_first_leaf_folder(
    xgb17: Environment, tmp_path: Path
) -> None:
    rows = abalone(300, 6)
    channels = {
        "train": {
            "top.csv": as_csv(rows[250:]),  # beside a folder: not read, as in the image
            "part/a.csv": as_csv(rows[:100]),
            "part/b.csv": as_csv(rows[100:250]),
        }
    }
    root = layout(tmp_path, {**REGRESSION, "num_round": "2"}, channels)
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert "Train matrix has 250 rows" in done.stderr


def test_a_hidden_file_in_a_channel_fails_the_job_as_the_image_does(
    xgb17: Environment, tmp_path: Path
) -> None:
    channels = regression_channels()
    channels["train"][".DS_Store"] = "junk"
    root = layout(tmp_path, REGRESSION, channels)
    done = train(xgb17, root)
    assert done.returncode == 1
    assert failure(root).endswith(
        "\nHidden file found in the data path! Remove that before training."
    )
    assert not (root / "model" / "xgboost-model").exists()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"objective": "reg:squarederror"}, "Missing required hyperparameter: num_round"),
        (
            {"num_round": "5", "objective": "reg:squaredsomething"},
            "Hyperparameter objective: reg:squaredsomething is not in ['aft_loss_distribution', ",
        ),
        (
            {"num_round": "5", "objective": "reg:squarederror", "eval_metric": "rmse,auc"},
            "Metric 'auc' can only be applied for classification and ranking problems.",
        ),
        (
            {"num_round": "5", "objective": "reg:squarederror", "eval_metric": "rmse,bogus"},
            "Hyperparameter eval_metric: value ['rmse', 'bogus'] not in range ['accuracy', ",
        ),
        ({"num_round": "0"}, "Hyperparameter num_round: 0 is not in [1, +inf)"),
        ({"num_round": "ten"}, "Hyperparameter num_round: could not parse value (caused by"),
        ({"num_round": "5", "silent": "0"}, "Extraneous hyperparameter found: silent"),
    ],
)
def test_invalid_hyperparameters_fail_with_the_container_s_message(
    xgb17: Environment, tmp_path: Path, hyperparameters: dict[str, str], message: str
) -> None:
    root = layout(tmp_path, hyperparameters, regression_channels())
    done = train(xgb17, root)
    assert done.returncode == 1
    text = failure(root)
    assert text.startswith("framework error: \nTraceback (most recent call last):\n")
    assert message in text.rsplit("\n", 1)[-1]
    assert "Reporting training FAILURE" in done.stderr
    assert not done.stdout.strip()


def test_legacy_reg_linear_is_accepted(xgb17: Environment, tmp_path: Path) -> None:
    root = layout(tmp_path, {**REGRESSION, "objective": "reg:linear"}, regression_channels())
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert "reg:linear is now deprecated" in done.stdout + done.stderr


@pytest.mark.parametrize("sparse", [False, True])
def test_recordio_protobuf_is_read_dense_or_sparse(
    xgb17: Environment, tmp_path: Path, sparse: bool
) -> None:
    train_rows, val_rows = abalone(300, 7), abalone(100, 8)
    channels: dict[str, dict[str, str | bytes]] = {
        "train": {"train.pbr": as_recordio(train_rows, sparse)},
        "validation": {"validation.pbr": as_recordio(val_rows, sparse)},
    }
    root = layout(tmp_path, REGRESSION, channels, "application/x-recordio-protobuf")
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert "Train matrix has 300 rows and 8 columns" in done.stderr
    assert len([line for line in done.stdout.splitlines() if ROUND.match(line)]) == 12
    # the same rounds as from the same rows in csv (dense) or libsvm without the zeros (sparse)
    if sparse:
        ref = {"train.libsvm": as_libsvm(train_rows, True), "val.libsvm": as_libsvm(val_rows, True)}
        kind = "libsvm"
    else:
        ref, kind = {"train.csv": as_csv(train_rows), "val.csv": as_csv(val_rows)}, "csv"
    names = sorted(ref)
    channels = {"train": {names[0]: ref[names[0]]}, "validation": {names[1]: ref[names[1]]}}
    other = train(xgb17, layout(tmp_path / "other", REGRESSION, channels, kind))
    assert other.returncode == 0, other.stderr
    rounds = [line for line in done.stdout.splitlines() if ROUND.match(line)]
    assert rounds == [line for line in other.stdout.splitlines() if ROUND.match(line)]


def test_a_parquet_channel_trains(xgb17: Environment, tmp_path: Path) -> None:
    root = layout(tmp_path, {**REGRESSION, "num_round": "3"}, {"train": {}}, "parquet")
    (root / "input" / "data" / "train").mkdir(parents=True)
    python(
        xgb17,
        f"""
        import pyarrow as pa, pyarrow.parquet as pq
        rows = {[[y, *x] for y, x in abalone(150, 9)]!r}
        t = pa.table({{f"c{{i}}": [r[i] for r in rows] for i in range(9)}})
        pq.write_table(t, {str(root / "input/data/train/part-0.parquet")!r})
        """,
    )
    done = train(xgb17, root)
    assert done.returncode == 0, done.stderr
    assert "Train matrix has 150 rows and 8 columns" in done.stderr


def test_an_empty_label_set_fails_as_the_image_does(xgb17: Environment, tmp_path: Path) -> None:
    root = layout(tmp_path, REGRESSION, {"train": {}}, content_type="application/x-parquet")
    (root / "input" / "data" / "train").mkdir(parents=True)
    python(
        xgb17,
        f"""
        import pyarrow as pa, pyarrow.parquet as pq
        t = pa.table({{"label": pa.array([], pa.float64()), "f1": pa.array([], pa.float64())}})
        pq.write_table(t, {str(root / "input/data/train/empty.parquet")!r})
        """,
    )
    done = train(xgb17, root)
    assert done.returncode == 1
    assert failure(root).endswith(
        "\nGot input data without labels. Please check the input data set. If training job is "
        "running on multiple instances, please switch to using single instance if number of "
        "records in the data set is less than number of workers (16 * number of instance) in the "
        "cluster."
    )


def test_an_empty_validation_channel_and_an_unknown_content_type_fail(
    xgb17: Environment, tmp_path: Path
) -> None:
    root = layout(tmp_path / "a", REGRESSION, {**regression_channels(), "validation": {}})
    (root / "input" / "data" / "validation").mkdir()
    assert train(xgb17, root).returncode == 1
    assert "\nNo data in validation channel path " in failure(root)
    root = layout(tmp_path / "b", REGRESSION, regression_channels(), content_type="text/json")
    assert train(xgb17, root).returncode == 1
    assert "\nChannel configuration for 'train' channel is not supported: " in failure(root)


@pytest.mark.parametrize(
    ("tag", "number", "versions"),
    [
        ("1.0-1", r"\d+\.\d{5}", "(3, 7) 1.0.0"),
        ("0.90-2", r"\d+(\.\d+)?", "(3, 6) 0.90"),  # 0.90 prints %g; its Python is the oldest
    ],
)
def test_before_xgboost_1_3_the_booster_is_pickled_and_rounds_print_the_old_way(
    cache: Path, tmp_path: Path, tag: str, number: str, versions: str
) -> None:
    env = ensure_environment(resolve(XGBOOST.format(tag), {}), cache)
    hps = {**REGRESSION, "objective": "reg:linear", "early_stopping_rounds": "2"}
    root = layout(tmp_path, hps, regression_channels())
    done = train(env, root)
    assert done.returncode == 0, done.stderr
    rounds = [line for line in done.stdout.splitlines() if re.match(r"\[\d+\]\t", line)]
    pattern = re.compile(rf"\[\d+\]\ttrain-rmse:{number}\tvalidation-rmse:{number}")
    assert len(rounds) == 12 and all(pattern.fullmatch(line) for line in rounds)
    out = python(
        env,
        f"""
        import pickle, sys, xgboost
        with open({str(root / "model/xgboost-model")!r}, "rb") as fh:
            booster = pickle.load(fh)
        print(sys.version_info[:2], xgboost.__version__, type(booster).__name__)
        """,
    )
    assert out.splitlines()[-1] == f"{versions} Booster"  # after xgboost's own warning


def test_xgboost_3_0_5_reads_libsvm_and_saves_its_default_format(
    cache: Path, tmp_path: Path
) -> None:
    env = ensure_environment(resolve(XGBOOST.format("3.0-5"), {}), cache)
    channels: dict[str, dict[str, str | bytes]] = {
        "train": {"train.libsvm": as_libsvm(abalone(300, 12))},
        "validation": {"validation.libsvm": as_libsvm(abalone(100, 13))},
    }
    root = layout(tmp_path, {**REGRESSION, "num_round": "4"}, channels, content_type=None)
    done = train(env, root)
    assert done.returncode == 0, done.stderr
    assert len([line for line in done.stdout.splitlines() if ROUND.match(line)]) == 4
    assert (root / "model" / "xgboost-model").read_bytes()[:2] == b"{L"  # UBJSON, 3.x's default
    out = python(
        env,
        f"""
        import xgboost as xgb
        b = xgb.Booster()
        b.load_model({str(root / "model/xgboost-model")!r})
        print(xgb.__version__, b.num_boosted_rounds())
        """,
    )
    assert out == "3.0.5 4"
