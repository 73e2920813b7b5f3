"""The retrieval index kept with a saved model (offrec.policies.persist, index.npz): built once
at save, loaded when its key matches the item table, identical retrievals whether built or
loaded, older folders without it still load, and a corrupted index file is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from offrec.core.errors import InputError, MissingInputError
from offrec.policies.bandits.hybrid import HybridLinear
from offrec.policies.persist import load_policy, save_policy

pytest.importorskip("faiss")


def _learner(retrieval: str, n: int = 20_000, seed: int = 0) -> tuple[HybridLinear, np.ndarray]:
    """A hybrid learner on a clustered 20,000-item catalog, fitted on random rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 5))
    feats = centres[rng.integers(0, 12, n)] + 0.3 * rng.normal(size=(n, 5))
    h = HybridLinear(feats, 4, candidates=10, retrieval=retrieval, nlist=100, nprobe=3)
    x = rng.normal(size=(3000, 4))
    a = rng.integers(0, n, 3000)
    r = (rng.random(3000) < 1 / (1 + np.exp(-(feats[a, :4] * x).sum(axis=1)))).astype(float)
    h.partial_fit(x, a, r)
    return h, rng.normal(size=(400, 4))


@pytest.mark.parametrize("retrieval", ["faiss", "ivf"])
def test_a_loaded_index_gives_the_retrievals_of_a_built_one(tmp_path, retrieval) -> None:
    h, obs = _learner(retrieval)
    folder = save_policy(h, tmp_path / "m")
    entry = json.loads((folder / "policy.json").read_text())["index"]
    assert entry["file"] == "index.npz" and entry["key"] == h.retriever.index_key()
    assert entry["key"]["nlist"] == 100 and entry["key"]["seed"] == 0
    loaded = load_policy(folder)
    # the loaded retriever holds the saved index before any search: it builds nothing
    assert loaded.retriever._index is not None and loaded._saved_index is None
    fresh = HybridLinear.from_params(h.get_params())
    fresh.set_state(h.get_state())  # the same table, no saved index: builds its own
    assert fresh.retriever._index is None
    ref_items = h.retriever.top_m(h.query(obs))[0]
    got_items = loaded.retriever.top_m(loaded.query(obs))[0]
    new_items = fresh.retriever.top_m(fresh.query(obs))[0]
    np.testing.assert_array_equal(got_items, ref_items)
    np.testing.assert_array_equal(new_items, ref_items)
    np.testing.assert_array_equal(
        loaded.action_dist_compact(obs).items, h.action_dist_compact(obs).items
    )
    if retrieval == "ivf":  # approximate: the index defines the policy, the same one loaded
        assert h.retriever.recall(h.query(obs)) < 1.0


def test_older_folders_and_mismatched_keys_build_the_index(tmp_path) -> None:
    h, obs = _learner("ivf")
    ref = h.retriever.top_m(h.query(obs))[0]
    folder = save_policy(h, tmp_path / "m")
    # a folder saved without the index (an earlier offrec): loads, builds at the first search
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    cfg = json.loads((old / "policy.json").read_text())
    del cfg["index"]
    (old / "policy.json").write_text(json.dumps(cfg))
    (old / "index.npz").unlink()
    loaded = load_policy(old)
    assert loaded._saved_index is None and loaded.retriever._index is None
    np.testing.assert_array_equal(loaded.retriever.top_m(loaded.query(obs))[0], ref)
    # a key for another table or other cells: ignored, the index is built as without one
    for field, value in [("catalog_sha256", "0" * 64), ("nlist", 99), ("seed", 1)]:
        other = tmp_path / f"k_{field}"
        shutil.copytree(folder, other)
        cfg = json.loads((other / "policy.json").read_text())
        cfg["index"]["key"][field] = value
        (other / "policy.json").write_text(json.dumps(cfg))
        loaded = load_policy(other)
        assert loaded.retriever._index is None, field
        np.testing.assert_array_equal(loaded.retriever.top_m(loaded.query(obs))[0], ref)


def test_a_corrupted_or_missing_index_file_is_refused(tmp_path) -> None:
    h, _ = _learner("faiss")
    folder = save_policy(h, tmp_path / "m")
    blob = (folder / "index.npz").read_bytes()
    (folder / "index.npz").write_bytes(blob[:-100] + bytes(100))
    with pytest.raises(InputError, match=r"index.npz does not match the checksum in policy.json"):
        load_policy(folder)
    (folder / "index.npz").unlink()
    with pytest.raises(MissingInputError, match=r"is incomplete: index.npz not found"):
        load_policy(folder)


def test_no_index_is_saved_for_the_numpy_scan(tmp_path) -> None:
    h, _ = _learner("numpy")
    folder = save_policy(h, tmp_path / "m")
    assert not (folder / "index.npz").exists()
    assert "index" not in json.loads((folder / "policy.json").read_text())
