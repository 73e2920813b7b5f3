r"""`mb`'s click model shares slopes across actions that move the state alike (issue 26).

The world is a direct vectorized simulator of offrec's structure at toy size: 48 items in
4 topics, the context is a user's topic profile and per-topic fatigue
(:math:`f_t \leftarrow 0.7 f_t + [\text{topic shown} = t]`), the click probability is
:math:`\sigma(-2 + 3 p_{t_a} + b_a - 0.8 f_{t_a})` with a small item quality :math:`b_a`;
a uniform logger, 5 steps, no leaving. Each item is logged about 60 times in 600 sessions,
too few for its own 8 slopes, while each topic is logged 750 times. The greedy target's
value is Monte-Carlo truth from 400,000 sessions of the world itself (standard error
about 0.002). The choice of the term and of its ridge strength is tested on synthetic
residuals with a known answer; on offrec's own worlds it is measured by
``benchmarks.world_study`` (README, "Across worlds").
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from offrec.logs.data import LoggedData
from offrec.ope import model_based as mbm
from offrec.ope.model_based import fit_session_model, rollout_values
from offrec.ope.session_data import session_structure
from tests.ope.test_model_based_slopes import step_major_log

T, PER, H = 4, 12, 5
A = T * PER
TOPIC = np.repeat(np.arange(T), PER)
BASE = -2.0
QUALITY = np.random.default_rng(5).normal(0, 0.2, A)


def click_prob(x: np.ndarray) -> np.ndarray:
    """(n, A) click probabilities at contexts x = [profile (T), fatigue (T)]."""
    return expit(BASE + 3.0 * x[:, TOPIC] + QUALITY[None] - 0.8 * x[:, T + TOPIC])


def move(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[:, T:] *= 0.7
    x[np.arange(len(a)), T + TOPIC[a]] += 1.0
    return x


def starts(rng: np.random.Generator, m: int) -> np.ndarray:
    return np.hstack([rng.dirichlet(np.full(T, 0.5), m), np.zeros((m, T))])


def greedy(x: np.ndarray) -> np.ndarray:
    """The target: the item with the highest true click probability."""
    return np.eye(A)[np.argmax(click_prob(np.asarray(x, np.float64)), axis=1)]


def greedy_truth(m: int = 400_000) -> float:
    x, total = starts(np.random.default_rng(1), m), 0.0
    for _ in range(H):
        a = np.argmax(click_prob(x), axis=1)
        total += float(click_prob(x)[np.arange(m), a].sum())
        x = move(x, a)
    return total / m


def topic_log(m: int, seed: int) -> LoggedData:
    rng = np.random.default_rng(seed)
    x = starts(rng, m)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in "xar"}
    for _ in range(H):
        a = rng.integers(0, A, m)
        r = (rng.random(m) < click_prob(x)[np.arange(m), a]).astype(np.float64)
        for k, v in zip("xar", (x, a, r), strict=True):
            cols[k].append(v)
        x = move(x, a)
    return step_major_log(cols, A, np.full(m * H, 1 / A))


def mb_value(model: mbm.SessionModel, data: LoggedData) -> float:
    st = session_structure(data)
    f0 = st.first_row
    start = (data.context[f0], st.recent[f0], st.step[f0])
    rng = np.random.default_rng(0)
    return float(rollout_values(model, greedy, *start, n_rollouts=8, rng=rng).mean())


def test_shrinking_toward_the_shared_term_keeps_the_greedy_value() -> None:
    """At one strong ridge on the per-item slopes (10), shrinking toward the shared term
    keeps the greedy target's value within 15% in each of 3 logs and 8% on average, less
    than half the error of shrinking toward one slope for all items (measured: -4.4%,
    -2.0%, -12.9% against -26.2%, -27.4%, -27.6%: every item's topic preference shrunk
    away)."""
    truth = greedy_truth()
    shared, plain = [], []
    for seed in range(3):
        data = topic_log(600, seed)
        model = fit_session_model(data, seed=seed, click_shared=True, click_l2=10.0)
        assert model.click_shared and model.click_G is not None
        shared.append(abs(mb_value(model, data) / truth - 1))
        one = fit_session_model(data, seed=seed, click_shared=False, click_l2=10.0)
        plain.append(abs(mb_value(one, data) / truth - 1))
    assert max(shared) < 0.15 and np.mean(shared) < 0.08, (shared, plain)
    assert all(u < 0.5 * v for u, v in zip(shared, plain, strict=True)), (shared, plain)


def test_the_shared_term_is_what_the_topic_structure_predicts() -> None:
    """The term's features are the directions of the actions' effects: one per topic (the
    fatigue coordinate the topic raises, less the mean effect), identical within a topic."""
    data = topic_log(600, 0)
    model = fit_session_model(data, seed=0, click_shared=True, click_l2=10.0)
    assert model.shared_E is not None
    by_topic = model.shared_E.reshape(T, PER, -1)  # items are numbered topic by topic
    np.testing.assert_allclose(by_topic, by_topic[:, :1].repeat(PER, axis=1), atol=1e-6)
    # centred effects: the T directions sum to 0, so they span T - 1 dimensions (the
    # remaining one is the shared slope beta)
    assert np.linalg.matrix_rank(model.shared_E, tol=1e-6) == T - 1
    # the rollouts' all-actions logits and the per-row logit agree with the term on
    x, a = np.asarray(data.context[:300], np.float64), np.asarray(data.action[:300])
    rec = session_structure(data).recent[:300]
    all_logits = model.click_logits_all(x, rec)[np.arange(300), a]
    np.testing.assert_allclose(all_logits, model.click_logit(x, a, rec), atol=1e-10)
    assert np.abs(model.click_G).max() > 0.1  # the term carries something


def test_a_log_whose_actions_do_not_move_the_state_has_no_shared_term() -> None:
    """A bandit log (one step per session): no action effect, nothing to share; forcing
    the term is harmless (it is dropped)."""
    rng = np.random.default_rng(0)
    n = 2000
    x = starts(rng, n)
    a = rng.integers(0, A, n)
    data = LoggedData(
        context=x.astype(np.float32),
        action=a,
        reward=(rng.random(n) < click_prob(x)[np.arange(n), a]).astype(np.float64),
        pscore=np.full(n, 1 / A),
        session_id=np.arange(n),
        step=np.zeros(n, np.int64),
        position=np.zeros(n, np.int64),
        user_id=np.zeros(n, np.int64),
        terminated=np.zeros(n, bool),
        truncated=np.ones(n, bool),
        n_actions=A,
    )
    for forced in (None, True):
        model = fit_session_model(data, click_shared=forced)
        assert not model.click_shared and model.shared_E is None


@pytest.mark.parametrize(
    ("means", "sd", "want"),
    [
        ((0.30, 0.01, 0.02, 0.0), 0.0, 3),  # no noise: the smallest alone
        ((0.30, 0.01, 0.02, 0.0), 0.5, 1),  # s.e. 0.025: 0.01 is within, 0.30 is not
        ((0.0, 0.0, 0.0), 0.5, 0),  # flat: the weakest
        ((0.5, 0.4, -0.3), 0.5, 2),  # the smallest in absolute value, 0.1 ahead of 0.4
    ],
)
def test_the_calibrated_choice_takes_the_weakest_within_one_standard_error(
    means: tuple[float, ...], sd: float, want: int
) -> None:
    """:func:`_calibrated_choice` on residuals of 400 sessions with exact means ``means``
    and independent noise of s.d. ``sd``: the standard error of a mean is ``sd / 20``
    (0.025 for 0.5)."""
    rng = np.random.default_rng(0)
    resid = []
    for mu in means:
        e = sd * rng.standard_normal(400)
        resid.append(mu + e - e.mean())
    assert mbm._calibrated_choice(resid) == want
