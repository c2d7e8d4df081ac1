"""A batch transform job, as SageMaker's batch agent runs one against a model container.

Run inside a transform step's sandbox on the model image environment's Python::

    python batch_transform.py [--root /opt/ml] --job /opt/ml/transform/job.json

``job.json`` holds the CreateTransformJob settings the agent applies around the container and
how to serve the model (``serving.py`` beside this file). For each file under
``transform/input`` (sorted, folders kept): decompress (CompressionType Gzip), split into
records (SplitType None | Line | RecordIO), apply DataProcessing.InputFilter, send records in
mini-batches (BatchStrategy SingleRecord | MultiRecord, up to MaxPayloadInMB), join the results
with their input (JoinSource Input), apply OutputFilter and write ``transform/output/<file>.out``
(AssembleWith None | Line). The model is loaded once for the whole job.

Filters are the JSONPath subset SageMaker documents for them: ``$``, ``$[1:]``, ``$[0,2]``,
``$[-1]``, ``$.key``, ``$['key']`` and chains of those. A CSV record is a list of its fields
(text kept as written); a JSON record is the parsed value. A join appends the output to a CSV
record, adds it as ``SageMakerOutput`` to a JSON object and appends it to a JSON array.

A failure prints the container's status and message, writes it to ``output/failure`` and exits
1. Standard library and the image's packages only; Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import argparse
import gzip
import json
import os
import re
import struct
import sys
import traceback
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

try:  # run as a file (as in a step), its own folder is sys.path[0]
    from serving import (
        CSV,
        MIB,
        RECORDIO_MAGIC,
        ROOT_VARIABLE,
        InvocationError,
        ScriptMode,
        XGBoostAlgorithm,
        media_type,
    )
except ImportError:  # imported as part of the package (tests)
    from sagepipe.container.serving import (
        CSV,
        MIB,
        RECORDIO_MAGIC,
        ROOT_VARIABLE,
        InvocationError,
        ScriptMode,
        XGBoostAlgorithm,
        media_type,
    )

STATUS_TEXT = {
    400: "Bad Request",
    406: "Not Acceptable",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}
_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r]*(?:\n|$)")
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[([^\]]*)\]")


class AgentError(Exception):
    """A job setting or an input the batch agent refuses."""


# ------------------------------------------------------------------------ JSONPath filters


def parse_path(path: str) -> List[Tuple[str, Any]]:
    """``$[1:]`` -> ``[("slice", (1, None))]``; AgentError for what the subset lacks."""
    text = path.strip()
    if not text.startswith("$"):
        raise AgentError(f"JSONPath {path!r} must start with $")
    steps = []  # type: List[Tuple[str, Any]]
    pos = 1
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            raise AgentError(f"JSONPath {path!r}: cannot read {text[pos:]!r}")
        pos = match.end()
        if match.group(1) is not None:
            steps.append(("key", match.group(1)))
            continue
        inner = match.group(2).strip()
        if inner == "*":
            steps.append(("slice", (None, None)))
        elif "," in inner:
            steps.append(("pick", [_member(i, path) for i in inner.split(",")]))
        elif inner[:1] in ("'", '"'):
            steps.append(("key", _member(inner, path)))
        elif ":" in inner:
            start, _, stop = inner.partition(":")
            steps.append(("slice", (_int(start, path), _int(stop, path))))
        else:
            steps.append(("index", _int(inner, path)))
    return steps


def _member(text: str, path: str) -> Any:
    """A quoted key (``'id'``) or an index."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in ("'", '"'):
        return text[1:-1]
    return _int(text, path)


def _int(text: str, path: str) -> Optional[int]:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise AgentError(f"JSONPath {path!r}: {text!r} is not an index") from None


def select(value: Any, steps: List[Tuple[str, Any]]) -> Any:
    """Apply parsed JSONPath ``steps`` to ``value``."""
    for kind, arg in steps:
        try:
            if kind == "key" or kind == "index":
                value = value[arg]
            elif kind == "slice":
                value = value[arg[0] : arg[1]]
            elif isinstance(value, dict):
                value = {k: value[k] for k in arg}
            else:
                value = [value[i] for i in arg]
        except (KeyError, IndexError, TypeError):
            raise AgentError(f"the filter selects nothing in the record {_short(value)}") from None
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------------ records


def read_records(stream: Any, split: str) -> Iterator[bytes]:
    """A file's records as they are read: the whole file, its lines, or its RecordIO records."""
    if split == "Line":
        for line in stream:
            record = line.rstrip(b"\n")
            if record.strip():
                yield record
    elif split == "RecordIO":
        pos = 0
        while True:
            header = stream.read(8)
            if not header:
                return
            magic, word = struct.unpack("<II", header) if len(header) == 8 else (0, 0)
            if magic != RECORDIO_MAGIC:
                raise AgentError(f"not RecordIO: no magic number at byte {pos}")
            length = word & ((1 << 29) - 1)
            body = stream.read(length + (-length % 4))
            pos += 8 + len(body)
            yield header + body
    else:
        data = stream.read()
        if data:
            yield data


