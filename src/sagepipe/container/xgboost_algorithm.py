"""Built-in XGBoost training ("algorithm mode"), as the SageMaker XGBoost images run it.

Run inside a training step's sandbox on the image environment's Python::

    python xgboost_algorithm.py [--root /opt/ml]

It reads ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`` and the channels
under ``input/data``, validates and types the hyperparameters as the image's
``sagemaker_xgboost_container`` does, trains with the image's own xgboost and writes
``model/xgboost-model`` in the format that image version writes: a pickled Booster up to xgboost
1.2, ``Booster.save_model`` from 1.3 on (xgboost's binary format to 1.7, UBJSON on 3.x). Each round's evaluation is printed by the xgboost
version's own callback, to stdout (``[0]<TAB>train-rmse:...<TAB>validation-rmse:...``). A failure
writes the container's kind of text to ``output/failure`` and exits 1. ``--root`` (or
``SAGEPIPE_OPT_ML``) moves ``/opt/ml`` for tests run outside a sandbox.

The facts (messages, content types, folder rules, callbacks, model formats) follow
aws/sagemaker-xgboost-container at tag v1.7-1 (``algorithm_mode/train.py``, ``data_utils.py``,
``metrics/custom_metrics.py``) and, for the model format and callbacks before xgboost 1.3, its tags
v1.0-1 and v1.2-2; the hyperparameters are checked by ``xgboost_hyperparameters.py`` beside it. Standard library and the
image's packages only; this file runs on Python 3.6 and up (the 0.90-2 image's Python), so it has
no ``from __future__ import annotations``.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import csv
import json
import logging
import os
import pickle
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

MODEL_NAME = "xgboost-model"
ROOT_VARIABLE = "SAGEPIPE_OPT_ML"

try:  # run as a file (as in a step), its own folder is sys.path[0]
    from recordio_protobuf import read_matrix
    from xgboost_hyperparameters import (
        MAXIMIZE_METRICS,
        AlgorithmError,
        ToolkitError,
        UserError,
        validate_hyperparameters,
    )
except ImportError:  # imported as part of the package (tests)
    from sagepipe.container.recordio_protobuf import read_matrix
    from sagepipe.container.xgboost_hyperparameters import (
        MAXIMIZE_METRICS,
        AlgorithmError,
        ToolkitError,
        UserError,
        validate_hyperparameters,
    )

log = logging.getLogger("sagemaker_xgboost_container")


CUSTOMER_ERRORS = [
    "label must be in [0,1] for logistic regression",
    "label must be in [0, num_class)",
    "Target is multiclass but average='binary'",
    "feature_names mismatch",
    "Check failed: preds.size() == info.labels_.size()",
    "Check failed: !auc_error AUC: the dataset only contains pos or neg samples",
    "Check failed: base_score > 0.0f && base_score < 1.0f base_score must be in (0,1) "
    "for logistic loss",
    "Check failed: label_correct PoissonRegression: label must be nonnegative",
    "Check failed: label_correct TweedieRegression: label must be nonnegative",
    "Parameter reg_lambda should be greater equal to 0",
]
# ----------------------------------------------------------------------------- channels and data

CSV, LIBSVM, PARQUET, RECORDIO = "csv", "libsvm", "parquet", "recordio-protobuf"
CONTENT_TYPES = [
    CSV,
    LIBSVM,
    PARQUET,
    RECORDIO,
    "text/csv",
    "text/libsvm",
    "text/x-libsvm",
    "application/x-parquet",
    "application/x-recordio-protobuf",
]
PIPE_CONTENT_TYPES = [
    CSV,
    PARQUET,
    RECORDIO,
    "text/csv",
    "application/x-parquet",
    "application/x-recordio-protobuf",
]
CHANNELS = {"train": True, "validation": False, "code": False}  # name: required


def validate_channels(config: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Check the channels' content type, input mode and distribution; libsvm when none is set."""
    for name, required in CHANNELS.items():
        if required and name not in config:
            raise UserError(f"Missing required channel: {name}")
    checked = {}
    for name, value in config.items():
        if name not in CHANNELS:
            raise UserError(f"Extraneous channel found: {name}")
        value = dict(value)
        if value.get("ContentType") is None:  # absent (or null) means libsvm
            value["ContentType"] = "text/libsvm"
        kinds = ["text/python"] if name == "code" else CONTENT_TYPES
        if value.get("TrainingInputMode") == "Pipe":
            kinds = [] if name == "code" else PIPE_CONTENT_TYPES
        dist = value.get("S3DistributionType")
        modes = ("File", "Pipe") if name != "code" else ("File",)
        sharding = ("ShardedByS3Key", "FullyReplicated") if name != "code" else ("FullyReplicated",)
        if not (
            value["ContentType"] in kinds
            and value.get("TrainingInputMode") in modes
            and dist in sharding
        ):
            raise UserError(f"Channel configuration for '{name}' channel is not supported: {value}")
        checked[name] = value
    return checked


