"""Read SageMaker's recordio-protobuf training data (``application/x-recordio-protobuf``).

The images read it with mlio, which the local environments do not install; this reads the same
files with the standard library and numpy/scipy. The framing is dmlc RecordIO (a magic word, a
length with a 3-bit continuation flag, the payload padded to 4 bytes) and each payload is an
``aialgs.data.Record`` message (``sagemaker/amazon/record.proto`` in the SageMaker Python SDK):
``features["values"]`` and ``label["values"]`` hold a Float32, Float64 or Int32 tensor, dense
(values) or sparse (keys and shape). Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035  (typing generics: this file runs on Python 3.6)
import struct
from typing import Any, Dict, Iterator, List, Tuple

MAGIC = 0xCED7230A
_LENGTH_MASK = (1 << 29) - 1
_TENSOR_TYPES = {2: "<f4", 3: "<f8", 7: "int32"}  # Value's oneof field number: element type


def records(path: str) -> Iterator[bytes]:
    """The payloads of one RecordIO file, split records joined again."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos, parts = 0, []  # type: int, List[bytes]
    while pos + 8 <= len(data):
        magic, header = struct.unpack_from("<II", data, pos)
        if magic != MAGIC:
            raise ValueError(f"{path}: not RecordIO (no magic number at byte {pos})")
        flag, length = header >> 29, header & _LENGTH_MASK
        payload = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (-length % 4)
        if flag == 0:
            yield payload
        elif flag == 1:
            parts = [payload]
        else:  # a record split where its own bytes held the magic number
            parts.append(payload)
            if flag == 3:
                yield struct.pack("<I", MAGIC).join(parts)


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[Tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value = 0  # type: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _packed_varints(buf: bytes) -> List[int]:
    out, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        out.append(value)
    return out


def tensor(value: bytes) -> Tuple[Any, List[int], List[int]]:
    """A ``Value`` message as (values array, keys, shape)."""
    import numpy as np

    for number, _wire, body in _fields(value):
        if number not in _TENSOR_TYPES:
            continue
        kind = _TENSOR_TYPES[number]
        chunks, keys, shape = [], [], []  # type: List[Any], List[int], List[int]
        for field, wire, item in _fields(body):
            if field == 1 and kind == "int32":
                ints = _packed_varints(item) if wire == 2 else [item]
                chunks.append(np.array([i - (1 << 64) if i >= 1 << 63 else i for i in ints]))
            elif field == 1:
                chunks.append(np.frombuffer(item, dtype=kind))
            elif field == 2:
                keys += _packed_varints(item) if wire == 2 else [item]
            elif field == 3:
                shape += _packed_varints(item) if wire == 2 else [item]
        values = np.concatenate(chunks) if chunks else np.zeros(0)
        return values.astype("float64"), keys, shape
    raise ValueError("a record value holds no numeric tensor")


def parse_record(payload: bytes) -> Dict[str, Dict[str, bytes]]:
    """A ``Record`` message as ``{"features": {name: Value}, "label": {name: Value}}``."""
    out = {"features": {}, "label": {}}  # type: Dict[str, Dict[str, bytes]]
    for number, _wire, body in _fields(payload):
        if number in (1, 2):
            name, value = "", b""
            for field, _w, item in _fields(body):
                if field == 1:
                    name = item.decode("utf-8")
                elif field == 2:
                    value = item
            out["features" if number == 1 else "label"][name] = value
    return out


def read_matrix(files: List[str]) -> Tuple[Any, Any]:
    """(features, labels) of the files: a numpy array when dense, scipy CSR when sparse."""
    import numpy as np
    from scipy import sparse

    rows, labels, sparse_rows = [], [], False
    width = 0
    for path in files:
        for payload in records(path):
            record = parse_record(payload)
            values, keys, shape = tensor(record["features"]["values"])
            if keys:
                sparse_rows = True
                width = max(width, int(shape[0]) if shape else max(keys) + 1)
            else:
                width = max(width, len(values))
            rows.append((values, keys))
            label = record["label"].get("values")
            labels.append(tensor(label)[0][0] if label else np.nan)
    if not rows:
        return None, None
    if sparse_rows:
        data, cols, indptr = [], [], [0]  # type: List[float], List[int], List[int]
        for values, keys in rows:
            cols.extend(keys if keys else range(len(values)))
            data.extend(values)
            indptr.append(len(data))
        matrix = sparse.csr_matrix((data, cols, indptr), shape=(len(rows), width))
    else:
        matrix = np.vstack([values for values, _keys in rows])
    return matrix, np.array(labels)
