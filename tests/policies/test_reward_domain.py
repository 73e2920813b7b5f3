"""The declared reward domain is the contract for every learner (issue 27): those that
take bounded continuous rewards train on such a log through ``offrec train bandit`` and
learn the right thing; those that need clicks refuse it naming what fits. Driven from
the registry, so a new learner cannot escape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offrec.cli import main
from offrec.models import load_model
from offrec.policies.registry import LEARNERS
from offrec.reward import RewardModel

MEANS = {"a": -0.6, "b": -0.2, "c": 0.6, "d": 0.0}  # item c is best for every user
DOMAIN = ["--reward-domain", "continuous", "--reward-low", "-1", "--reward-high", "1"]


@pytest.fixture(scope="module")
def continuous_log(tmp_path_factory):
    """2000 rows of a uniform logger over 4 items, rewards in [-1, 1] (noisy item means)."""
    tmp = tmp_path_factory.mktemp("cont")
    rng = np.random.default_rng(0)
    n = 2000
    item = rng.choice(list(MEANS), n)
    reward = np.clip(np.array([MEANS[i] for i in item]) + rng.normal(0, 0.3, n), -1, 1)
    x = rng.normal(size=(n, 2))
    pd.DataFrame({"item": item, "x0": x[:, 0], "x1": x[:, 1], "r": reward, "p": 0.25}).to_csv(
        tmp / "w.csv", index=False
    )
    argv = [
        "import",
        "csv",
        str(tmp / "w.csv"),
        "--out",
        str(tmp / "log"),
        "--action",
        "item",
        "--reward",
        "r",
        "--pscore",
        "p",
        "--context",
        "x0,x1",
        *DOMAIN,
    ]
    assert main(argv) == 0
    assert (reward < 0).any()  # the [0, 1] checks of old would refuse it
    return tmp / "log"


CASES = [(name, []) for name in LEARNERS.names] + [
    ("reward-model", ["--param", f"model={m}"]) for m in ("logistic", "gbm")
]


@pytest.mark.parametrize(("learner", "params"), CASES)
def test_every_learner_honours_a_continuous_domain(
    continuous_log, tmp_path, capsys, learner, params
):
    cls = LEARNERS[learner]
    argv = [
        "train",
        "bandit",
        str(continuous_log),
        "--learner",
        learner,
        *params,
        "--out",
        str(tmp_path / "m"),
    ]
    code = main(argv)
    err = capsys.readouterr().err
    if cls.reward_support == "binary":  # needs clicks: refused, naming what fits
        assert code == 2 and not (tmp_path / "m").exists()
        assert f"{learner} needs a binary (0/1 click) reward" in err
        assert "continuous in [-1.0, 1.0]" in err and f"use {cls.fits_instead}" in err
        for name in ("ucb1", "epsilon-greedy", "linucb"):  # the alternatives it names exist and fit
            assert name in cls.fits_instead and LEARNERS[name].reward_support != "binary"
        return
    assert code == 0, err
    model = load_model(tmp_path / "m")
    assert model.item_map.ids == ("a", "b", "c", "d")
    x = np.random.default_rng(1).normal(size=(500, 2))
    chosen = np.asarray(model.action_dist(x)).argmax(axis=1)
    assert (chosen == 2).mean() > 0.95  # item c, the best, for (nearly) every user


def test_unit_learners_see_rewards_on_the_unit_scale():
    from offrec.policies.logged import domain_rewards

    dom = {"kind": "continuous", "low": -1.0, "high": 3.0}
    r = np.array([-1.0, 0.0, 3.0])
    for name in LEARNERS.names:
        cls = LEARNERS[name]
        if cls.reward_support == "unit":
            np.testing.assert_allclose(domain_rewards(cls, r, dom), [0.0, 0.25, 1.0])
        elif cls.reward_support == "any":
            np.testing.assert_array_equal(domain_rewards(cls, r, dom), r)
        # clicks pass unchanged for every learner
        np.testing.assert_array_equal(domain_rewards(cls, [0.0, 1.0], {"kind": "binary"}), [0, 1])


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_reward_model_fits_a_bounded_reward_as_a_fractional_response(kind):
    """Without context signal (constant context) the fractional logistic model with an
    effect per action is saturated: its fitted value for action a is the mean reward of
    a's rows, hand-computable. gbm gets the same means within its shrinkage."""
    rng = np.random.default_rng(3)
    n = 3000
    action = rng.integers(0, 3, n)
    reward = np.clip(np.array([-0.5, 0.2, 1.5])[action] + rng.normal(0, 0.4, n), -1, 2)
    dom = {"kind": "continuous", "low": -1.0, "high": 2.0}
    fitted = RewardModel(kind=kind, C=1e4).fit(np.zeros((n, 1)), action, reward, reward_domain=dom)
    q = fitted.predict(np.zeros((1, 1)))[0]
    means = np.array([reward[action == a].mean() for a in range(3)])
    np.testing.assert_allclose(q, means, atol=1e-3 if kind == "logistic" else 2e-2)
    assert ((q >= -1) & (q <= 2)).all()
    with pytest.raises(
        ValueError, match=r"reward must be in the declared reward domain \[-1.0, 2.0\]"
    ):
        RewardModel(kind=kind).fit(np.zeros((3, 1)), [0, 1, 2], [0.0, 2.5, 1.0], reward_domain=dom)
    with pytest.raises(ValueError, match=r"reward must be 0 or 1 for a classifier; row 0 has -0.5"):
        RewardModel(kind=kind).fit(np.zeros((3, 1)), [0, 1, 2], [-0.5, 1.0, 0.0])
