"""Numbers for people: one formatter shared by reports and the command line.

Rules (:func:`format_number`):

- booleans print as ``✓`` / ``✗``;
- integers (and integral floats when ``integer=True``) print with thousands
  separators: ``100,000``, never ``100000.000000``;
- other floats keep ``sig`` significant digits whatever their size, so a small
  propensity stays visible: ``1.26e-05``, never ``0.0000``; magnitudes in
  ``[1e-3, 1e6)`` print in fixed notation (``0.03125``, ``1,234.6``), smaller or larger
  ones in scientific notation;
- missing values (None, nan) print as an em dash ``—``; infinities as ``∞`` / ``-∞``.

:func:`format_text_table` aligns such cells into a plain-text table (numbers right,
text left) for terminals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

MISSING = "—"
"""How a missing value (None or nan) prints."""


def format_number(value: Any, sig: int = 4, *, integer: bool = False) -> str:
    """``value`` as text for a person (see the module docstring for the rules).

    Args:
        value: a bool, an integer, a float (numpy scalars included), None, or anything
            else (printed with ``str``).
        sig: significant digits of non-integral floats, at least 1.
        integer: print integral floats as integers (for count columns that arrive as
            floats, e.g. from a SQL ``sum``).

    >>> format_number(1.2634e-05), format_number(0.0312456), format_number(100000.0, integer=True)
    ('1.263e-05', '0.03125', '100,000')
    >>> format_number(True), format_number(float("nan")), format_number(1234.5678)
    ('✓', '—', '1,235')
    """
    if sig < 1:
        raise ValueError(f"sig must be >= 1; got {sig!r}")
    if value is None:
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "✓" if value else "✗"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if not isinstance(value, Real):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if integer and v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if v == 0.0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    # rounding may carry into the next power of ten (9.9996 -> 10.00)
    if abs(round(v, sig - 1 - mag)) >= 10.0 ** (mag + 1):
        mag += 1
    if -3 <= mag < 6:
        decimals = max(0, sig - 1 - mag)
        return f"{v:,.{decimals}f}"
    mantissa, _, exponent = f"{v:.{sig - 1}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{exponent}"


def is_number(value: Any) -> bool:
    """True for values :func:`format_number` treats as numbers (right-aligned in tables)."""
    return value is None or isinstance(value, Real | np.bool_)


def format_text_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    sig: int = 4,
    integer_columns: Sequence[str] = (),
) -> str:
    """A plain-text table: a header line, then one line per row, cells formatted by
    :func:`format_number`, numbers right-aligned and text left-aligned.

    Args:
        columns: header names, ``(k,)``.
        rows: each ``(k,)``.
        sig: significant digits of floats.
        integer_columns: names of columns whose integral floats print as integers.

    >>> rows = [["news", 12000, 0.0312], ["sports", 800, 1.2e-05]]
    >>> print(format_text_table(["topic", "rows", "ctr"], rows))
    topic     rows      ctr
    news    12,000  0.03120
    sports     800  1.2e-05
    """
    k = len(columns)
    for i, row in enumerate(rows):
        if len(row) != k:
            raise ValueError(f"rows must have {k} cells (one per column); row {i} has {len(row)}")
    ints = set(integer_columns)
    cells = [
        [format_number(v, sig, integer=columns[j] in ints) for j, v in enumerate(row)]
        for row in rows
    ]
    numeric = [all(is_number(row[j]) for row in rows) and bool(rows) for j in range(k)]
    widths = [max([len(str(columns[j]))] + [len(c[j]) for c in cells]) for j in range(k)]

    def line(items: Sequence[str]) -> str:
        out = [
            s.rjust(widths[j]) if numeric[j] else s.ljust(widths[j]) for j, s in enumerate(items)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line([str(c) for c in columns]), *(line(c) for c in cells)])
