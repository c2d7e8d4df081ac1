"""The fast csv parse of a payload gives what the XGBoost image's own parse gives, or takes it.

The image splits the text into lists of strings (an empty cell is NaN) and converts them; the
fast way parses the flattened text with numpy where that is the same. Every case here compares
the two, errors included; the blank-line test of the batch agent is checked against its regex.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sagepipe.container.batch_transform import _BLANK_LINE, _maybe_blank
from sagepipe.container.serving import _csv_matrix


def image_parse(text: str, delimiter: str) -> np.ndarray:
    rows = [["nan" if x == "" else x for x in line.split(delimiter)] for line in text.split("\n")]
    return np.array(rows).astype(float)


CASES = [
    ("1,2,3\n4,5,6", ","),
    ("0.1,1e-3,-2.5E+4\n7,8,9", ","),
    ("1,,3\n4,5,6", ","),
    (",2,3\n4,5,6", ","),
    ("1,2,3\n4,5,", ","),
    ("1,2,\n4,5,6", ","),
    ("1,2,3\n,5,6", ","),
    ("1,2,3\n4,5,6,", ","),
    ("1,2\n3,4,5", ","),
    ("1,2,3\n\n4,5,6", ","),
    ("1,2,3\r\n4,5,6", ","),
    (" 1, 2,3\n4 ,5,6", ","),
    ("1;2;3\n4;5;6", ";"),
    ("1;;3\n4;5;6", ";"),
    ("1\t2\n3\t4", "\t"),
    ("1 2\n3 4", " "),
    ("1,a,3\n4,5,6", ","),
    ("nan,inf,-inf\n1,2,3", ","),
    ("0.30000000000000004,1.7976931348623157e308,5e-324", ","),
    ("7", ","),
]


@pytest.mark.parametrize(("text", "delimiter"), CASES)
def test_the_fast_parse_is_the_image_s(text: str, delimiter: str) -> None:
    try:
        want = image_parse(text, delimiter)
    except ValueError:
        with pytest.raises(ValueError):
            _csv_matrix(text, delimiter)
        return
    got = _csv_matrix(text, delimiter)
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize(
    "chunk",
    [b"1,2\n3,4", b"1,2\n\n3,4", b"\n1,2", b" 1,2\n3", b"1,2\n \n3", b"1 2\n3 4", b"1,2\n\t3",
     b"1,2\r\n3,4", b"1,2\n\r\n3", b"1\t2\n3\t4", b"a b", b"a\n b"],
)  # fmt: skip
def test_the_cheap_blank_line_test_never_misses_one(chunk: bytes) -> None:
    if _BLANK_LINE.search(chunk):
        assert _maybe_blank(chunk)
    assert _maybe_blank(chunk) == bool(re.search(rb"(?:^|\n)[\n \t\r]", chunk))
