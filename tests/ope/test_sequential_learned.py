"""Neural FQE, the model-based and the marginalized estimators on a small MDP whose value
is known exactly (dynamic programming), plus the feasible-range warnings.

The MDP: horizon 3, two actions, observation ``[step / 3, last click]``. Clicking has
probability ``Q_CLICK[a, last_click]``; after each step the user leaves with probability
``LEAVE`` (independent of the click); the step advances and ``last click`` becomes the
click: a linear, deterministic observation update, as the model-based estimator assumes.
The logger is uniform. Tolerances: four standard errors of a mean of ``m`` returns in
``[0, H]`` (standard deviation at most ``H / 2``) inflated by the largest importance
weight ``w_max = 2`` (``sqrt(w_max)``), i.e. ``4 * (H / 2) * sqrt(w_max / m)``.
"""

import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.ope import fqe
from offrec.ope.evaluate import evaluate_sequential
from offrec.ope.sequential import SessionFits, estimate_sequential

H = 3
LEAVE = 0.2
Q_CLICK = np.array([[0.2, 0.5], [0.6, 0.3]])  # [action, last_click]
M = 8000
TOL = 4 * (H / 2) * np.sqrt(2.0 / M)


class _Stochastic:
    n_actions = 2

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.tile([0.3, 0.7], (obs.shape[0], 1))


class _Greedy:
    """Action 1 after no click, action 0 after a click (the better one in each state)."""

    n_actions = 2

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        lc = np.asarray(obs)[:, 1] > 0.5
        return np.stack([lc, ~lc], axis=1).astype(float)


def true_value(policy) -> float:
    """Exact expected clicks per session by dynamic programming over (step, last click)."""
    v_next = np.zeros(2)
    for t in reversed(range(H)):
        v = np.zeros(2)
        for lc in (0, 1):
            pi = policy.action_dist(np.array([[t / H, lc]]))[0]
            q = Q_CLICK[:, lc]
            cont = (1 - LEAVE) if t < H - 1 else 0.0
            v[lc] = pi @ (q + cont * (q * v_next[1] + (1 - q) * v_next[0]))
        v_next = v
    return float(v_next[0])


