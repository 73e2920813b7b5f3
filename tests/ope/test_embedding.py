"""MIPS, SN-MIPS and OffCEM: hand-computed values, properties, the sparse form, OBP equality."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import SparseDist
from offrec.ope import ESTIMATORS, MIPS, SNIPS, SNMIPS, OffCEM
from offrec.ope.embedding import logging_group_pscore
from offrec.testing import check_estimator

OBP_PYTHON = Path("/tmp/venv-obp/bin/python")


def _problem(n: int = 2000, k: int = 1000, n_groups: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=k)
    x = rng.normal(size=(n, 3))

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    pi_b = softmax(x @ rng.normal(size=(3, k)))
    pi_e = softmax(2 * x @ rng.normal(size=(3, k)))
    action = (pi_b.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(0, k - 1)
    q = 1 / (1 + np.exp(-(x @ rng.normal(size=(3, k)))))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(float)
    return (
        dict(
            reward=reward,
            action=action,
            pscore=pi_b[np.arange(n), action],
            action_dist=pi_e,
            item_groups=groups,
        ),
        pi_b,
        q,
    )


def test_hand_computed() -> None:
    # two rows, items {0} in group 0 and {1, 2} in group 1
    groups = np.array([0, 1, 1])
    pi_e = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    arrays = dict(
        reward=np.array([1.0, 0.0]),
        action=np.array([2, 0]),
        pscore=np.array([0.25, 0.5]),
        action_dist=pi_e,
        item_groups=groups,
        pscore_group=np.array([0.5, 0.5]),
    )
    # w(g) = pi_e(g)/pi_b(g): row 0 group 1: 1.0 / 0.5 = 2; row 1 group 0: 0.5 / 0.5 = 1
    assert MIPS().estimate_policy_value(**arrays) == pytest.approx((2 * 1 + 1 * 0) / 2)
    assert SNMIPS().estimate_policy_value(**arrays) == pytest.approx(2 / 3)
    q = np.array([[0.2, 0.4, 0.6], [0.1, 0.3, 0.5]])
    # q_target: row 0: 0.4, row 1: 0.5 * 0.1 + 0.5 * 0.5 = 0.3; residuals 1 - 0.6, 0 - 0.1
    want = ((0.4 + 2 * 0.4) + (0.3 + 1 * -0.1)) / 2
    assert OffCEM().estimate_policy_value(**arrays, estimated_rewards=q) == pytest.approx(want)


def test_one_group_per_item_is_ips() -> None:
    arrays, pi_b, _ = _problem(n=500, k=50)
    arrays["item_groups"] = np.arange(50)
    pg = logging_group_pscore(pi_b, arrays["item_groups"], arrays["action"])
    assert np.allclose(pg, arrays["pscore"])
    assert MIPS().estimate_policy_value(**arrays, pscore_group=pg) == pytest.approx(
        ESTIMATORS["ips"]().estimate_policy_value(**{**arrays, "item_groups": None})
    )
    assert SNMIPS().estimate_policy_value(**arrays, pscore_group=pg) == pytest.approx(
        SNIPS().estimate_policy_value(**{**arrays, "item_groups": None})
    )


def test_sparse_target_equals_dense() -> None:
    rng = np.random.default_rng(1)
    n, k, m = 300, 200, 8
    items = np.stack([rng.choice(k, m, replace=False) for _ in range(n)])
    probs = rng.random((n, m))
    probs *= 0.9 / probs.sum(axis=1, keepdims=True)
    sparse = SparseDist(items, probs, k, floor=0.1)
    arrays, pi_b, q = _problem(n=n, k=k)
    arrays["pscore_group"] = logging_group_pscore(pi_b, arrays["item_groups"], arrays["action"])
    for est in (MIPS(), SNMIPS(), OffCEM(), ESTIMATORS["ips"](), ESTIMATORS["dr"]()):
        model = q if est.needs_model else None
        a = est.estimate_policy_value(**{**arrays, "action_dist": sparse}, estimated_rewards=model)
        b = est.estimate_policy_value(
            **{**arrays, "action_dist": sparse.dense()}, estimated_rewards=model
        )
        assert a == pytest.approx(b, rel=1e-12), est.name


@pytest.mark.parametrize("name", ["mips", "snmips", "offcem"])
def test_conformance(name) -> None:
    check_estimator(ESTIMATORS[name]())


def test_missing_groups_is_an_error() -> None:
    arrays, _, _ = _problem(n=50, k=20)
    del arrays["item_groups"]
    with pytest.raises(InputError, match="'mips' needs item_groups"):
        MIPS().estimate_policy_value(**arrays)
    with pytest.raises(InputError, match="item_groups and pscore_group go together"):
        MIPS().estimate_policy_value(**arrays, pscore_group=np.ones(50))


def test_bad_pscore_group_names_the_row() -> None:
    arrays, pi_b, _ = _problem(n=50, k=20)
    pg = logging_group_pscore(pi_b, arrays["item_groups"], arrays["action"])
    pg[7] = 0.0
    with pytest.raises(InputError, match=r"pscore_group must be in \(0, 1\]; row 7 has 0.0"):
        MIPS().estimate_policy_value(**arrays, pscore_group=pg)


_OBP_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from obp.ope import MarginalizedInverseProbabilityWeighting as M
    from obp.ope import SelfNormalizedMarginalizedInverseProbabilityWeighting as S
    d = sys.argv[1]
    a = {k: np.load(f"{d}/{k}.npy") for k in ("reward", "action", "pi_b", "pi_e", "groups")}
    k, g = a["pi_b"].shape[1], int(a["groups"].max()) + 1
    p_e_a = np.zeros((k, g, 1)); p_e_a[np.arange(k), a["groups"], 0] = 1.0
    kw = dict(reward=a["reward"], action=a["action"], action_embed=a["groups"][a["action"]][:, None],
              pi_b=a["pi_b"][:, :, None], action_dist=a["pi_e"][:, :, None], p_e_a=p_e_a)
    out = [M(n_actions=k).estimate_policy_value(**kw), S(n_actions=k).estimate_policy_value(**kw)]
    np.save(f"{d}/out.npy", np.array(out))
    """
)