def content_type(value: Optional[str]) -> str:
    """``text/csv;label_size=1`` -> ``csv``; None -> ``libsvm``."""
    if value is None:
        return LIBSVM
    main, _, rest = value.lower().partition(";")
    main = main.strip()
    params = dict(p.strip().split("=", 1) for p in rest.split(";") if "=" in p)
    if main in (CSV, "text/csv"):
        if params.get("label_size", "1").strip() != "1":
            raise UserError(
                f"{value} is not an accepted csv ContentType. Optional parameter label_size "
                "must be equal to 1"
            )
        return CSV
    if main in (LIBSVM, "text/libsvm", "text/x-libsvm"):
        return LIBSVM
    if main in (PARQUET, "application/x-parquet"):
        return PARQUET
    if main in (RECORDIO, "application/x-recordio-protobuf"):
        return RECORDIO
    raise UserError(
        "{} is not an accepted ContentType: {}.".format(value, ", ".join(CONTENT_TYPES))
    )


def data_size(path: str) -> int:
    """Bytes under ``path``; a hidden file anywhere under it fails the job, as in the container."""
    if not os.path.exists(path):
        log.info("Path %s does not exist!", path)
        return 0
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name.startswith("."):
                raise UserError("Hidden file found in the data path! Remove that before training.")
            total += os.path.getsize(os.path.join(root, name))
    return total


def leaf_folder(path: str) -> str:
    """The folder xgboost reads: the path itself if a file, else the first folder with none."""
    if os.path.isfile(path):
        return path
    for root, dirs, _files in os.walk(path):
        if not dirs:
            return root
    return path


def _is_file(folder: str, name: str) -> bool:
    return os.path.isfile(os.path.join(folder, name))


def _is_data_file(folder: str, name: str) -> bool:
    if not os.path.isfile(os.path.join(folder, name)) or name.startswith((".", "_")):
        return False
    return not (".cache" in name and ("dtrain" in name or "dval" in name))


def csv_delimiter(line: str) -> str:
    """The delimiter ``csv.Sniffer`` finds in the first line."""
    try:
        delimiter = csv.Sniffer().sniff(line).delimiter
    except Exception as exc:
        raise UserError(f"Could not determine delimiter on line {line[:50]}:\n{exc}") from None
    log.info("Determined delimiter of CSV input is '%s'", delimiter)
    return delimiter


def _libsvm_features(line: str) -> int:
    """Features on a LIBSVM line, -1 when the line is not LIBSVM."""
    parts = line.split(" ")
    label = parts[0].split(":")
    try:
        if len(label) > 2:
            return -1
        for part in label:
            float(part)
    except ValueError:
        log.error("%s does not follow LIBSVM label format <label>(:<weight>).", parts[0])
        return -1
    for part in parts[1:]:
        if ":" not in part or len(parts[1].split(":")) != 2:
            return -1
    return len(parts) - 1


def validate_data(path: str, kind: str) -> None:
    """Check the first line of each data file, as the container does."""
    folder = leaf_folder(path)
    files = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(folder, n) for n in os.listdir(folder) if _is_data_file(folder, n)]
    )
    for file_path in files:
        with open(file_path, errors="ignore") as fh:
            if kind == CSV:
                csv_delimiter(fh.readline())
                continue
            if kind != LIBSVM:
                return
            for line in fh:
                count = _libsvm_features(line)
                if count > 1:
                    break
                if count < 0:
                    raise UserError(
                        "First line '{}...' of file '{}' is not 'LIBSVM' format. Please ensure "
                        "the file is in 'LIBSVM' format.".format(
                            line[:50], file_path.split("/")[-1]
                        )
                    )
            else:
                log.warning(
                    "File %s is not an invalid LIBSVM file but has no features. "
                    "Accepting simple validation.",
                    file_path.split("/")[-1],
                )


