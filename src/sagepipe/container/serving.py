"""Model serving, as SageMaker's containers answer an invocation, and a batch transform over it.

Run inside a transform step's sandbox on the model image environment's Python::

    python serving.py [--root /opt/ml] --job /opt/ml/transform/job.json

The model is unpacked at ``model/`` (and a script-mode source directory at ``code/``), the input
files under ``transform/input``; each file's results are written to ``transform/output/<file>.out``.
``job.json`` holds the CreateTransformJob settings the batch agent applies around the container:
SplitType, CompressionType, BatchStrategy, MaxPayloadInMB, DataProcessing, Accept, AssembleWith.
Instead of an HTTP server the invocations are calls in this one process, the model loaded once.

Two ways to answer an invocation, as the images do:

- built-in XGBoost (algorithm mode): ``xgboost-model`` loaded as a pickle, else with
  ``Booster.load_model``; text/csv (delimiter sniffed), text/libsvm and
  application/x-recordio-protobuf in; under batch transform one prediction per line out
  (aws/sagemaker-xgboost-container ``algorithm_mode/serve.py``, ``serve_utils.py``,
  ``encoder.py``);
- framework script mode: the user's module (``SAGEMAKER_PROGRAM``) with ``model_fn``,
  ``input_fn``, ``predict_fn``, ``output_fn`` or ``transform_fn``, and the framework's defaults
  where one is absent: csv/json/npy decoders and encoders, ``model.predict``
  (aws/sagemaker-inference-toolkit ``decoder.py``, ``encoder.py``,
  ``default_inference_handler.py``; aws/sagemaker-scikit-learn-container ``serving.py``).

A failed invocation ends the job: the status and the container's message go to stderr and to
``output/failure``, and the program exits 1. ``--root`` (or ``SAGEPIPE_OPT_ML``) moves ``/opt/ml``
for tests run outside a sandbox. Standard library and the image's packages only; Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import csv
import importlib
import io
import json
import os
import pickle
import re
import sys
import tempfile
import textwrap
import traceback
from typing import Any, Callable, List, Optional, Tuple

ROOT_VARIABLE = "SAGEPIPE_OPT_ML"
XGBOOST_MODEL = "xgboost-model"
CSV, JSON, NPY, JSONLINES = (
    "text/csv",
    "application/json",
    "application/x-npy",
    "application/jsonlines",
)
LIBSVM_TYPES = ("libsvm", "text/libsvm", "text/x-libsvm")
RECORDIO = "application/x-recordio-protobuf"
XGBOOST_CONTENT_TYPES = [
    "csv",
    "libsvm",
    "parquet",
    "recordio-protobuf",
    "text/csv",
    "text/libsvm",
    "text/x-libsvm",
    "application/x-parquet",
    "application/x-recordio-protobuf",
]
XGBOOST_ACCEPTS = [JSON, JSONLINES, RECORDIO, CSV]
RECORDIO_MAGIC = 0xCED7230A
MIB = 1024 * 1024

try:  # run as a file (as in a step), its own folder is sys.path[0]
    from xgboost_selectable import VARIABLE as SELECTABLE
    from xgboost_selectable import encode_selected, select_predictions, selected_keys
except ImportError:  # imported as part of the package (tests)
    from sagepipe.container.xgboost_selectable import VARIABLE as SELECTABLE
    from sagepipe.container.xgboost_selectable import (
        encode_selected,
        select_predictions,
        selected_keys,
    )


class InvocationError(Exception):
    """An invocation the container answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(value: Optional[str]) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (lower case)."""
    return (value or "").split(";", 1)[0].strip().lower()


# ------------------------------------------------------------------------ built-in XGBoost


class XGBoostAlgorithm:
    """The XGBoost image's algorithm-mode server: csv/libsvm/recordio in, predictions out.

    ``version`` is the image's tag (``1.7-1``): from 1.2-2 every model file of the folder is
    loaded and their predictions averaged (voted for multi:softmax and binary:hinge) unless
    ``SAGEMAKER_INFERENCE_ENSEMBLE`` is not ``true``; from 1.7-1 dotfiles are skipped; before
    1.2-2 the first file the folder lists is the model.
    """

    def __init__(self, model_dir: str, version: str = "") -> None:
        self.model_dir = model_dir
        self.version = image_version(version)
        self.boosters = []  # type: List[Any]
        self.pickled = False
        self.objective = ""

    def load(self) -> None:
        """Load the model files, each as a pickle first, else with ``Booster.load_model``."""
        try:
            import xgboost as xgb

            names = [
                n
                for n in os.listdir(self.model_dir)
                if os.path.isfile(os.path.join(self.model_dir, n))
                and not (n.startswith(".") and self.version >= (1, 7, 1))
            ]
            if not names:
                raise RuntimeError(f"no model file in {self.model_dir}")
            ensemble = self.version >= (1, 2, 2) and (
                os.environ.get("SAGEMAKER_INFERENCE_ENSEMBLE", "true") == "true"
            )
            for name in names if ensemble else names[:1]:
                self.boosters.append(self._load_one(xgb, os.path.join(self.model_dir, name)))
            if len(self.boosters) > 1:
                config = json.loads(self.boosters[0].save_config())
                self.objective = config["learner"]["objective"]["name"]
        except Exception as exc:
            raise InvocationError(500, f"Unable to load model: {exc}") from None

    def _load_one(self, xgb: Any, path: str) -> Any:
        try:
            with open(path, "rb") as fh:
                booster = pickle.load(fh)
            self.pickled = True
            return booster
        except Exception as pickle_error:
            try:
                booster = xgb.Booster()
                booster.load_model(path)
                return booster
            except Exception as xgb_error:
                raise RuntimeError(
                    f"Model {path} cannot be loaded:\nPickle load error={pickle_error}"
                    f"\nXGB load model error={xgb_error}"
                ) from None

    def invoke(self, payload: bytes, content_type: Optional[str], accept: str) -> bytes:
        """Answer one invocation as ``/invocations`` does under batch transform."""
        if not payload:
            return b""
        kind = _xgboost_content_type(content_type)
        data = _parse_xgboost(payload, kind, content_type)
        if not self.boosters:
            self.load()
        try:
            predictions = self._predict(data, kind)
        except Exception as exc:
            raise InvocationError(400, f"Unable to evaluate payload provided: {exc}") from None
        chosen = media_type(accept)
        if chosen in ("", "*/*"):
            chosen = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", CSV)
        elif chosen not in XGBOOST_ACCEPTS:
            raise InvocationError(
                406,
                f"Accept type {accept} is not supported. Please use supported accept types: {XGBOOST_ACCEPTS}.",
            )
        if SELECTABLE in os.environ:
            return self._selected(predictions, chosen)
        values = predictions.tolist()
        if os.environ.get("SAGEMAKER_BATCH"):
            return ("\n".join(map(str, values)) + "\n").encode("utf-8")
        if chosen == JSON:
            return json.dumps({"predictions": [{"score": v} for v in values]}).encode("utf-8")
        return ",".join(map(str, values)).encode("utf-8")  # an endpoint's answer: one CSV line

    def _selected(self, predictions: Any, accept: str) -> bytes:
        try:
            config = json.loads(self.boosters[0].save_config())["learner"]
            keys = selected_keys(os.environ[SELECTABLE])
            rows = select_predictions(
                predictions,
                keys,
                config["objective"]["name"],
                str(config["learner_model_param"].get("num_class", "")),
            )
            body = encode_selected(rows, keys, accept, bool(os.environ.get("SAGEMAKER_BATCH")))
            return bytes(body)
        except Exception as exc:
            raise InvocationError(500, str(exc)) from None

    def _predict(self, data: Any, kind: str) -> Any:
        if self.pickled:
            _check_features(self.boosters[0], data, kind)
        if len(self.boosters) == 1:
            return _predict_one(self.boosters[0], data)
        import numpy as np

        each = np.array([_predict_one(b, data) for b in self.boosters])
        if self.objective in ("multi:softmax", "binary:hinge"):  # a vote: the commonest value
            return np.array([_commonest(each[:, i]) for i in range(each.shape[1])])
        return np.mean(each, axis=0)


def image_version(tag: str) -> Tuple[int, ...]:
    """``1.7-1`` -> (1, 7, 1); an unknown tag counts as the newest image."""
    numbers = re.findall(r"\d+", tag.split("-cpu", 1)[0])
    return tuple(int(n) for n in numbers[:3]) if numbers else (99,)


def _check_features(booster: Any, data: Any, kind: str) -> None:
    if hasattr(booster, "num_features"):
        trained = booster.num_features()
    else:  # xgboost before 1.0
        trained = len(booster.feature_names)
    given = len(data.feature_names) if data.feature_names is not None else data.num_col()
    if kind == "libsvm" and given > trained + 1:
        raise ValueError(
            f"Feature size of libsvm inference data {given} is larger than feature size of "
            f"trained model {trained}."
        )
    if kind != "libsvm" and given not in (trained, trained + 1):
        raise ValueError(
            f"Feature size of {kind} inference data {given} is not consistent with feature size "
            f"of trained model {trained}."
        )


def _predict_one(booster: Any, data: Any) -> Any:
    best = int(getattr(booster, "best_ntree_limit", 0) or 0)
    try:
        return booster.predict(data, ntree_limit=best, validate_features=False)
    except TypeError:  # xgboost 2 and later: no ntree_limit
        if best > 0:
            return booster.predict(data, iteration_range=(0, best), validate_features=False)
        return booster.predict(data, validate_features=False)


def _commonest(values: Any) -> Any:
    """The most frequent value, the smallest among ties (as scipy.stats.mode)."""
    import numpy as np

    found, counts = np.unique(values, return_counts=True)
    return found[int(np.argmax(counts))]


def _xgboost_content_type(content_type: Optional[str]) -> str:
    if content_type is None:
        return "libsvm"
    kind = media_type(content_type)
    if kind in ("csv", CSV):
        match = re.search(r"label_size\s*=\s*(\w+)", content_type.lower())
        if match and match.group(1) != "1":
            raise InvocationError(
                415,
                f"{content_type} is not an accepted csv ContentType. Optional parameter label_size must be "
                "equal to 1",
            )
        return "csv"
    if kind in LIBSVM_TYPES:
        return "libsvm"
    if kind in ("recordio-protobuf", RECORDIO):
        return "recordio-protobuf"
    if kind in ("parquet", "application/x-parquet"):  # a training content type, not served
        raise InvocationError(415, f"Content-type {content_type} is not supported.")
    raise InvocationError(
        415, f"{content_type} is not an accepted ContentType: {', '.join(XGBOOST_CONTENT_TYPES)}."
    )


def _parse_xgboost(payload: bytes, kind: str, content_type: Optional[str]) -> Any:
    import xgboost as xgb

    try:
        if kind == "csv":
            text = payload.strip().decode("utf-8")
            end = text.find("\n")
            first_line = text if end < 0 else text[:end]  # not text.split: one line is enough
            delimiter = csv.Sniffer().sniff(first_line[:512]).delimiter
            delimiter = "," if delimiter.isalnum() else delimiter
            return xgb.DMatrix(_csv_matrix(text, delimiter))
        if kind == "libsvm":
            return xgb.DMatrix(_libsvm_matrix(payload.strip().decode("utf-8")))
        return xgb.DMatrix(_recordio_features(payload))
    except Exception as exc:
        if kind == "recordio-protobuf":
            raise InvocationError(
                415,
                "Loading recordio-protobuf data failed with Exception, please ensure data is in "
                f"recordio-protobuf format: {type(exc)} {exc}",
            ) from None
        raise InvocationError(
            415,
            f"Loading {kind} data failed with Exception, please ensure data is in {kind} format:\n "
            f"{type(exc)}\n {exc}",
        ) from None


def _csv_matrix(text: str, delimiter: str) -> Any:
    """The image's csv parse (empty cells are NaN), with numpy's parser where it gives the same.

    The image builds a list of lists of strings and converts it; numpy parses the same text to
    the same float64 values many times faster when every row has the same width and no cell is
    empty. Anything else takes the image's own way, with its errors.
    """
    import numpy as np

    end = text.find("\n")
    width = (text if end < 0 else text[:end]).count(delimiter) + 1
    count = text.count("\n") + 1
    flat = text.replace("\n", delimiter)
    # One search of the flattened text stands for ",,", "\n,", ",\n" (and blank lines, which
    # then take the slow way): an empty cell anywhere.
    regular = (
        delimiter + delimiter not in flat
        and not flat.startswith(delimiter)
        and not flat.endswith(delimiter)
        and "\r" not in text
        and " " not in delimiter
    )
    if regular:
        values = np.fromstring(flat, dtype=float, sep=delimiter)
        if values.size == width * count and text.count(delimiter) == (width - 1) * count:
            return values.reshape(count, width)
    rows = [["nan" if x == "" else x for x in line.split(delimiter)] for line in text.split("\n")]
    return np.array(rows).astype(float)


def _libsvm_matrix(text: str) -> Any:
    """A CSR matrix of libsvm lines (labels ignored, 1-based indices shifted as the image does)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    row: List[int] = []
    col: List[int] = []
    data: List[str] = []
    for index, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                key, value = item.split(":")[:2]
                row.append(index)
                col.append(int(key))
                data.append(value)
    cols = np.array(col).astype(int)
    if len(cols) > 0 and cols.min() >= 1:
        cols = cols - 1
    return csr_matrix((np.array(data).astype(float), (np.array(row), cols)))


