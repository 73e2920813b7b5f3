"""SARDINE's slate environments as worlds for the slate estimators (issue 26; optional:
skipped without ``sardine-rec``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sardine")

from offrec.core.errors import InputError  # noqa: E402
from offrec.ope.slate import make_slate_estimator  # noqa: E402
from offrec.sim.sardine_world import (  # noqa: E402
    FactoredSlatePolicy,
    log_first_slates,
    sardine_env,
    slate_mc_value,
)


def _policies(env: object) -> tuple[FactoredSlatePolicy, FactoredSlatePolicy]:
    emb = env.item_embedd  # type: ignore[attr-defined]
    score = emb @ (np.ones(emb.shape[1]) / np.sqrt(emb.shape[1]))
    K = env.slate_size  # type: ignore[attr-defined]
    return FactoredSlatePolicy.softmax(score, 10.0, K), FactoredSlatePolicy.softmax(score, 30.0, K)


def test_logged_propensities_are_exact_and_the_log_is_seeded() -> None:
    env = sardine_env()
    logger, target = _policies(env)
    log = log_first_slates(env, logger, 300, seed=4)
    again = log_first_slates(env, logger, 300, seed=4)
    np.testing.assert_array_equal(log.slates, again.slates)
    np.testing.assert_array_equal(log.clicks, again.clicks)
    arr = log.arrays(target)
    K = env.slate_size
    p = logger.probs[np.arange(K), log.slates[7]]
    np.testing.assert_allclose(arr["pscore_item_position"][7 * K : 8 * K], p)
    np.testing.assert_allclose(arr["pscore_cascade"][7 * K : 8 * K], np.cumprod(p))
    np.testing.assert_allclose(arr["pscore"][7 * K : 8 * K], np.prod(p))
    # the logger scored as the target: every weight 1, SIPS is the logged mean exactly
    on = log.arrays(logger)
    assert make_slate_estimator("sips").estimate_policy_value(**on) == pytest.approx(
        log.clicks.sum(axis=1).mean()
    )
    with pytest.raises(InputError, match="logger.probs must have shape"):
        log_first_slates(env, FactoredSlatePolicy(np.full((2, 3), 1 / 3)), 5, seed=0)


def test_iips_recovers_the_monte_carlo_value_of_a_sharper_target() -> None:
    """A target three times sharper than the logger on the same item scores: IIPS from
    3,000 logged slates within its interval (plus 3 MC standard errors) of the truth from
    4,000 episodes."""
    env = sardine_env()
    logger, target = _policies(env)
    log = log_first_slates(env, logger, 3000, seed=1)
    truth = slate_mc_value(env, target, 4000, seed=2)
    iv = make_slate_estimator("iips").estimate_interval(method="normal", **log.arrays(target))
    assert iv.low - 3 * truth.se <= truth.value <= iv.high + 3 * truth.se, (iv, truth)
