"""Saved arrays are read from a memory map, checked against their sha256 first
(offrec.policies.persist._read_checked): the same arrays as np.load, read-only, and a
damaged, empty or pickling file refused."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.policies.persist import _read_checked


def _write(tmp_path, blob: bytes) -> dict[str, str]:
    (tmp_path / "a.npz").write_bytes(blob)
    return {"file": "a.npz", "sha256": hashlib.sha256(blob).hexdigest()}


@pytest.mark.parametrize("compressed", [False, True])
def test_views_equal_np_load(tmp_path, compressed) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "A": rng.normal(size=(7, 7)),
        "fortran": np.asfortranarray(rng.normal(size=(5, 3)).astype(np.float32)),
        "ids": rng.integers(0, 9, 11).astype(np.int32),
        "scalar": np.asarray(3, np.int64),
        "empty": np.zeros((0, 4)),
        "blob": np.frombuffer(b"abc\x00", np.uint8),
    }
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    got = _read_checked(tmp_path, _write(tmp_path, buf.getvalue()))
    assert sorted(got) == sorted(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)
    if not compressed:  # views of the map: nothing can write through them
        assert not got["A"].flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            got["A"][0, 0] = 1.0


def test_damaged_empty_and_pickling_files_are_refused(tmp_path) -> None:
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(1000.0))
    entry = _write(tmp_path, buf.getvalue())
    blob = buf.getvalue()
    (tmp_path / "a.npz").write_bytes(blob[:500] + b"\x01" + blob[501:])
    with pytest.raises(InputError, match=r"a.npz does not match the checksum in policy.json"):
        _read_checked(tmp_path, entry)
    (tmp_path / "a.npz").write_bytes(b"")
    with pytest.raises(InputError, match=r"a.npz does not match the checksum in policy.json"):
        _read_checked(tmp_path, entry)
    with pytest.raises(InputError, match=r"a.npz is not a numpy .npz archive"):
        _read_checked(tmp_path, _write(tmp_path, b"not a zip file"))
    buf = io.BytesIO()
    np.savez(buf, o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(InputError, match=r"member 'o' holds Python objects \(pickle refused\)"):
        _read_checked(tmp_path, _write(tmp_path, buf.getvalue()))
