"""The batch agent's own parts: JSONPath filters, record splitting, mini-batches, joins."""

from __future__ import annotations

import io
import json
import struct

import pytest

from sagepipe.container.batch_transform import (
    AgentError,
    Record,
    batches,
    join,
    line_batches,
    parse_path,
    read_records,
    select,
)
from sagepipe.container.serving import RECORDIO_MAGIC, InvocationError, media_type


@pytest.mark.parametrize(
    ("path", "value", "selected"),
    [
        ("$[1:]", ["a", "b", "c"], ["b", "c"]),
        ("$[0,-1]", ["a", "b", "c"], ["a", "c"]),
        ("$[-1]", ["a", "b", "c"], "c"),
        ("$[:2]", ["a", "b", "c"], ["a", "b"]),
        ("$[*]", ["a", "b"], ["a", "b"]),
        ("$.features", {"features": [1, 2]}, [1, 2]),
        ("$['features'][0]", {"features": [1, 2]}, 1),
        ("$.a.b", {"a": {"b": 3}}, 3),
        (
            "$['id','SageMakerOutput']",
            {"id": 1, "x": 2, "SageMakerOutput": 3},
            {"id": 1, "SageMakerOutput": 3},
        ),
    ],
)
def test_jsonpath_subset_selects_as_sagemaker_documents(
    path: str, value: object, selected: object
) -> None:
    assert select(value, parse_path(path)) == selected


@pytest.mark.parametrize("path", ["features", "$[a]", "$..x", "$[1:x]"])
def test_jsonpath_outside_the_subset_is_refused_naming_it(path: str) -> None:
    with pytest.raises(AgentError, match="JSONPath"):
        parse_path(path)


def test_a_filter_that_selects_nothing_names_the_record() -> None:
    with pytest.raises(AgentError, match="selects nothing in the record"):
        select(["a"], parse_path("$[3]"))


def records(data: bytes, split: str) -> list[bytes]:
    return list(read_records(io.BytesIO(data), split))


def test_line_split_drops_blank_lines_and_recordio_split_keeps_frames() -> None:
    assert records(b"1,2\n\n3,4\n", "Line") == [b"1,2", b"3,4"]
    assert records(b"1,2\n3,4", "Line") == [b"1,2", b"3,4"]
    assert records(b"whole\nfile", "None") == [b"whole\nfile"]
    assert records(b"", "None") == []
    frame = struct.pack("<II", RECORDIO_MAGIC, 5) + b"abcde\0\0\0"
    assert records(frame * 2, "RecordIO") == [frame, frame]
    with pytest.raises(AgentError, match="not RecordIO: no magic number at byte 32"):
        records(frame * 2 + b"x" * 8, "RecordIO")


def test_multi_record_batches_fill_the_payload_and_single_record_sends_one() -> None:
    five = [b"aaaa"] * 5  # 4 bytes each, a newline between
    assert [len(c) for c in batches(five, "MultiRecord", 14, "Line")] == [3, 2]
    assert [len(c) for c in batches(five, "SingleRecord", 14, "Line")] == [1] * 5
    assert [len(c) for c in batches(five, "MultiRecord", 0, "Line")] == [5]
    assert list(batches(iter([]), "MultiRecord", 14, "Line")) == []
    with pytest.raises(AgentError, match="exceeds MaxPayloadInMB"):
        list(batches([b"x" * 20], "MultiRecord", 10, "Line"))


def test_join_appends_to_csv_and_adds_sagemaker_output_to_json() -> None:
    assert join(Record(b"id1,0.5,2", False), b"7.25") == ["id1", "0.5", "2", "7.25"]
    assert join(Record(b'{"id": 1}', True), b"[0.1, 0.9]") == {
        "id": 1,
        "SageMakerOutput": [0.1, 0.9],
    }
    assert join(Record(b"[1, 2]", True), b"3") == [1, 2, 3]
    assert json.loads(Record.render({"a": 1}, True)) == {"a": 1}
    assert Record.render(["a", "b"], False) == b"a,b"


def test_media_type_ignores_parameters_and_case() -> None:
    assert media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert media_type(None) == ""
    assert InvocationError(415, "no").status == 415


def test_image_versions_order_as_the_container_s_releases() -> None:
    from sagepipe.container.serving import image_version

    assert (
        image_version("1.7-1")
        == (1, 7, 1)
        > image_version("1.2-2")
        > image_version("1.0-1-cpu-py3")
    )
    assert image_version("latest") == (99,)


@pytest.mark.parametrize("limit", [0, 5, 9, 14, 40])
@pytest.mark.parametrize(
    "data", [b"aaaa\nbbbb\ncccc\ndd\ne\n", b"aaaa\n\n  \nbbbb\ncc", b"\n\n", b""]
)
def test_line_batches_cut_from_the_stream_are_the_record_batches(data: bytes, limit: int) -> None:
    want = [
        (b"\n".join(chunk), len(chunk))
        for chunk in batches(records(data, "Line"), "MultiRecord", limit, "Line")
    ]
    got = list(line_batches(io.BytesIO(data), limit))
    if b"\n\n" not in data:
        assert got == want
    else:  # blank lines count against the payload here: the same records, cut earlier
        assert b"\n".join(c for c, _ in got) == b"\n".join(c for c, _ in want)
        assert sum(n for _, n in got) == sum(n for _, n in want)
        assert all(len(c) <= limit for c, _ in got) or not limit


def test_a_line_longer_than_the_payload_is_refused_when_cut_from_the_stream() -> None:
    with pytest.raises(AgentError, match="exceeds MaxPayloadInMB"):
        list(line_batches(io.BytesIO(b"aaaaaaaaaa\nb\n"), 5))