def _recordio_features(payload: bytes) -> Any:
    try:  # run as a file (as in a step), its own folder is sys.path[0]
        from recordio_protobuf import read_matrix
    except ImportError:  # imported as part of the package (tests)
        from sagepipe.container.recordio_protobuf import read_matrix
    with tempfile.NamedTemporaryFile(suffix=".rec") as fh:
        fh.write(payload)
        fh.flush()
        features, _labels = read_matrix([fh.name])
    if features is None:
        raise ValueError("no records in the payload")
    return features


# ------------------------------------------------------------------------ framework script mode


def unsupported_format(content_type: str) -> InvocationError:
    """The inference toolkit's UnsupportedFormatError, as the 415 it answers."""
    return InvocationError(
        415,
        textwrap.dedent(
            """\
            Content type {} is not supported by this framework.

                Please implement input_fn to to deserialize the request data or an output_fn to
                serialize the response. For more information, see the SageMaker Python SDK README."""
        ).format(content_type),
    )


def decode(payload: bytes, content_type: str) -> Any:
    """The toolkit's default decoders: csv, json and npy to a numpy array."""
    import numpy as np

    kind = media_type(content_type)
    if kind == CSV:
        return np.genfromtxt(io.StringIO(payload.decode("utf-8")), delimiter=",")
    if kind == JSON:
        return np.array(json.loads(payload.decode("utf-8")))
    if kind == NPY:
        return np.load(io.BytesIO(payload), allow_pickle=True)
    raise unsupported_format(content_type)


