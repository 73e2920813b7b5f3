"""Logs -> offline-RL transitions: every decision and reward kept, episode ends right."""

import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.rl import VectorizedReplayBuffer, to_replay_buffer, to_transitions

# Three sessions with horizon 4:
#   session 10: 3 steps, the user leaves after step 2          (terminated)
#   session 11: 4 steps, the horizon ends it after step 3      (truncated at the horizon)
#   session 12: 2 steps, the log was cut after step 1          (truncated before the horizon)
SESSION = np.array([10, 10, 10, 11, 11, 11, 11, 12, 12])
STEP = np.array([0, 1, 2, 0, 1, 2, 3, 0, 1])
REWARD = np.array([1, 0, 1, 0, 1, 1, 1, 1, 0], float)
ACTION = np.array([3, 1, 4, 1, 5, 2, 6, 5, 3])
TERMINATED = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0], bool)
TRUNCATED = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1], bool)
LAST = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1], bool)


def make_log(rows=None, **overrides):
    n = len(SESSION)
    cols = {
        "context": (np.arange(n)[:, None] * 10 + np.arange(3)[None, :]).astype(np.float32),
        "action": ACTION.astype(np.int64),
        "reward": REWARD,
        "pscore": np.full(n, 0.1),
        "session_id": SESSION.astype(np.int64),
        "step": STEP.astype(np.int64),
        "position": np.zeros(n, np.int64),
        "user_id": np.zeros(n, np.int64),
        "terminated": TERMINATED.copy(),
        "truncated": TRUNCATED.copy(),
    }
    cols.update(overrides)
    if rows is not None:
        cols = {k: v[rows] for k, v in cols.items()}
    return LoggedData(**cols, n_actions=8, metadata={"world_config": {"horizon": 4}})


def test_every_row_becomes_one_transition_with_its_reward():
    data = make_log()
    tr = to_transitions(data)
    assert tr.n_transitions == data.n_rows == 9
    assert tr.n_episodes == 3
    np.testing.assert_array_equal(tr.rewards, REWARD)
    assert tr.rewards.sum() == REWARD.sum() == 6
    np.testing.assert_array_equal(tr.actions, ACTION)
    np.testing.assert_array_equal(tr.observations, data.context)


def test_terminal_flags_and_next_observations_bootstrap_right():
    data = make_log()
    tr = to_transitions(data)
    # no bootstrap after the last row of a session (user left / horizon / cut log) ...
    np.testing.assert_array_equal(tr.terminals, LAST.astype(np.float32))
    nxt = tr.next_observations()
    # ... and within a session s' is the next logged context of the same session
    for i in np.flatnonzero(~LAST):
        np.testing.assert_array_equal(nxt[i], data.context[i + 1])
    assert not nxt[LAST].any()
    np.testing.assert_array_equal(tr.next_actions()[~LAST], ACTION[1:][~LAST[:-1]])
    # the reason each session ended is kept apart
    np.testing.assert_array_equal(tr.episode_terminated, [True, False, False])
    np.testing.assert_array_equal(tr.episode_truncated, [False, True, True])
    assert tr.horizon == 4 and tr.n_cut == 1
    s = tr.summary()
    assert (s["n_terminated"], s["n_truncated"], s["n_cut"], s["reward_sum"]) == (1, 2, 1, 6.0)


def test_horizon_argument_overrides_metadata():
    assert to_transitions(make_log(), horizon=2).n_cut == 0  # session 12's step 1 is the last
    assert to_transitions(make_log(), horizon=10).n_cut == 2


def test_d3rlpy_replay_buffer_keeps_every_transition_unlike_naive_timeouts():
    from d3rlpy.dataset import MDPDataset

    data = make_log()
    buf = to_replay_buffer(data)
    assert buf.transition_count == 9 and buf.size() == 3
    picked = [buf.transition_picker(*buf.buffer[i]) for i in range(buf.transition_count)]
    assert sum(float(t.reward[0]) for t in picked) == REWARD.sum()
    np.testing.assert_array_equal([t.terminal for t in picked], LAST.astype(float))
    # the trap this module avoids: d3rlpy drops the last step of each timed-out episode
    naive = MDPDataset(
        data.context,
        data.action,
        data.reward.astype(np.float32),
        terminals=data.terminated.astype(np.float32),
        timeouts=data.truncated.astype(np.float32),
    )
    assert naive.transition_count == 9 - 2


def test_vectorized_sampler_matches_d3rlpy_default_picker_row_for_row():
    from d3rlpy.dataset import TransitionMiniBatch

    tr = to_transitions(make_log())
    vec = VectorizedReplayBuffer(tr, seed=0)
    ref_buf = to_replay_buffer(tr)
    rows = np.arange(tr.n_transitions)
    mine = vec.batch_at(rows)
    ref = TransitionMiniBatch.from_transitions(
        [ref_buf.transition_picker(*ref_buf.buffer[i]) for i in rows]
    )
    for name in (
        "observations",
        "actions",
        "rewards",
        "next_observations",
        "next_actions",
        "terminals",
        "intervals",
    ):
        a, b = getattr(mine, name), getattr(ref, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    # the lazily built d3rlpy Transition objects carry the rewards-to-go too
    np.testing.assert_array_equal(
        mine.transitions[4].rewards_to_go, ref.transitions[4].rewards_to_go
    )
    assert vec.transition_count == 9 and vec.size() == 3
    assert vec.dataset_info.action_size == 8


def test_row_order_does_not_matter():
    shuffled = np.random.default_rng(0).permutation(len(SESSION))
    a, b = to_transitions(make_log()), to_transitions(make_log(rows=shuffled))
    for name in ("observations", "actions", "rewards", "terminals", "episode_starts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_session_without_end_flag_counts_as_cut():
    tr = to_transitions(make_log(truncated=np.zeros(9, bool)))
    np.testing.assert_array_equal(tr.terminals, LAST.astype(np.float32))
    # session 11 reached the horizon anyway; session 12 stopped early: cut
    assert tr.n_cut == 1 and tr.episode_terminated.sum() == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"step": np.array([0, 1, 3, 0, 1, 2, 3, 0, 1])},
            "session 10 goes from step 1 to 3 at row 2",
        ),
        (
            {"step": np.array([0, 1, 1, 0, 1, 2, 3, 0, 1])},
            "session 10 goes from step 1 to 1 at row 2",
        ),
        (
            {"truncated": np.array([0, 0, 1, 0, 0, 0, 1, 0, 1], bool)},
            "row 2 (session 10, step 2) is both",
        ),
        (
            {"terminated": np.array([0, 1, 1, 0, 0, 0, 0, 0, 0], bool)},
            "row 1 (session 10, step 1) is marked but the session goes on",
        ),
    ],
)
def test_inconsistent_sessions_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_transitions(make_log(**overrides))


def test_non_log_input_is_rejected():
    with pytest.raises(TypeError, match="data must be a LoggedData"):
        to_transitions({"context": np.zeros((2, 2))})  # type: ignore[arg-type]
