"""Large-catalog speed paths of the shared-parameter learner (issue 23): the distribution
computed once per distinct context equals the per-row one, the retrieval backends give
the same policy (exact) or a fixed one with measured recall (ivf), and evaluate's results
do not depend on the batch size or on the exact backend."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
from offrec.policies.loggers import logging_policy
from offrec.policies.persist import load_policy, save_policy
from offrec.sim import World, WorldConfig

pytest.importorskip("faiss")  # offrec[catalog]; make test installs it


@pytest.fixture(scope="module")
def fitted() -> tuple[World, np.ndarray, np.ndarray, np.ndarray]:
    w = World(WorldConfig(n_items=6000, n_users=40), seed=3)
    rng = np.random.default_rng(0)
    traj = w.run_sessions(logging_policy(w, "uniform"), 2000, rng)
    return w, np.asarray(traj.obs), np.asarray(traj.action), np.asarray(traj.reward)


def _learner(w: World, **kw: object) -> HybridLinear:
    return HybridLinear(catalog_features(w), w.context_dim, candidates=15, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("head", ["greedy", "ucb", "ts", "softmax"])
def test_distribution_per_distinct_context_equals_per_row(fitted, head) -> None:
    w, obs, a, r = fitted
    h = _learner(w, head=head, epsilon=0.1, floor=0.02, retrieval="numpy")
    h.partial_fit(obs, a, r)
    rows = obs[np.random.default_rng(1).integers(0, len(obs), 300)]  # 40 users: repeats
    assert len(np.unique(rows, axis=0)) < 100
    batch = h.action_dist_compact(rows)
    one_by_one = [h.action_dist_compact(rows[i : i + 1]) for i in range(0, 300, 23)]
    for k, i in enumerate(range(0, 300, 23)):
        assert np.array_equal(batch.items[i], one_by_one[k].items[0])
        assert np.allclose(batch.probs[i], one_by_one[k].probs[0], rtol=0, atol=1e-15)
    fast = _learner(w, head=head, epsilon=0.1, floor=0.02, retrieval="faiss")
    fast.partial_fit(obs, a, r)
    other = fast.action_dist_compact(rows)
    assert np.array_equal(other.items, batch.items)
    assert np.allclose(other.probs, batch.probs, rtol=0, atol=1e-12)


def test_ivf_policy_round_trips_with_its_recall(fitted, tmp_path) -> None:
    w, obs, a, r = fitted
    h = _learner(w, retrieval="ivf", nlist=64, nprobe=2)
    h.partial_fit(obs, a, r)
    exact = _learner(w, retrieval="faiss")
    exact.partial_fit(obs, a, r)
    recall = h.retrieval_recall(obs)
    found = h.action_dist_compact(obs).items
    truth = exact.action_dist_compact(obs).items
    first = np.unique(obs, axis=0, return_index=True)[1]  # recall is over distinct contexts
    by_hand = np.mean([len(np.intersect1d(found[i], truth[i])) for i in first])
    assert 0.0 < recall <= 1.0
    assert recall == pytest.approx(by_hand / 15)
    assert exact.retrieval_recall(obs) == 1.0
    save_policy(h, tmp_path / "m")
    back = load_policy(tmp_path / "m")
    assert (back.retrieval, back.nlist, back.nprobe) == ("ivf", 64, 2)
    assert np.array_equal(back.action_dist_compact(obs).items, found)  # the same index
    with pytest.raises(InputError, match="retrieval must be one of"):
        _learner(w, retrieval="hnsw")


def test_evaluate_is_independent_of_batch_size_and_exact_backend(fitted, tmp_path) -> None:
    from offrec.logs.writer import collect
    from offrec.ope import evaluate

    w, obs, a, r = fitted
    pi = logging_policy(w, "softmax", candidates=40, floor=0.05)
    log = tmp_path / "log"
    collect(w, pi, out=log, n_decisions=3000, seed=5)
    results = []
    for retrieval, batch in (("numpy", 50_000), ("faiss", 50_000), ("faiss", 777)):
        h = _learner(w, floor=0.05, retrieval=retrieval)
        h.partial_fit(obs, a, r)
        res = evaluate(
            log,
            {"h": h},
            estimators=["ips", "snips", "dr", "mips", "offcem"],
            reward_model=h,
            interval="normal",
            batch_size=batch,
        )
        results.append(res.table[["estimator", "value", "low", "high"]].to_numpy())
    assert np.array_equal(results[0][:, 0], results[1][:, 0])
    for other in results[1:]:
        assert np.allclose(other[:, 1:].astype(float), results[0][:, 1:].astype(float), rtol=1e-12)