@pytest.mark.skipif(
    not OBP_PYTHON.exists(),
    reason="OBP 0.5.7 venv absent (/tmp/venv-obp: build it with ../shared/reference/setup_obp.sh)",
)
def test_equal_to_obp(tmp_path) -> None:
    arrays, pi_b, _ = _problem(n=2000, k=1000)
    for name, value in (
        ("reward", arrays["reward"]),
        ("action", arrays["action"]),
        ("pi_b", pi_b),
        ("pi_e", arrays["action_dist"]),
        ("groups", arrays["item_groups"]),
    ):
        np.save(tmp_path / f"{name}.npy", value)
    script = tmp_path / "obp_mips.py"
    script.write_text(_OBP_SCRIPT)
    subprocess.run([str(OBP_PYTHON), str(script), str(tmp_path)], check=True, timeout=300)
    obp_mips, obp_snmips = np.load(tmp_path / "out.npy")
    pg = logging_group_pscore(pi_b, arrays["item_groups"], arrays["action"])
    ours = MIPS().estimate_policy_value(**arrays, pscore_group=pg)
    ours_sn = SNMIPS().estimate_policy_value(**arrays, pscore_group=pg)
    assert abs(ours - obp_mips) <= 1e-12 and abs(ours_sn - obp_snmips) <= 1e-12
    ips = ESTIMATORS["ips"]().estimate_policy_value(**{**arrays, "item_groups": None})
    assert abs(ours - ips) > 1e-3  # the marginal weights are not the item weights


def test_streamed_evaluate_on_a_large_catalog_log(tmp_path) -> None:
    """evaluate() on a two-stage log with a sparse learned target: MIPS/SN-MIPS with the
    logger rebuilt from the metadata, DR/OffCEM with a pair reward model; equal to the
    functional estimators on the same arrays, in one batch and in batches of 300."""
    from offrec.logs import collect, read_logs
    from offrec.ope import evaluate, make_estimator
    from offrec.ope.terms import PairRewards
    from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
    from offrec.policies.loggers import logging_policy
    from offrec.sim import World, WorldConfig

    w = World(WorldConfig(n_items=5000, n_users=300), seed=0)
    logger = logging_policy(w, "softmax", candidates=50, floor=0.1)
    collect(w, logger, out=tmp_path / "log", n_decisions=2000, seed=1)
    train = w.run_sessions(logger, 3000, np.random.default_rng(9))
    target = HybridLinear(catalog_features(w), w.context_dim, candidates=10, epsilon=0.2)
    target.partial_fit(train.obs, train.action, train.reward)
    names = ["ips", "snips", "dr", "mips", "snmips", "offcem"]
    data = read_logs(tmp_path / "log")
    x = np.asarray(data.context)
    dist = target.action_dist_compact(x)
    groups = w.item_topic
    pg = logging_group_pscore(logger.action_dist_compact(x), groups, data.action)
    pairs = PairRewards(
        target.predict_pairs(x, data.action[:, None])[:, 0],
        target.predict_pairs(x, dist.items),
        target.predict_mean(x),
    )
    for batch_size in (2000, 300):
        res = evaluate(
            tmp_path / "log",
            {"t": target},
            estimators=names,
            reward_model=target,
            interval="normal",
            batch_size=batch_size,
        ).table
        for name in names:
            est = make_estimator(name)
            kw = dict(reward=data.reward, action=data.action, pscore=data.pscore, action_dist=dist)
            if est.needs_groups:
                kw.update(item_groups=groups, pscore_group=pg)
            if est.needs_model:
                kw["estimated_rewards"] = pairs
            want = est.estimate_policy_value(**kw)
            got = float(res.loc[res.estimator == name, "value"].iloc[0])
            assert got == pytest.approx(want, rel=1e-9), (name, batch_size)
        # each estimator's diagnostics describe the weights it averages: Kish's ESS of the
        # item weights for IPS/SNIPS/DR, of the group weights for MIPS/SN-MIPS/OffCEM
        n_groups = int(groups.max()) + 1
        w_item = dist.at(data.action) / data.pscore
        w_group = dist.group_probs(groups, n_groups)[np.arange(data.n_rows), groups[data.action]]
        w_group = w_group / pg
        for name in names:
            w = w_group if make_estimator(name).needs_groups else w_item
            ess = float(res.loc[res.estimator == name, "ess"].iloc[0])
            assert ess == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-9), name
        assert not np.isclose(
            w_group.sum() ** 2 / (w_group**2).sum(), w_item.sum() ** 2 / (w_item**2).sum()
        )


def test_cluster_items_recovers_separated_groups() -> None:
    from offrec.ope.embedding import cluster_items

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(5), 40)
    x = 10.0 * np.eye(5)[truth] + 0.1 * rng.normal(size=(200, 5))
    labels = cluster_items(x, 5, seed=3)
    # the same partition up to renaming: each true group maps to one label, all distinct
    pairs = {(int(t), int(lab)) for t, lab in zip(truth, labels, strict=True)}
    assert len(pairs) == 5 and len({lab for _, lab in pairs}) == 5
    with pytest.raises(InputError, match=r"n_clusters must be in \[1, 200\]; got 0"):
        cluster_items(x, 0)
