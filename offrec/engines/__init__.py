"""How the batches of a log reach a kernel: map a kernel over batches, merge the partials.

An engine knows nothing of estimators: it moves batches to a ``kernel(batch) ->
partial`` and merges the partials (anything with ``merge``) in batch order, so the
result does not depend on the engine or on how many workers ran it.

- ``"local"`` (default): pyarrow batches on this machine, bounded memory
  (:mod:`offrec.engines.local`);
- ``"ray"``: the same kernel on Ray Data, locally or on a cluster
  (:mod:`offrec.engines.ray`; the optional extra ``offrec[ray]``).
"""

from __future__ import annotations

from typing import Any

from offrec.core.errors import InputError
from offrec.engines.local import LocalEngine

ENGINES: tuple[str, ...] = ("local", "ray")
"""Engine names."""


def make_engine(name: str = "local", **options: Any) -> Any:
    """The engine called ``name`` (options: see :class:`~offrec.engines.local.LocalEngine`
    and :class:`~offrec.engines.ray.RayEngine`)."""
    if name == "local":
        return LocalEngine(**options)
    if name == "ray":
        from offrec.engines.ray import RayEngine

        return RayEngine(**options)
    raise InputError(f"engine must be one of {list(ENGINES)}; got {name!r}")


__all__ = ["ENGINES", "LocalEngine", "make_engine"]