def load_dmatrix(xgb: Any, path: str, kind: str, csv_weights: int) -> Any:
    """The DMatrix of a channel (None for recordio without records); UserError when unreadable."""
    files_path = leaf_folder(path)
    log.info("files path: %s", files_path)
    if kind == CSV:
        first = files_path
        if not os.path.isfile(files_path):  # the first file listed, as the container picks it
            names = os.listdir(files_path)
            first = next(os.path.join(files_path, n) for n in names if _is_file(files_path, n))
        with open(first) as fh:
            delimiter = csv_delimiter(fh.readline())
        uri = f"{files_path}?format=csv&label_column=0&delimiter={delimiter}"
        if csv_weights == 1:
            uri += "&weight_column=1"
        try:
            dmatrix = xgb.DMatrix(uri)
        except Exception as exc:
            raise UserError(f"Failed to load csv data with exception:\n{exc}") from None
    elif kind == LIBSVM:
        uri = files_path + ("?format=libsvm" if _version(xgb) >= (2, 0) else "")  # 3.0-5's way
        try:
            dmatrix = xgb.DMatrix(uri)
        except Exception as exc:
            raise UserError(f"Failed to load libsvm data with exception:\n{exc}") from None
    elif kind == PARQUET:
        try:
            import pyarrow.parquet as pq

            data = pq.read_table(files_path).to_pandas().to_numpy()
            dmatrix = xgb.DMatrix(data[:, 1:], label=data[:, 0])
        except Exception as exc:
            raise UserError(f"Failed to load parquet data with exception:\n{exc}") from None
    else:
        folder = files_path if os.path.isdir(files_path) else os.path.dirname(files_path)
        names = (
            [files_path]
            if os.path.isfile(files_path)
            else sorted(
                os.path.join(folder, n) for n in os.listdir(folder) if _is_data_file(folder, n)
            )
        )
        try:
            features, labels = read_matrix(names)
        except Exception as exc:
            raise UserError(
                f"Failed to load recordio-protobuf data with exception:\n{exc}"
            ) from None
        if features is None:  # no records: the image reads no matrix at all
            return None
        dmatrix = xgb.DMatrix(features, label=labels)
    if dmatrix.get_label().size == 0:
        raise UserError(
            "Got input data without labels. Please check the input data set. If training job is "
            "running on multiple instances, please switch to using single instance if number of "
            "records in the data set is less than number of workers (16 * number of instance) in "
            "the cluster."
        )
    return dmatrix


def _redundancy_warning(train_path: str, val_path: str) -> None:
    def files(p: str) -> Set[str]:
        return {f for f in os.listdir(p) if _is_file(p, f)}

    for name in files(train_path) & files(val_path):
        a, b = os.path.join(train_path, name), os.path.join(val_path, name)
        if os.path.getsize(a) == os.path.getsize(b):
            log.warning(
                "Suspected identical files found. (%s and %swith same size %d bytes). Note: "
                "Duplicate data in the training set and validation set is usually not intentional "
                "and can impair the validity of the model evaluation by the validation score.",
                a,
                b,
                os.path.getsize(b),
            )


# ----------------------------------------------------------------------------- metrics


def _version(xgb: Any) -> Tuple[int, int]:
    major, minor = xgb.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def custom_feval(names: List[str], margin: bool) -> Callable[[Any, Any], List[Tuple[str, float]]]:
    """The container's own metrics (scikit-learn's, as in the image) as one ``feval``."""
    import numpy as np
    from sklearn import metrics as sk

    def labels_of(preds: Any) -> Any:
        if preds.ndim > 1:
            return np.argmax(preds, axis=-1)
        return (preds > 0.0).astype(int) if margin else np.round(preds)  # 1.0 rounded them

    def classified(score: Callable[..., float], **kw: Any) -> Callable[[Any, Any], float]:
        def compute(preds: Any, dtrain: Any) -> float:
            return score(dtrain.get_label(), labels_of(preds), **kw) if preds.size > 0 else 0.0

        return compute

    table = {
        "accuracy": classified(sk.accuracy_score),
        "balanced_accuracy": classified(sk.balanced_accuracy_score),
        "f1": classified(sk.f1_score, average="macro"),
        "f1_binary": classified(sk.f1_score, average="binary"),
        "f1_macro": classified(sk.f1_score, average="macro"),
        "precision": classified(sk.precision_score),
        "precision_macro": classified(sk.precision_score, average="macro"),
        "precision_micro": classified(sk.precision_score, average="micro"),
        "recall": classified(sk.recall_score),
        "recall_macro": classified(sk.recall_score, average="macro"),
        "recall_micro": classified(sk.recall_score, average="micro"),
        "mse": lambda p, d: sk.mean_squared_error(d.get_label(), p),
        "rmse": lambda p, d: float(np.sqrt(sk.mean_squared_error(d.get_label(), p))),
        "mae": lambda p, d: sk.mean_absolute_error(d.get_label(), p),
        "r2": lambda p, d: sk.r2_score(d.get_label(), p),
    }  # type: Dict[str, Callable[[Any, Any], float]]

    def feval(preds: Any, dtrain: Any) -> List[Tuple[str, float]]:
        return [(name, table[name](preds, dtrain)) for name in names]

    return feval


