"""Offline RL with off-policy selection (issue 26): CQL's alpha and step count chosen from
the log on one half of the evaluation sessions, reported and gated on the other; checked
against Monte-Carlo truth in the tiny continuous world of test_model_based_continuous."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("d3rlpy")

from offrec.logs.env_collect import env_log  # noqa: E402
from offrec.rl import RLConfig  # noqa: E402
from offrec.rl.select import select_offline_rl  # noqa: E402
from offrec.sim.adapter import mc_value  # noqa: E402
from tests.ope.test_model_based_continuous import LOGGER, dp_value, world  # noqa: E402


@pytest.mark.slow
def test_selection_scores_the_grid_reports_on_unseen_sessions_and_never_ships_a_loser():
    data = env_log(world(), LOGGER, n_sessions=3000, seed=21)
    fold = np.asarray(data.session_id) % 10 < 7
    train = data.subset(np.flatnonzero(fold))
    evaluation = data.subset(np.flatnonzero(~fold))
    base = RLConfig(algo="cql", batch_size=64, learning_rate=3e-3, gamma=0.9, hidden_units=(32,))
    out = select_offline_rl(
        train, evaluation, LOGGER, alphas=(0.1, 4.0), steps=(200, 800), base=base, seed=0
    )
    assert out.estimator in ("mb", "pdis")
    names = [c.name for c in out.candidates]
    assert names == [f"cql(alpha={a:g}, steps={n})" for a in (0.1, 4.0) for n in (200, 800)]
    assert out.selected == max(out.candidates, key=lambda c: c.lift_low).name
    assert out.low <= out.value <= out.high and out.lift_low <= out.lift <= out.lift_high
    truth = mc_value(world(), out.policy, 3000, seed=5)
    logger = dp_value(LOGGER)
    if out.beats_logger:  # the gate shipped it: it must truly beat the logger
        assert truth.value > logger, (truth, logger)
        assert out.lift_low > 0
    else:
        assert "could not be shown to beat the logging policy" in out.sentences[0]
    d = out.to_dict()
    assert "policy" not in d and d["beats_logger"] == out.beats_logger
