"""The slate log rules (every slot present once, no item twice in a slate), checked by
:func:`offrec.logs.reader.read_logs` on every log whose metadata declares a slate layout
(:data:`offrec.logs.schema.SLATE_COLUMNS`)."""

from __future__ import annotations

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import first_bad
from offrec.logs.data import LoggedData


def check_slate_rows(
    session_id: np.ndarray,
    step: np.ndarray,
    position: np.ndarray,
    action: np.ndarray,
    slate_size: int,
) -> None:
    """The slate rules: every slate (``session_id``, ``step``) holds positions
    ``0..slate_size-1`` exactly once, and no item twice. Errors name the slate and rule.
    One ``lexsort``; no loop over slates."""
    K = slate_size
    n = len(position)
    if position.min() < 0 or position.max() >= K:
        i = first_bad((position < 0) | (position >= K))
        raise InputError(
            f"position must be in [0, {K}) (slate_size); row {i} has {int(position[i])}"
        )
    order = np.lexsort((position, step, session_id))
    s, t = session_id[order], step[order]
    starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])])
    sizes = np.diff(np.r_[starts, n])
    bad = sizes != K
    if not bad.any():
        grid = position[order].reshape(-1, K)
        bad = (grid != np.arange(K)).any(axis=1)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        got = position[order][starts[j] : starts[j] + sizes[j]].tolist()
        raise InputError(
            f"every slate must hold positions 0..{K - 1} exactly once; slate (session_id "
            f"{int(s[starts[j]])}, step {int(t[starts[j]])}) has positions {got}"
        )
    items = np.sort(action[order].reshape(-1, K), axis=1)
    twice = (items[:, 1:] == items[:, :-1]).any(axis=1)
    if twice.any():
        j = int(np.flatnonzero(twice)[0])
        raise InputError(
            f"a slate must not show an item twice; slate (session_id {int(s[starts[j]])}, "
            f"step {int(t[starts[j]])}) shows {action[order][starts[j] : starts[j] + K].tolist()}"
        )


def slate_rules_from_metadata(data: LoggedData) -> None:
    """Check the slate rules on a log whose metadata declares a slate layout (a no-op
    otherwise); :func:`~offrec.logs.reader.read_logs` calls it."""
    meta = data.metadata.get("slate")
    if not isinstance(meta, dict):
        return
    size = meta.get("slate_size")
    if not isinstance(size, int) or size < 1:
        raise InputError(f"slate metadata slate_size must be an int >= 1; got {size!r}")
    check_slate_rows(data.session_id, data.step, data.position, data.action, size)


__all__ = ["check_slate_rows", "slate_rules_from_metadata"]
