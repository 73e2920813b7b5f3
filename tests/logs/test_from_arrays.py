"""LoggedData.from_arrays: defaults for the columns a caller lacks, and the log's value rules."""

import numpy as np
import pytest

from offrec.logs.data import LoggedData


def test_bandit_defaults_one_step_sessions_ended_by_the_horizon():
    x = np.arange(8, dtype=float).reshape(4, 2)
    data = LoggedData.from_arrays(x, [0, 3, 1, 3], [1, 0, 0, 1], [0.25] * 4)
    assert data.n_rows == 4 and data.n_actions == 4 and data.context.dtype == np.float32
    np.testing.assert_array_equal(data.session_id, [0, 1, 2, 3])
    np.testing.assert_array_equal(data.step, [0, 0, 0, 0])
    assert data.truncated.all() and not data.terminated.any()
    assert (data.position == 0).all() and (data.user_id == -1).all()
    assert data.action.dtype == np.int64 and data.reward.dtype == np.float64


def test_sessions_count_steps_and_close_with_their_last_row():
    sid = [5, 5, 5, 2, 2, 9]
    term = [False, False, True, False, False, False]
    data = LoggedData.from_arrays(np.zeros((6, 1)), [0] * 6, [0] * 6, [1.0] * 6, session_id=sid,
                                  terminated=term, n_actions=3)  # fmt: skip
    np.testing.assert_array_equal(data.step, [0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(data.truncated, [0, 0, 0, 0, 1, 1])  # session 5 terminated
    assert data.n_actions == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pscore": [0.5, 1.5]}, r"column 'pscore' must be in \(0, 1\]; row 1 has 1.5"),
        ({"action": [0, 4], "n_actions": 4}, r"column 'action' must be in \[0, 4\); row 1 has 4"),
        ({"reward": [0.0, np.nan]}, r"column 'reward' must be finite; row 1 has nan"),
        ({"action": [0.0, 1.0]}, r"action must be integers; got dtype float64"),
        ({"reward": [0.0]}, r"reward must have shape \(2,\) like context rows; got \(1,\)"),
        ({"session_id": [1, 2], "step": [0, -1]}, r"column 'step' must be >= 0; row 1 has -1"),
    ],
)
def test_bad_columns_are_named_with_the_first_bad_row(kwargs, message):
    base = {
        "context": np.zeros((2, 1)),
        "action": [0, 1],
        "reward": [0.0, 1.0],
        "pscore": [0.5, 0.5],
    }
    with pytest.raises(ValueError, match=message):
        LoggedData.from_arrays(**{**base, **kwargs})


def test_sessions_must_be_contiguous():
    with pytest.raises(ValueError, match=r"rows of each session must be contiguous"):
        LoggedData.from_arrays(np.zeros((3, 1)), [0] * 3, [0] * 3, [1.0] * 3, session_id=[1, 2, 1])
