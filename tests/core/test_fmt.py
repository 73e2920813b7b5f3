import math

import numpy as np
import pytest

from offrec.core.fmt import MISSING, format_number, format_text_table


@pytest.mark.parametrize(
    ("value", "kwargs", "text"),
    [
        (1.26e-05, {}, "1.26e-05"),  # a tiny propensity stays visible (was 0.0000)
        (3.0254e-06, {}, "3.025e-06"),
        (0.03125, {}, "0.03125"),
        (0.0312456, {}, "0.03125"),
        (0.001, {}, "0.001000"),
        (0.2, {}, "0.2000"),
        (-0.5, {}, "-0.5000"),
        (9.99996, {}, "10.00"),  # rounding carries into the next power of ten
        (1234.5678, {}, "1,235"),
        (123456.7, {}, "123,457"),
        (1234567.0, {}, "1.235e+06"),
        (0.0, {}, "0"),
        (100000.0, {"integer": True}, "100,000"),  # a count that arrived as a float
        (100000.5, {"integer": True}, "100,000"),  # not integral: 4 significant digits
        (100000, {}, "100,000"),
        (np.int64(42), {}, "42"),
        (np.float32(0.25), {}, "0.2500"),
        (True, {}, "✓"),
        (np.bool_(False), {}, "✗"),
        (None, {}, MISSING),
        (float("nan"), {}, MISSING),
        (math.inf, {}, "∞"),
        ("dr", {}, "dr"),
        (0.123456, {"sig": 2}, "0.12"),
    ],
)
def test_format_number(value, kwargs, text):
    assert format_number(value, **kwargs) == text


def test_format_number_rejects_sig_below_one():
    with pytest.raises(ValueError, match="sig must be >= 1; got 0"):
        format_number(1.0, sig=0)


def test_text_table_aligns_numbers_right_and_text_left():
    text = format_text_table(
        ["topic", "rows", "pscore"],
        [["news", 100000.0, 1.26e-05], ["sports", 7.0, 0.5]],
        integer_columns=["rows"],
    )
    lines = text.splitlines()
    assert lines == [
        "topic      rows    pscore",
        "news    100,000  1.26e-05",
        "sports        7    0.5000",
    ]


def test_text_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="rows must have 2 cells .*row 1 has 1"):
        format_text_table(["a", "b"], [[1, 2], [3]])
