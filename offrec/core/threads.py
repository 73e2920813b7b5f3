"""Thread limits for numerical code on shared cores."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context manager running BLAS on one thread.

    On shared cores two OpenBLAS threads spin-wait for each other (measured: the
    bootstrap products 4-10x slower on 2 loaded cores than on one), and the engines
    already run batches in parallel where that helps.
    """
    return _controller().limit(limits=1, user_api="blas")
