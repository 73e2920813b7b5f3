"""Deprecated name of :mod:`offrec.ope.moments` (the mergeable partial sums every OPE
kernel returns; the interval engine over them is :mod:`offrec.ope.intervals`). Kept so
that existing imports keep working; import from :mod:`offrec.ope.moments`."""

from offrec.ope.moments import (
    BITS_ROWS,
    BOOT_ROWS,
    N_BUCKETS,
    Moments,
    bucket_of,
    merge_all,
    resample_bits,
    row_keys,
)

_BITS_ROWS = BITS_ROWS
_BOOT_ROWS = BOOT_ROWS

__all__ = ["N_BUCKETS", "Moments", "bucket_of", "merge_all", "resample_bits", "row_keys"]