def batches(
    records: Iterable[bytes], strategy: str, max_bytes: int, split: str
) -> Iterator[List[bytes]]:
    """The mini-batches: one record each, or as many as fit in ``max_bytes`` (0: no limit)."""
    sep = 1 if split == "Line" else 0
    chunk = []  # type: List[bytes]
    size = 0
    for record in records:
        if max_bytes and len(record) > max_bytes:
            raise AgentError(
                f"a record of {len(record)} bytes exceeds MaxPayloadInMB ({max_bytes / MIB:g} MB)"
            )
        full = strategy != "MultiRecord" or (max_bytes and size + sep + len(record) > max_bytes)
        if chunk and full:
            yield chunk
            chunk, size = [], 0
        size += (sep if chunk else 0) + len(record)
        chunk.append(record)
    if chunk:
        yield chunk


def line_batches(stream: Any, max_bytes: int) -> Iterator[Tuple[bytes, int]]:
    """MultiRecord batches of lines cut straight from the stream: (payload, record count).

    The same batches as :func:`batches` over :func:`read_records` (as many whole lines as fit
    in ``max_bytes``; 0: no limit) without handling each line in Python. Blank lines are
    dropped as there, but they count against the payload here, so a batch may end earlier.
    """
    buf, eof = b"", False
    while True:
        while not eof and (not max_bytes or len(buf) <= max_bytes):
            more = stream.read(max_bytes + 1 - len(buf)) if max_bytes else stream.read()
            eof = not more or not max_bytes
            buf += more
        if eof and not buf.strip():
            return
        if eof and (not max_bytes or len(buf) <= max_bytes):
            chunk, buf = buf, b""
        else:
            cut = buf.rfind(b"\n", 0, max_bytes + 1)
            if cut < 0:
                raise AgentError(f"a record exceeds MaxPayloadInMB ({max_bytes / MIB:g} MB)")
            chunk, buf = buf[:cut], buf[cut + 1 :]
        if _maybe_blank(chunk) and _BLANK_LINE.search(chunk):
            chunk = b"\n".join(line for line in chunk.split(b"\n") if line.strip())
        chunk = chunk.rstrip(b"\n")
        if chunk.strip():
            yield chunk, chunk.count(b"\n") + 1


def _maybe_blank(chunk: bytes) -> bool:
    """Cheap test before the regex: could a line of ``chunk`` be empty or whitespace only?

    A two-byte search is slow where newlines are frequent: the one-byte searches for the
    rarer whitespace go first, and the pairs are searched only when one is found.
    """
    if chunk[:1] in (b"\n", b" ", b"\t", b"\r") or b"\n\n" in chunk:
        return True
    return any(c in chunk for c in (b" ", b"\t", b"\r")) and any(
        marker in chunk for marker in (b"\n ", b"\n\t", b"\n\r")
    )


class Record:
    """One input record as the filters see it: CSV fields or a JSON value."""

    def __init__(self, raw: bytes, is_json: bool) -> None:
        self.raw = raw
        self.is_json = is_json
        text = raw.decode("utf-8").rstrip("\r")
        self.value = json.loads(text) if is_json else text.split(",")  # type: Any

    @staticmethod
    def render(value: Any, is_json: bool) -> bytes:
        """A filtered or joined value back to a record's text."""
        if is_json:
            return json.dumps(value).encode("utf-8")
        if isinstance(value, list):
            return ",".join(str(v) for v in value).encode("utf-8")
        return str(value).encode("utf-8")


def join(record: Record, output: bytes) -> Any:
    """The input record with its output appended (CSV, JSON array) or under SageMakerOutput."""
    text = output.decode("utf-8").rstrip("\r\n")
    if not record.is_json:
        return record.value + text.split(",")
    try:
        result = json.loads(text)  # type: Any
    except ValueError:
        result = text
    if isinstance(record.value, dict):
        joined = dict(record.value)
        joined["SageMakerOutput"] = result
        return joined
    if isinstance(record.value, list):
        return [*record.value, result]
    raise AgentError(
        f"JoinSource Input needs JSON objects or arrays; the record is {_short(record.value)}"
    )


# ------------------------------------------------------------------------ the job


