"""Session diagnostics describe the weights the estimate used (issue 21): PDIS, WPDIS and
DR weight each decision by its prefix weight w_{0:t}; their ESS and largest weight come
from those, TIS's from the whole-trajectory weight. Hand-computed on three sessions."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.logs import LoggedData
from offrec.ope import FixedProbs, evaluate


@pytest.fixture
def log() -> tuple[LoggedData, np.ndarray]:
    # sessions: 0 (3 steps), 1 (2 steps), 2 (1 step); 2 actions, logger uniform (0.5)
    sid = [0, 0, 0, 1, 1, 2]
    action = [0, 1, 0, 1, 1, 0]
    reward = [1, 0, 1, 0, 1, 1]
    data = LoggedData.from_arrays(
        np.zeros((6, 1)), action, reward, [0.5] * 6, session_id=sid, n_actions=2
    )
    # target puts 0.8 on action 0 everywhere: per-row weights 1.6 (action 0) or 0.4
    probs = np.tile([0.8, 0.2], (6, 1))
    return data, probs


def test_per_decision_diagnostics_are_the_prefix_weights(log):
    data, probs = log
    res = evaluate(
        data, {"t": FixedProbs(probs)}, estimators=["pdis", "tis"], interval=None, mode="session"
    )
    t = res.table.set_index("estimator")
    # prefix weights: session 0: 1.6, 0.64, 1.024; session 1: 0.4, 0.16; session 2: 1.6
    prefix = np.array([1.6, 1.6 * 0.4, 1.6 * 0.4 * 1.6, 0.4, 0.16, 1.6])
    assert t.loc["pdis", "max_weight"] == pytest.approx(1.6)
    assert t.loc["pdis", "ess"] == pytest.approx(prefix.sum() ** 2 / (prefix**2).sum())
    assert t.loc["pdis", "ess_share"] == pytest.approx(t.loc["pdis", "ess"] / 6)
    # PDIS by hand: sum over decisions of w_{0:t} r_t, per session
    assert t.loc["pdis", "value"] == pytest.approx((1.6 + 1.024 + 0.16 + 1.6) / 3)
    # TIS weights whole sessions: 1.024, 0.16, 1.6
    traj = np.array([1.024, 0.16, 1.6])
    assert t.loc["tis", "max_weight"] == pytest.approx(1.6)
    assert t.loc["tis", "ess"] == pytest.approx(traj.sum() ** 2 / (traj**2).sum())


def test_a_target_the_logger_never_matches_late_still_shows_its_early_weights(log):
    """The bug: a greedy target with whole-trajectory weights all 0 reported ess 0 and
    max_weight 0 beside a PDIS estimate built from nonzero early weights."""
    data, _ = log
    probs = np.zeros((6, 2))
    probs[np.arange(6), data.action] = 1.0  # matches every logged action ...
    probs[[2, 4]] = [[0.0, 1.0], [1.0, 0.0]]  # ... except the last step of sessions 0 and 1
    res = evaluate(
        data, {"t": FixedProbs(probs)}, estimators=["pdis", "tis"], interval=None, mode="session"
    )
    t = res.table.set_index("estimator")
    assert t.loc["pdis", "value"] > 0
    assert t.loc["pdis", "max_weight"] == pytest.approx(4.0)  # 2 x 2 on session 0's step 1
    assert t.loc["pdis", "ess"] > 0
    assert t.loc["tis", "max_weight"] == pytest.approx(2.0)  # only session 2 keeps a weight
