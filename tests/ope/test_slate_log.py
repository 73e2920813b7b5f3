"""Streamed slate OPE on a slate log: equal to the in-memory estimators on the same arrays,
independent of the batch size, and covering the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import Head, ScorePolicy, UniformPolicy
from offrec.logs.slate import collect_slates, read_slate_log
from offrec.ope.slate import make_slate_estimator
from offrec.ope.slate_log import evaluate_slates
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld, TopKEpsilon
from offrec.sim.world import World

N_ITEMS, K = 15, 3


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SlateWorld, ScorePolicy]:
    world = World(WorldConfig(n_items=N_ITEMS, n_users=80), seed=5)
    sw = SlateWorld(world, K, ClickModel("cascade"))
    out = tmp_path_factory.mktemp("slates") / "log"
    collect_slates(
        sw,
        PlackettLuce(UniformPolicy(N_ITEMS), K),
        out=out,
        n_slates=3000,
        chunk_slates=1000,
        seed=1,
    )
    base = ScorePolicy(lambda o: 3.0 * np.tile(o[:, :8], 2)[:, :N_ITEMS], N_ITEMS, Head("softmax"))
    return out, sw, base


def test_streamed_equals_in_memory(setting: tuple) -> None:
    out, _, base = setting
    target = TopKEpsilon(base, K, epsilon=0.4)
    names = ["sips", "iips", "rips", "snsips", "sniips", "snrips"]
    got = {
        r.estimator: r
        for r in evaluate_slates(out, target, names, batch_rows=1000, n_bootstrap=100)
    }
    log = read_slate_log(out).sorted()
    d = log.data
    n = d.n_rows // K
    slates = d.action.reshape(n, K)
    obs = d.context[::K]
    casc = np.cumprod(target.conditional(obs, slates), axis=1)
    marg, _ = target.marginals(obs)
    arrays = {
        "slate_id": d.session_id,
        "position": d.position,
        "reward": d.reward,
        "pscore": log.pscore_slate,
        "evaluation_policy_pscore": np.repeat(casc[:, -1], K),
        "pscore_item_position": d.pscore,
        "evaluation_policy_pscore_item_position": marg[
            np.arange(n)[:, None], np.arange(K), slates
        ].ravel(),
        "pscore_cascade": log.pscore_cascade,
        "evaluation_policy_pscore_cascade": casc.ravel(),
    }
    for name in names:
        assert got[name].value == pytest.approx(
            make_slate_estimator(name).estimate_policy_value(**arrays), rel=1e-12
        ), name
        assert got[name].n_slates == 3000


def test_batch_size_does_not_change_results(setting: tuple) -> None:
    out, _, base = setting
    target = PlackettLuce(base, K, temperature=0.8)  # Monte-Carlo target marginals
    a = evaluate_slates(out, target, batch_rows=999, n_bootstrap=200, marginal_samples=300)
    b = evaluate_slates(out, target, batch_rows=1 << 16, n_bootstrap=200, marginal_samples=300)
    for x, y in zip(a, b, strict=True):
        assert x.estimator == y.estimator
        assert (x.value, x.low, x.high, x.ess) == pytest.approx(
            (y.value, y.low, y.high, y.ess), rel=1e-9
        )


def test_unbiased_estimators_cover_the_truth(setting: tuple) -> None:
    """Under cascade clicks SIPS, RIPS and cascade-DR are unbiased: their 95% intervals
    (3000 slates) hold the exact truth; a fixed seed, so this is not flaky."""
    out, sw, base = setting
    target = TopKEpsilon(base, K, epsilon=0.5)
    truth = sw.true_value(target).value
    res = {r.estimator: r for r in evaluate_slates(out, target, n_bootstrap=500, seed=2)}
    for name in ("sips", "rips", "cascade-dr"):
        assert res[name].low <= truth <= res[name].high, (name, res[name], truth)
    # the control variate narrows RIPS's interval
    assert res["cascade-dr"].high - res["cascade-dr"].low < res["rips"].high - res["rips"].low


def test_errors(setting: tuple, tmp_path: Path) -> None:
    out, _, base = setting
    with pytest.raises(InputError, match=r"target slate_size must equal the log's \(3\); got 4"):
        evaluate_slates(out, TopKEpsilon(base, 4))
    with pytest.raises(InputError, match="slate estimator must be one of"):
        evaluate_slates(out, TopKEpsilon(base, K), ["ips"])
    # PI's marginal form on a logger that ranks without replacement: refused, with why
    with pytest.raises(InputError, match=r"estimator 'pi' is refused .*\(plackett-luce\) ranks"):
        evaluate_slates(out, TopKEpsilon(base, K), ["sips", "pi"])
    assert "pi" not in {r.estimator for r in evaluate_slates(out, TopKEpsilon(base, K))}