def encode(value: Any, accept: str) -> bytes:
    """The toolkit's default encoders: an array-like to csv, json or npy."""
    import numpy as np

    kind = media_type(accept)
    if kind == CSV:
        stream = io.StringIO()
        np.savetxt(stream, value, delimiter=",", fmt="%s")
        return stream.getvalue().encode("utf-8")
    if kind == JSON:
        return json.dumps(
            value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)
        ).encode("utf-8")
    if kind == NPY:
        stream2 = io.BytesIO()
        np.save(stream2, value)
        return stream2.getvalue()
    raise unsupported_format(accept)


class ScriptMode:
    """A framework image serving the user's inference module, the toolkit's defaults around it."""

    def __init__(
        self, model_dir: str, code_dir: str, program: str, framework: str, version: str = ""
    ) -> None:
        self.model_dir = model_dir
        self.framework = framework
        self.version = version
        sys.path.insert(0, code_dir)
        name = program[:-3] if program.endswith(".py") else program
        try:
            self.module = importlib.import_module(name)  # type: Any
        except Exception as exc:
            raise InvocationError(
                500,
                f"cannot import the inference script {program!r}: {type(exc).__name__}: {exc}",
            ) from None
        self.model = None  # type: Any
        self.loaded = False
        handlers = [h for h in ("input_fn", "predict_fn", "output_fn") if self._hook(h)]
        if self._hook("transform_fn") and handlers:
            raise InvocationError(
                500,
                "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn",
            )

    def _hook(self, name: str) -> Optional[Callable[..., Any]]:
        found = getattr(self.module, name, None)
        return found if callable(found) else None

    def load(self) -> None:
        """``model_fn(model_dir)``, or the framework's default."""
        model_fn = self._hook("model_fn") or self._default_model_fn
        try:
            self.model = model_fn(self.model_dir)
        except InvocationError:
            raise
        except Exception as exc:
            traceback.print_exc()
            raise InvocationError(500, f"{type(exc).__name__}: {exc}") from None
        self.loaded = True

    def _default_model_fn(self, model_dir: str) -> Any:
        # No framework image loads a model for a script: XGBoost's too uses the toolkit's default.
        raise NotImplementedError(
            textwrap.dedent(
                """
                Please provide a model_fn implementation.
                See documentation for model_fn at https://github.com/aws/sagemaker-python-sdk
                """
            )
        )

    def invoke(self, payload: bytes, content_type: Optional[str], accept: str) -> bytes:
        """input_fn -> predict_fn -> output_fn (or transform_fn), as the toolkit's transformer."""
        if not self.loaded:
            self.load()
        content_type = content_type or JSON
        if accept in ("", "*/*"):
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        try:
            transform_fn = self._hook("transform_fn")
            if transform_fn is not None:
                result = transform_fn(self.model, payload, content_type, accept)
            else:
                data = (self._hook("input_fn") or self._default_input_fn)(payload, content_type)
                prediction = (self._hook("predict_fn") or self._default_predict_fn)(
                    data, self.model
                )
                result = (self._hook("output_fn") or encode)(prediction, accept)
        except InvocationError:
            raise
        except Exception as exc:
            traceback.print_exc()
            raise InvocationError(500, f"{type(exc).__name__}: {exc}") from None
        return _response_bytes(result)

    def _default_input_fn(self, payload: bytes, content_type: str) -> Any:
        if self.framework == "xgboost":
            kind = _xgboost_content_type(content_type)
            return _parse_xgboost(payload, kind, content_type)
        array = decode(payload, content_type)
        if media_type(content_type) in (CSV, JSON):
            return array.astype("float32")
        return array

    def _default_predict_fn(self, data: Any, model: Any) -> Any:
        if self.framework == "xgboost":
            return model.predict(data, validate_features=False)
        return model.predict(data)


def _response_bytes(result: Any) -> bytes:
    if isinstance(result, tuple) and result:  # (body, content type)
        result = result[0]
    if hasattr(result, "response") and not isinstance(result, (bytes, str)):
        result = result.response  # a framework Response object
    if isinstance(result, list) and result and isinstance(result[0], (bytes, str)):
        result = result[0] if isinstance(result[0], bytes) else "".join(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    raise InvocationError(500, f"output_fn returned {type(result).__name__}, not bytes or str")