def simulate(m: int, seed: int) -> LoggedData:
    """A uniform-logger log of ``m`` sessions (vectorized over sessions, loop over 3 steps)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, np.ndarray]] = []
    alive = np.arange(m)
    lc = np.zeros(m)
    for t in range(H):
        k = alive.size
        a = rng.integers(0, 2, k)
        r = (rng.random(k) < Q_CLICK[a, lc.astype(int)]).astype(float)
        trunc = np.full(k, t == H - 1)
        term = (rng.random(k) < LEAVE) & ~trunc
        ctx = np.stack([np.full(k, t / H), lc], axis=1)
        rows.append(dict(s=alive, t=np.full(k, t), x=ctx, a=a, r=r, term=term, trunc=trunc))
        keep = ~(term | trunc)
        alive, lc = alive[keep], r[keep]
    cat = {key: np.concatenate([p[key] for p in rows]) for key in rows[0]}
    n = cat["a"].size
    return LoggedData(
        context=cat["x"].astype(np.float32),
        action=cat["a"],
        reward=cat["r"],
        pscore=np.full(n, 0.5),
        session_id=cat["s"],
        step=cat["t"],
        position=np.zeros(n, np.int64),
        user_id=np.zeros(n, np.int64),
        terminated=cat["term"],
        truncated=cat["trunc"],
        n_actions=2,
    )


@pytest.fixture(scope="module")
def log() -> LoggedData:
    return simulate(M, seed=3)


@pytest.fixture(scope="module")
def fits(log: LoggedData) -> SessionFits:
    return SessionFits(log, seed=0, n_refits=8)


def test_the_dp_truth_matches_a_monte_carlo_of_the_same_mdp():
    """The analytic value is what on-policy sessions average (guards the test's own DP)."""
    data = simulate(40_000, seed=9)  # uniform logger = a policy with pi = 0.5
    uniform = type("U", (), {"action_dist": lambda self, o: np.full((len(o), 2), 0.5)})()
    mc = data.reward.sum() / np.unique(data.session_id).size
    assert abs(mc - true_value(uniform)) < 4 * (H / 2) / np.sqrt(40_000)


@pytest.mark.parametrize("target", [_Stochastic(), _Greedy()], ids=["stochastic", "greedy"])
@pytest.mark.parametrize("estimator", ["mb", "fqe-nn", "mis", "mb-dr", "dr-nn"])
def test_learned_estimators_recover_the_exact_value(log, fits, target, estimator):
    truth = true_value(target)
    res = estimate_sequential(
        estimator, log, target, method="normal", fits=fits, key=type(target).__name__
    )
    assert abs(res.interval.value - truth) < TOL, (estimator, res.interval.value, truth, TOL)
    assert res.interval.low <= res.interval.value <= res.interval.high


def test_the_targets_differ_enough_for_the_tolerance_to_matter():
    """If the estimators confused the two targets, the tolerance above would catch it."""
    assert abs(true_value(_Stochastic()) - true_value(_Greedy())) > 2 * TOL


def test_model_recognises_the_deterministic_update(fits):
    model = fits.session_model()
    assert model.deterministic.all()
    d = 2
    # step fraction advances by 1/H (one-hot block: same for both actions), last click = r
    np.testing.assert_allclose(model.trans[d : d + 2, 0], 1 / H, atol=1e-6)
    np.testing.assert_allclose(model.trans[-1], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(model.trunc_prob, [0, 0, 1])


def test_out_of_range_q_values_carry_a_warning(log, monkeypatch):
    """An FQE whose Q-values leave [0, H] must say so in the row's warnings."""

    class _Bad:
        def predict(self, context, recent):
            return np.full((context.shape[0], 2), -1.0)

    monkeypatch.setattr(fqe, "fit_neural_fqe", lambda *a, **k: _Bad())  # imported when used
    table = evaluate_sequential(
        log, {"t": _Stochastic()}, ["fqe-nn", "dr-nn", "pdis"], fits=SessionFits(log, seed=1)
    )
    w = dict(zip(table["estimator"], table["warnings"], strict=True))
    assert any("Q-values outside the feasible range [0, 3]" in s for s in w["fqe-nn"])
    assert any("value -1 is outside the feasible range" in s for s in w["fqe-nn"])
    assert not any("feasible range" in s for s in w["pdis"])


def test_every_value_outside_the_range_is_warned(log):
    """Property over the table: a value outside [0, H r_max] never comes without a warning
    (a linear FQE given a negative Q-model here)."""
    q = np.full((log.n_rows, 2), -0.5)
    res = estimate_sequential("fqe", log, _Stochastic(), q_hat=q, method="normal")
    assert res.interval.value < 0
    assert any("feasible range" in s for s in res.warnings)


def test_ess_and_support_warnings_on_a_far_target():
    data = simulate(100, seed=4)

    class _Always1:
        n_actions = 2

        def action_dist(self, obs):
            return np.tile([0.0, 1.0], (len(obs), 1))

    res = estimate_sequential("pdis", data, _Always1(), method="normal")
    assert any(
        "tiny ESS" in s for s in res.warnings
    )  # 100 sessions, weights up to 8: ~12 sessions carry step 2


def test_intervals_methods_and_bad_method():
    data = simulate(500, seed=5)
    for method in ("normal", "bernstein", "bootstrap"):
        iv = estimate_sequential("pdis", data, _Stochastic(), method=method).interval
        assert iv.low < iv.value < iv.high
        assert iv.method == method
    nb = estimate_sequential("pdis", data, _Stochastic(), method="normal").interval
    eb = estimate_sequential("pdis", data, _Stochastic(), method="bernstein").interval
    assert eb.high - eb.low > nb.high - nb.low  # Bernstein is the conservative one
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_sequential("pdis", data, _Stochastic(), method="wald")


def test_model_based_needs_the_policy_and_rewards_in_the_domain():
    data = simulate(200, seed=6)
    with pytest.raises(ValueError, match="need the policy itself"):
        estimate_sequential("mb", data, np.full((data.n_rows, 2), 0.5))
    data.reward = data.reward * 2.0
    with pytest.raises(
        ValueError, match=r"reward must be 0/1 clicks for a binary log .* row \d+ has 2"
    ):
        estimate_sequential("mb", data, _Stochastic())


def test_safe_selection_picks_by_lower_bound():
    import pandas as pd

    from offrec.ope.sequential import select_policy

    t = pd.DataFrame(
        {
            "policy": ["a", "b"],
            "estimator": ["mb", "mb"],
            "value": [1.0, 1.2],
            "low": [0.9, 0.5],
            "high": [1.1, 1.9],
        }
    )
    assert select_policy(t, "mb", by="value") == "b"
    assert select_policy(t, "mb", by="low") == "a"
    with pytest.raises(ValueError, match="estimator 'pdis' is not in the table"):
        select_policy(t, "pdis")


def test_fitting_leaves_torch_threads_as_they_were():
    """The neural FQE and the session model run on one torch thread and restore the
    caller's setting (global torch state is not left changed)."""
    import torch

    from offrec.ope.fqe import fit_neural_fqe
    from offrec.ope.model_based import fit_session_model

    log = simulate(400, seed=3)
    before = torch.get_num_threads()
    want = 2 if before != 2 else 3
    torch.set_num_threads(want)
    try:
        dist = np.full((log.n_rows, 2), 0.5)
        fit_neural_fqe(log, dist, max_epochs=1, n_iterations=1)
        assert torch.get_num_threads() == want
        fit_session_model(log)
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


class _Uniform:
    n_actions = 2

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.full((np.asarray(obs).shape[0], 2), 0.5)


def test_session_choice_checks_every_estimator_against_the_logger():
    """On a session log the logger (every weight 1) checks each estimator, the fitted
    ones included, against the value observed on-policy; the chosen estimate of every
    target is near the exact (dynamic-programming) truth."""
    from offrec.ope import evaluate

    log = simulate(M // 4, seed=5)  # a quarter of the sessions: tolerance TOL * 2

    targets = {"logger": _Uniform(), "greedy": _Greedy(), "stochastic": _Stochastic()}
    res = evaluate(log, targets, estimators=["pdis", "wpdis", "mb"], interval="normal")
    choice = res.choice
    assert choice is not None and choice.logger == "logger"
    on_policy = log.reward.sum() / np.unique(log.session_id).size
    assert choice.on_policy == pytest.approx(on_policy, rel=1e-12)
    checks = {c.estimator: c for c in choice.checks}
    t = res.table.set_index(["policy", "estimator"])
    # importance weighting recovers the logger exactly; mb by its model, and is checked
    assert checks["pdis"].logger_error == pytest.approx(0.0, abs=1e-12)
    assert checks["mb"].logger_error == pytest.approx(t.loc[("logger", "mb"), "value"] - on_policy)
    assert checks["mb"].logger_low < checks["mb"].logger_error < checks["mb"].logger_high
    assert all(isinstance(e.warnings, tuple) for e in res.estimates)
    assert choice.estimator in choice.passed and res.recommended == choice.estimator
    # the fitted estimators compare two targets paired: the same start states, random
    # numbers and refits, so the difference is known better than the two intervals say
    d = res.compare("greedy", "logger", "mb")
    assert d.method == "paired"
    assert d.value == pytest.approx(
        t.loc[("greedy", "mb"), "value"] - t.loc[("logger", "mb"), "value"]
    )
    half = lambda p: (t.loc[(p, "mb"), "high"] - t.loc[(p, "mb"), "low"]) / 2  # noqa: E731
    assert 0 < (d.high - d.low) / 2 < np.hypot(half("greedy"), half("logger"))
    truth = true_value(targets["greedy"]) - true_value(targets["logger"])
    assert d.low - TOL < truth < d.high + TOL
    for name, policy in targets.items():
        row = t.loc[(name, choice.estimator)]
        half = (row["high"] - row["low"]) / 2
        assert abs(row["value"] - true_value(policy)) < 2 * half + 2 * TOL, name
