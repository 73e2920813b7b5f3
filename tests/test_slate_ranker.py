"""A ranker learned from a slate log (``offrec train bandit`` on it, ranked top-k) beats
the logger's Plackett-Luce ranker in exact truth; the one gate ships it from the log under
position-based clicks and declines, naming the low effective sample size, under cascade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrec.cli import main
from offrec.core.errors import InputError
from offrec.logs.reader import read_metadata
from offrec.models import load_model
from offrec.ope.slate_decision import logger_estimate, slate_decision
from offrec.policies.loggers import logging_policy_from_spec
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld, TopKEpsilon
from offrec.sim.world import World

N_ITEMS, K, N_USERS = 12, 3, 60
MARGIN = 0.10
"""The stated bar: the learned ranker's true value is at least 10% above the logger's."""


@pytest.fixture(scope="module", params=["pbm", "cascade"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    kind = request.param
    tmp = tmp_path_factory.mktemp(f"ranker-{kind}")
    log, model = tmp / "log", tmp / "model"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(log),
                "--n-sessions",
                "6000",
                "--slate-size",
                str(K),
                "--n-items",
                str(N_ITEMS),
                "--n-users",
                str(N_USERS),
                "--click-model",
                kind,
                "--seed",
                "4",
            ]
        )
        == 0
    )
    assert (
        main(["-q", "train", "bandit", str(log), "--learner", "reward-model", "--out", str(model)])
        == 0
    )
    return kind, log, model


def _world_and_logger(log: Path) -> tuple[SlateWorld, PlackettLuce]:
    """The log's world and logger, rebuilt from its metadata."""
    meta = read_metadata(log)
    world = World(WorldConfig.from_dict(meta["world_config"]), seed=int(meta["world_seed"]))
    cm = meta["slate"]["click_model"]
    sw = SlateWorld(world, K, ClickModel(cm["kind"], eta=cm["eta"], stop=cm["stop"]))
    spec = meta["logging_policy"]
    base = logging_policy_from_spec(world, spec["base"])
    return sw, PlackettLuce(base, K, temperature=spec["temperature"])


def test_learned_ranker_beats_the_logger_in_truth(trained: tuple) -> None:
    kind, log, model = trained
    sw, logger = _world_and_logger(log)
    ranker = TopKEpsilon(load_model(model, n_actions=N_ITEMS), K, epsilon=0.1)
    # the ranker lists the model's K best predicted items (a greedy model's probabilities
    # are one-hot: ranking them would fill the list with items 0, 1, ...)
    obs = sw.users_obs(np.arange(N_USERS))
    pred = ranker.base.predict(obs)
    assert (ranker.top(obs) == np.argsort(-pred, axis=1, kind="stable")[:, :K]).all()
    v_log, v_rank = sw.true_value(logger), sw.true_value(ranker)
    assert v_log.exact and v_rank.exact  # 12 * 11 * 10 slates: enumerated
    assert v_rank.value >= (1 + MARGIN) * v_log.value, (kind, v_rank, v_log)
    # the logger's on-policy mean covers its exact value (6,000 slates, 95%)
    lg = logger_estimate(log, "iips", K)
    assert lg.low <= v_log.value <= lg.high and lg.n_slates == 6000


def test_the_gate_ships_the_learned_ranker(trained: tuple) -> None:
    kind, log, model = trained
    ranker = TopKEpsilon(load_model(model, n_actions=N_ITEMS), K, epsilon=0.1)
    dec, table = slate_decision(log, {"top-k": ranker}, n_bootstrap=300)
    assert dec.estimator == ("iips" if kind == "pbm" else "rips")
    if kind == "pbm":  # IIPS's item-position weights: enough evidence on 6,000 slates
        assert dec.verdict == "recommend" and dec.pick == "top-k", dec.sentences
    else:  # RIPS's prefix weights of a near-deterministic ranker: too few effective slates,
        # and the gate says so rather than ship on a fragile estimate
        assert dec.pick is None and any("effective sample size" in r for r in dec.reasons)
    assert set(table["policy"]) == {"top-k", "logger"} and "pi" not in set(table["estimator"])
    with pytest.raises(InputError, match="reserved for the logging policy"):
        slate_decision(log, {"logger": ranker})


def test_recommend_shows_the_slots_propensities(trained: tuple) -> None:
    """``recommend --slate-epsilon``: each listed slot's marginal and prefix propensity
    under top-k with a uniform list with probability epsilon, by hand."""
    from offrec.recommend import recommend_for_context

    _, log, model = trained
    sw, _ = _world_and_logger(log)
    policy = load_model(model, n_actions=N_ITEMS)
    x = sw.users_obs(np.array([0]))[0]
    eps = 0.2
    table = recommend_for_context(policy, x, k=K, slate_epsilon=eps)
    assert table["pscore"].to_numpy() == pytest.approx(np.full(K, 1 - eps + eps / N_ITEMS))
    uniform_prefix = np.cumprod(1.0 / (N_ITEMS - np.arange(K)))  # 1/12, 1/(12*11), ...
    assert table["pscore_prefix"].to_numpy() == pytest.approx((1 - eps) + eps * uniform_prefix)
    assert "pscore" not in recommend_for_context(policy, x, k=K).columns
