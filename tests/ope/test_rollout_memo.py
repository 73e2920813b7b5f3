"""The refit rollouts of ``mb`` call the target once on their common start contexts
(:class:`offrec.ope.sequential.FirstCallMemo`), with the same numbers as calling it each time."""

from __future__ import annotations

import numpy as np
import pytest

import offrec.ope.sequential as seq
from offrec.logs.env_collect import env_log
from tests.ope.test_model_based_continuous import LOGGER, TARGET, world


class Counting:
    """TARGET, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.n_actions = TARGET.n_actions

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return TARGET.action_dist(obs)


def test_memo_returns_the_first_distribution_read_only_and_passes_others_through() -> None:
    pol = Counting()
    memo = seq.FirstCallMemo(pol.action_dist)
    x = np.array([[1.0, 0.0], [-1.0, 0.5]], np.float32)
    first = memo(x)
    again = memo(x.copy())  # equal values, another array
    assert again is first and pol.calls == 1
    with pytest.raises(ValueError):
        first[0, 0] = 2.0  # read-only: a caller cannot corrupt what later calls return
    other = memo(x[::-1].copy())
    assert pol.calls == 2 and np.array_equal(other, TARGET.action_dist(x[::-1]))
    assert memo(x) is first and pol.calls == 2


def test_mb_estimate_is_the_same_with_and_without_the_memo(monkeypatch) -> None:
    data = env_log(world(), LOGGER, n_sessions=200, seed=2)
    memo_pol = Counting()
    with_memo = seq.estimate_sequential("mb", data, memo_pol, method="normal", seed=3)
    monkeypatch.setattr(seq, "FirstCallMemo", lambda fn: fn)
    plain_pol = Counting()
    plain = seq.estimate_sequential("mb", data, plain_pol, method="normal", seed=3)
    assert with_memo == plain  # value, interval, contributions, replicates: bitwise
    n_refits = seq.SessionFits(data).n_refits
    assert plain_pol.calls - memo_pol.calls == n_refits  # one start-context call per refit
