"""Import d3rlpy quietly: it imports the legacy ``gym`` package, which prints a
deprecation notice to stderr. Every offrec module that needs d3rlpy gets it from here."""

from __future__ import annotations

import contextlib
import io
import sys
from types import ModuleType

__all__ = ["d3rlpy_module"]


def d3rlpy_module() -> ModuleType:
    """The ``d3rlpy`` module, imported on first use with the gym notice silenced."""
    if "d3rlpy" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy  # noqa: F401
    return sys.modules["d3rlpy"]