class Job:
    """One transform job's settings (``job.json``) and its model server."""

    def __init__(self, settings: Dict[str, Any], root: str) -> None:
        self.root = root
        self.content_type = settings.get("ContentType")  # type: Optional[str]
        self.split = settings.get("SplitType") or "None"
        self.compression = settings.get("CompressionType") or "None"
        self.strategy = settings.get("BatchStrategy") or "MultiRecord"
        self.max_bytes = int(float(settings.get("MaxPayloadInMB") or 6) * MIB)
        self.accept = settings.get("Accept") or ""
        self.assemble = settings.get("AssembleWith") or "None"
        processing = settings.get("DataProcessing") or {}
        self.input_filter = _filter(processing.get("InputFilter"))
        self.output_filter = _filter(processing.get("OutputFilter"))
        self.join_input = processing.get("JoinSource") == "Input"
        self.is_json = media_type(self.content_type) in (
            "application/json",
            "application/jsonlines",
        )
        self.per_record = bool(self.input_filter or self.output_filter or self.join_input)
        if self.per_record and self.split != "Line":
            raise AgentError("DataProcessing filters and JoinSource need SplitType Line")
        if self.per_record and not self.is_json and media_type(self.content_type) != CSV:
            raise AgentError(
                "DataProcessing filters and JoinSource need text/csv or JSON (application/json, "
                "application/jsonlines) input"
            )
        model = os.path.join(root, "model")
        version = str(settings.get("ImageVersion") or "")
        if settings.get("Program"):
            code = os.path.join(root, "code")
            if not os.path.isdir(code):
                code = os.path.join(model, "code")
            self.server = ScriptMode(
                model, code, settings["Program"], settings.get("Framework", ""), version
            )  # type: Any
        else:
            self.server = XGBoostAlgorithm(model, version)

    def transform_file(self, source: str, target: str) -> int:
        """Transform one input file into ``target``, streaming; returns the number of records."""
        sep = b"\n" if self.split == "Line" else b""
        count = 0
        opener = gzip.open if self.compression == "Gzip" else open
        with opener(source, "rb") as stream, open(target, "wb") as out:
            if self.split == "Line" and self.strategy == "MultiRecord" and not self.per_record:
                for payload, size in line_batches(stream, self.max_bytes):
                    count += size
                    self._write(out, self.server.invoke(payload, self.content_type, self.accept))
                return count
            records = read_records(stream, self.split)
            for chunk in batches(records, self.strategy, self.max_bytes, self.split):
                count += len(chunk)
                if not self.per_record:
                    self._write(
                        out, self.server.invoke(sep.join(chunk), self.content_type, self.accept)
                    )
                    continue
                parsed = [Record(r, self.is_json) for r in chunk]
                sent = [
                    Record.render(select(r.value, self.input_filter), self.is_json)
                    if self.input_filter
                    else r.raw
                    for r in parsed
                ]
                response = self.server.invoke(b"\n".join(sent), self.content_type, self.accept)
                lines = [line for line in response.split(b"\n") if line.strip()]
                if len(lines) != len(parsed):
                    raise AgentError(
                        f"the model returned {len(lines)} records for {len(parsed)} input records; JoinSource and "
                        "OutputFilter need one output line per record"
                    )
                for record, line in zip(parsed, lines):  # noqa: B905 (Python 3.6)
                    if self.join_input:
                        value, as_json = join(record, line), self.is_json
                    else:
                        value, as_json = _output_value(line)
                    if self.output_filter:
                        value = select(value, self.output_filter)
                    self._write(out, Record.render(value, as_json))
        return count

    def _write(self, out: Any, body: bytes) -> None:
        out.write(body)
        if self.assemble == "Line" and not body.endswith(b"\n"):
            out.write(b"\n")


def _output_value(line: bytes) -> Tuple[Any, bool]:
    """An output line as the output filter sees it, and whether it is JSON."""
    text = line.decode("utf-8").rstrip("\r")
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text), True
        except ValueError:
            pass
    return text.split(","), False


def _filter(path: Optional[str]) -> Optional[List[Tuple[str, Any]]]:
    if not path or path.strip() == "$":
        return None
    return parse_path(path)


def input_files(folder: str) -> List[str]:
    """Relative paths of the input files, sorted, hidden files included as SageMaker does."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            found.append(os.path.relpath(os.path.join(top, name), folder))
    return found


def fail(root: str, message: str) -> int:
    """Say why the job failed, where the runner reads it, and return the exit status."""
    sys.stderr.write(message + "\n")
    folder = os.path.join(root, "output")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "failure"), "w") as fh:
        fh.write(message)
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    """Run the job that ``--job`` describes; 0 when every file was transformed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", default=os.environ.get(ROOT_VARIABLE, "/opt/ml"))
    parser.add_argument("--job", default=None)
    args = parser.parse_args(argv)
    root = args.root
    os.environ["SAGEMAKER_BATCH"] = "true"
    with open(args.job or os.path.join(root, "transform", "job.json")) as fh:
        settings = json.load(fh)
    source = os.path.join(root, "transform", "input")
    target = os.path.join(root, "transform", "output")
    current = ""
    try:
        job = Job(settings, root)
        job.server.load()
        for rel in input_files(source):
            current = rel
            os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
            count = job.transform_file(
                os.path.join(source, rel), os.path.join(target, rel + ".out")
            )
            print(f"transformed {rel} ({count} records)", flush=True)
    except InvocationError as exc:
        where = f" for input {current}" if current else ""
        status = "{} {}".format(exc.status, STATUS_TEXT.get(exc.status, ""))
        return fail(
            root,
            f"ClientError: Bad HTTP status received from algorithm{where}: {status.strip()}. {exc.message.strip()}",
        )
    except (AgentError, OSError, ValueError) as exc:
        where = f" ({current})" if current else ""
        return fail(root, f"ClientError{where}: {exc}")
    except Exception as exc:  # the container's own fault: say what, keep the traceback in the log
        traceback.print_exc()
        return fail(root, f"AlgorithmError: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