# The metrics each image computes itself (scikit-learn) rather than xgboost: 1.0-1 had three,
# 1.2-x six, 1.3-1 on fifteen.
CUSTOM_METRICS_1_0 = ["accuracy", "f1", "mse"]
CUSTOM_METRICS_1_2 = [*CUSTOM_METRICS_1_0, "f1_binary", "f1_macro", "r2"]
CUSTOM_METRICS = [
    *CUSTOM_METRICS_1_2,
    "balanced_accuracy",
    "rmse",
    "mae",
    "precision",
    "precision_macro",
    "precision_micro",
    "recall",
    "recall_macro",
    "recall_micro",
]


def custom_metrics(version: Tuple[int, int]) -> List[str]:
    """The metrics the image of xgboost ``version`` computes itself."""
    if version >= (1, 3):
        return CUSTOM_METRICS
    return CUSTOM_METRICS_1_2 if version >= (1, 2) else CUSTOM_METRICS_1_0


# ----------------------------------------------------------------------------- training


def train_job(xgb: Any, cfg: Dict[str, Any], dtrain: Any, dval: Any, model_dir: str) -> None:
    """Train with the image's xgboost, its own per-round printing, and save the model."""
    num_round = cfg.pop("num_round")
    cfg.pop("save_model_on_termination", None)
    tuning = cfg.pop("_tuning_objective_metric", None)
    tuning_metric = [tuning.split(":", 1)[1]] if tuning else None
    eval_metric = cfg.get("eval_metric")
    wanted = list(eval_metric or [])
    wanted += [m for m in tuning_metric or [] if m not in wanted]
    custom = [m for m in wanted if m in custom_metrics(_version(xgb))]
    cleaned = [m for m in wanted if m not in custom]
    feval = custom_feval(custom, margin=_version(xgb) >= (1, 2)) if custom else None
    if cleaned:
        cfg["eval_metric"] = cleaned
    else:
        cfg.pop("eval_metric", None)
    rounds = cfg.pop("early_stopping_rounds", None)
    stop_metric = (tuning_metric or eval_metric or [None])[-1] if rounds else None
    if cfg.pop("_kfold", None) is not None:
        raise UserError("_kfold cross-validation is not supported by sagepipe's local XGBoost")
    cfg.pop("_num_cv_round", None)
    log.info("Train matrix has %d rows and %d columns", dtrain.num_row(), dtrain.num_col())
    if dval is not None:
        log.info("Validation matrix has %d rows", dval.num_row())
    watchlist = [(dtrain, "train")] + ([(dval, "validation")] if dval is not None else [])
    new_callbacks = hasattr(xgb.callback, "EvaluationMonitor")
    try:
        if new_callbacks:  # 1.3 and later: the container's get_callbacks
            callbacks = [xgb.callback.EvaluationMonitor()]
            if dval is not None and stop_metric and rounds:
                callbacks.append(
                    xgb.callback.EarlyStopping(
                        rounds=rounds,
                        data_name="validation",
                        metric_name=stop_metric,
                        maximize=stop_metric in MAXIMIZE_METRICS,
                        save_best=True,
                    )
                )
            # 3.0-5 passes the image's metrics as custom_metric (xgboost 2 dropped feval)
            metric = {"custom_metric" if _version(xgb) >= (2, 0) else "feval": feval}
            bst = xgb.train(
                cfg,
                dtrain,
                num_boost_round=num_round,
                evals=watchlist,
                callbacks=callbacks,
                verbose_eval=False,
                **metric,
            )
        else:  # 1.0 and 1.2: the old callbacks and xgb.train's own early stopping
            bst = xgb.train(
                cfg,
                dtrain,
                num_boost_round=num_round,
                evals=watchlist,
                feval=feval,
                early_stopping_rounds=rounds,
                callbacks=[xgb.callback.print_evaluation()],
                verbose_eval=False,
            )
    except Exception as exc:
        if any(known in str(exc) for known in CUSTOMER_ERRORS):
            raise UserError(str(exc)) from None
        raise AlgorithmError(f"XGB train call failed with exception:\n {exc}") from None
    os.makedirs(model_dir, exist_ok=True)
    save_model(xgb, bst, os.path.join(model_dir, MODEL_NAME))


