"""Input checks shared by every entry point.

Each check raises ``ValueError`` (or ``TypeError``) whose message names the
field, the rule and the offending value, e.g.
``"pscore must be in (0, 1]; row 17 has 0.0"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed`` (int, SeedSequence, Generator or None)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise InputTypeError(f"seed must be an int, a numpy Generator or None; got {seed!r}")
    if seed is not None and seed < 0:
        raise InputError(f"seed must be >= 0; got {seed}")
    return np.random.default_rng(seed)


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """Return a ``SeedSequence`` for ``seed`` so components can ``spawn`` independent streams."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(0, 2**63 - 1)))
    as_generator(seed)  # validates type and sign
    return np.random.SeedSequence(seed)


def check_scalar(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    *,
    min: float | None = None,
    max: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> None:
    """Check type and bounds of a scalar; the error names ``name``, the rule and ``value``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok_type = isinstance(value, kinds) and not isinstance(value, bool)
    if float in kinds and isinstance(value, int | np.integer) and not isinstance(value, bool):
        ok_type = True
    if not ok_type:
        names = " or ".join(k.__name__ for k in kinds)
        raise InputTypeError(f"{name} must be {names}; got {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{name} must be finite; got {value!r}")
    if min is not None and (value < min if min_inclusive else value <= min):
        rule = ">=" if min_inclusive else ">"
        raise InputError(f"{name} must be {rule} {min}; got {value!r}")
    if max is not None and (value > max if max_inclusive else value >= max):
        rule = "<=" if max_inclusive else "<"
        raise InputError(f"{name} must be {rule} {max}; got {value!r}")


def first_bad(mask: np.ndarray) -> int:
    """Index of the first True entry of a boolean mask (first offending row)."""
    return int(np.flatnonzero(np.asarray(mask).reshape(len(mask), -1).any(axis=1))[0])


def check_known_keys(data: Any, cls: type, what: str) -> None:
    """Check that ``data`` is a mapping whose keys are fields of the dataclass ``cls``.

    Raises ``TypeError`` for a non-mapping and ``ValueError`` listing the unknown keys and
    the valid ones, e.g. ``"unknown world config key(s) ['n_itemz']; valid keys: n_items, ..."``.
    """
    from dataclasses import fields

    if not isinstance(data, dict):
        raise InputTypeError(f"{what} must be a mapping; got {type(data).__name__}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise InputError(f"unknown {what} key(s) {unknown}; valid keys: {', '.join(valid)}")
