"""Size limits of a world: a clear error before numpy would try to allocate the impossible.

:class:`~offrec.sim.world.World` holds per-user arrays (profile ``p_u``, latent ``w_u``,
observed profile ``x_u``: ``n_users x (2 n_topics + latent_dim)`` float64) and per-item
arrays (latent ``v_i``, quality, topic one-hot: ``n_items x (latent_dim + n_topics + 2)``
float64). :func:`check_world_size` estimates these bytes and refuses a configuration that
needs more than a share of the machine's memory, naming the field that dominates.

Work that scales with a user-given size (rows per batch x items, horizon, resamples) is
checked with :func:`check_memory` before it starts; :func:`measured_bytes` gives the
estimate of code whose allocations depend on the policy (dense or sparse) by running it
on a few units.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from offrec.core.errors import InputError

MEMORY_SHARE = 0.5
"""A world may use at most this share of physical memory (the rest is for the batches)."""


def physical_memory() -> int:
    """Bytes of physical memory (a conservative 8 GB when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


def world_bytes(config: Any) -> dict[str, int]:
    """Estimated bytes of a world's arrays: ``{"n_users": ..., "n_items": ...}``."""
    T, K = int(config.n_topics), int(config.latent_dim)
    return {
        "n_users": 8 * int(config.n_users) * (2 * T + K),
        "n_items": 8 * int(config.n_items) * (K + T + 2),
    }


def check_world_size(config: Any, limit: int | None = None) -> None:
    """Raise ``InputError`` when a world built from ``config`` would need more than
    ``limit`` bytes (default :data:`MEMORY_SHARE` of physical memory)."""
    from offrec.core.atomic import format_bytes

    limit = int(MEMORY_SHARE * physical_memory()) if limit is None else limit
    parts = world_bytes(config)
    total = sum(parts.values())
    if total > limit:
        field = max(parts, key=lambda k: parts[k])
        size = int(getattr(config, field))
        room = limit - (total - parts[field])  # what the other arrays leave to this one
        fits = max(0, int(room // max(1, parts[field] // max(1, size))))
        raise InputError(
            f"{field}={size:,} is too large: the world would need about "
            f"{format_bytes(total)} of memory (limit {format_bytes(limit)}, "
            f"{MEMORY_SHARE:.0%} of this machine's); use {field} <= {fits:,} (what fits), "
            "or a machine with more memory"
        )


def check_memory(need: int, what: str, advice: str, limit: int | None = None) -> None:
    """Raise ``InputError`` before any allocation when ``need`` bytes (an estimate of the
    peak of ``what``) exceed ``limit`` (default :data:`MEMORY_SHARE` of physical memory);
    the message gives the figure and ``advice`` (what to change)."""
    from offrec.core.atomic import format_bytes

    limit = int(MEMORY_SHARE * physical_memory()) if limit is None else limit
    if need > limit:
        raise InputError(
            f"{what} would need about {format_bytes(need)} of memory at its peak (limit "
            f"{format_bytes(limit)}, {MEMORY_SHARE:.0%} of this machine's): {advice}"
        )


def measured_bytes(
    run: Callable[[int], Any], sizes: tuple[int, int] = (8, 32)
) -> tuple[float, float]:
    """``(fixed, per_unit)``: the peak bytes ``run(n)`` allocates, as ``fixed + per_unit * n``,
    from running it at the two ``sizes`` under :mod:`tracemalloc` (numpy arrays are
    traced). So an estimate follows what the code really allocates: a dense
    ``(n, n_items)`` array shows up in ``per_unit``, a sparse form does not."""
    import tracemalloc

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    peaks = []
    try:
        for n in sizes:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            run(n)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    (a, pa_), (b, pb) = zip(sizes, peaks, strict=True)
    per_unit = max((pb - pa_) / (b - a), 0.0)
    return max(pa_ - per_unit * a, 0.0), per_unit


__all__ = [
    "MEMORY_SHARE",
    "check_memory",
    "check_world_size",
    "measured_bytes",
    "physical_memory",
    "world_bytes",
]
