"""Threads for numerical code on shared cores: BLAS limits and row-range splitting."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


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


PARALLEL_ELEMS = 1 << 22
"""Arrays of at least this many entries (32 MB of float64) are split across threads by
:func:`over_row_ranges`; below it, handing work to threads costs more than it saves."""

ROW_THREADS = max(1, min(4, os.cpu_count() or 1))
"""Threads :func:`over_row_ranges` uses for a large array (the cores, at most 4)."""


def over_row_ranges(fn: Callable[[int, int], T], n_rows: int, n_elems: int) -> list[T]:
    """``[fn(lo, hi) for (lo, hi) in ranges]`` over contiguous row ranges covering
    ``[0, n_rows)``: one range when ``n_elems < PARALLEL_ELEMS``, else
    :data:`ROW_THREADS` ranges run in threads (numpy's big kernels release the GIL).

    ``fn`` must touch only its own rows. Results come back in row order, and an error is
    raised from the lowest range that failed, so a check over rows still names the first
    bad row. The result does not depend on the number of ranges when ``fn`` is row-wise.
    """
    parts = ROW_THREADS if n_elems >= PARALLEL_ELEMS and n_rows > 1 else 1
    if parts == 1:
        return [fn(0, n_rows)]
    cuts = [n_rows * j // parts for j in range(parts + 1)]
    with ThreadPoolExecutor(parts) as pool:
        futures = [pool.submit(fn, lo, hi) for lo, hi in itertools.pairwise(cuts)]
    return [f.result() for f in futures]  # in row order: the lowest range's error wins


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block (or, as a decorator, a function) with ``torch.set_num_threads(n)``,
    restoring the previous count after: global torch state is left as it was found.
    torch is imported only when the block runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
