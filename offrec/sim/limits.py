"""Size limits of a world: a clear error before numpy would try to allocate the impossible.

:class:`~offrec.sim.world.World` holds per-user arrays (profile ``p_u``, latent ``w_u``,
observed profile ``x_u``: ``n_users x (2 n_topics + latent_dim)`` float64) and per-item
arrays (latent ``v_i``, quality, topic one-hot: ``n_items x (latent_dim + n_topics + 2)``
float64). :func:`check_world_size` estimates these bytes and refuses a configuration that
needs more than a share of the machine's memory, naming the field that dominates.
"""

from __future__ import annotations

import os
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
        raise InputError(
            f"{field}={getattr(config, field):,} is too large: the world would need about "
            f"{format_bytes(total)} of memory (limit {format_bytes(limit)}, "
            f"{MEMORY_SHARE:.0%} of this machine's)"
        )


__all__ = ["MEMORY_SHARE", "check_world_size", "physical_memory", "world_bytes"]