def save_model(xgb: Any, bst: Any, location: str) -> None:
    """As the image version saves it: pickle up to 1.2 (protocol 4 from 1.2), else save_model."""
    version = _version(xgb)
    if version >= (1, 3):
        bst.save_model(location)
    else:
        with open(location, "wb") as fh:
            pickle.dump(bst, fh, protocol=4 if version >= (1, 2) else pickle.DEFAULT_PROTOCOL)
    log.debug("Stored trained model at %s", location)


def sagemaker_train(root: str) -> None:
    """Read the job's configuration and channels under ``root`` and train."""
    config = os.path.join(root, "input", "config")
    with open(os.path.join(config, "hyperparameters.json")) as fh:
        raw = json.load(fh)
    with open(os.path.join(config, "inputdataconfig.json")) as fh:
        data_config = json.load(fh)
    hosts = ["algo-1"]
    if os.path.exists(os.path.join(config, "resourceconfig.json")):
        with open(os.path.join(config, "resourceconfig.json")) as fh:
            hosts = json.load(fh).get("hosts") or hosts
    log.info("Running XGBoost Sagemaker in algorithm mode")
    cfg = validate_hyperparameters(raw)
    if cfg.get("updater"):
        cfg["updater"] = ",".join(cfg["updater"])
    channels = validate_channels(data_config)
    cfg.pop("use_dask_gpu_training", None)
    kind = content_type(channels["train"].get("ContentType"))
    if channels["train"].get("TrainingInputMode") == "Pipe":
        raise UserError("Pipe input mode is not supported by sagepipe's local XGBoost; use File")
    data = os.path.join(root, "input", "data")
    train_path = os.path.join(data, "train")
    val_path = os.path.join(data, "validation") if "validation" in channels else None
    if val_path is not None and os.path.isdir(train_path) and os.path.isdir(val_path):
        _redundancy_warning(train_path, val_path)
    if len(hosts) > 1:
        log.warning("Distributed training is not run locally; training on this host's data")
    import xgboost as xgb

    weights = cfg.get("csv_weights", 0)
    cfg.pop("csv_weights", None)
    train_size = data_size(train_path)
    val_size = data_size(val_path) if val_path else 0
    dtrain = dval = None
    if train_size > 0:
        validate_data(train_path, kind)
        dtrain = load_dmatrix(xgb, train_path, kind, weights)
    if val_size > 0 and val_path:
        validate_data(val_path, kind)
        dval = load_dmatrix(xgb, val_path, kind, weights)
    if dtrain is None:
        raise UserError(f"No data in training channel path {train_path}")
    if val_path and dval is None:
        raise UserError(f"No data in validation channel path {val_path}")
    log.info("Single node training.")
    train_job(xgb, cfg, dtrain, dval, os.path.join(root, "model"))


def main(argv: List[str]) -> int:
    """Run the job; on failure write ``output/failure`` as the training toolkit does, return 1."""
    root = os.environ.get(ROOT_VARIABLE, "/opt/ml")
    if len(argv) >= 2 and argv[0] == "--root":
        root = argv[1]
    logging.basicConfig(
        format="[%(asctime)s:%(levelname)s] %(message)s",
        datefmt="%Y-%m-%d:%H:%M:%S",
        level=logging.INFO,
    )
    try:
        sagemaker_train(root)
    except Exception as exc:
        message = exc.message if isinstance(exc, ToolkitError) else str(exc)
        failure = f"framework error: \n{traceback.format_exc()}\n{message}"
        os.makedirs(os.path.join(root, "output"), exist_ok=True)
        with open(os.path.join(root, "output", "failure"), "w") as fh:
            fh.write(failure)
        log.error("Reporting training FAILURE")
        log.error(failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
