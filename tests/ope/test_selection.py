"""The estimator chosen from the log: the checks every estimator must pass and SLOPE
(Su et al., 2020), on synthetic cases where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.ope import FixedProbs, evaluate
from offrec.ope.intervals import Interval
from offrec.ope.selection import check_estimators, slope
from offrec.ope.trust import GATE_MIN_ESS, Estimate


def _e(est: str, policy: str, value: float, half: float, ess: float = math.nan) -> Estimate:
    return Estimate(policy, est, value, value - half, value + half, ess=ess)


def test_slope_takes_the_narrowest_estimator_consistent_with_the_wider_ones():
    # truth 0.5 for a, 0.3 for b; wide unbiased, medium unbiased, narrow biased (for b only)
    rows = [
        _e("wide", "a", 0.52, 0.10),
        _e("wide", "b", 0.28, 0.10),
        _e("medium", "a", 0.49, 0.04),
        _e("medium", "b", 0.31, 0.04),
        _e("narrow", "a", 0.50, 0.01),
        _e("narrow", "b", 0.45, 0.01),  # 0.14 off for b
    ]
    chosen, order, why = slope(["narrow", "wide", "medium"], rows)
    assert order == ("wide", "medium", "narrow")  # by decreasing width, whatever was given
    assert chosen == "medium"
    assert "narrow is inconsistent with the wider estimators for b" in why
    # without the bias the narrow one is consistent with both: it is chosen
    fixed = [
        r if (r.estimator, r.policy) != ("narrow", "b") else _e("narrow", "b", 0.30, 0.01)
        for r in rows
    ]
    assert slope(["wide", "medium", "narrow"], fixed)[0] == "narrow"


def test_slope_uses_twice_the_half_width_as_in_the_paper():
    # |0.5 - 0.59| = 0.09 <= 2 * (0.04 + 0.01) = 0.10: consistent; 0.61 is not (0.11)
    assert slope(["w", "n"], [_e("w", "a", 0.5, 0.04), _e("n", "a", 0.59, 0.01)])[0] == "n"
    assert slope(["w", "n"], [_e("w", "a", 0.5, 0.04), _e("n", "a", 0.61, 0.01)])[0] == "w"
    assert slope([], [_e("w", "a", 0.5, 0.04)])[0] is None


def test_checks_refuse_missed_logger_values_empty_intervals_and_single_digit_ess():
    rows = [
        _e("ips", "logger", 0.40, 0.02, ess=1000),
        _e("ips", "t", 0.5, 0.1, ess=GATE_MIN_ESS - 0.5),
        _e("dm", "logger", 0.47, 0.01),
        _e("dm", "t", 0.5, 0.01, ess=3.0),
        Estimate("logger", "tis", 0.4, 0.38, 0.42),
        Estimate("t", "tis", 0.0, 0.0, 0.0),
        _e("dr", "logger", 0.41, 0.02, ess=1000),
        _e("dr", "t", 1.5, 0.1, ess=500),
    ]
    on = 0.40

    def diff(est: str) -> Interval:
        r = next(x for x in rows if x.estimator == est and x.policy == "logger")
        return Interval(r.value - on, r.low - on - 0.01, r.high - on + 0.01, "normal", 0.05)

    checks = {
        c.estimator: c
        for c in check_estimators(
            rows,
            uses_weights=lambda e: e != "dm",
            value_range=(0.0, 1.0),
            logger="logger",
            logger_diff=diff,
        )
    }
    assert not checks["ips"].passed  # t, the only policy besides the logger, is below 10
    assert checks["ips"].reasons == ("effective sample size below 10 for every policy (9.5)",)
    # dm uses no weights: its ESS column does not bear on it; it misses the logger's value
    assert not checks["dm"].passed and len(checks["dm"].reasons) == 1
    assert "misses the logging policy's own value: off by +0.07" in checks["dm"].reasons[0]
    assert checks["dm"].logger_error == pytest.approx(0.07)
    assert "no informative interval for t" in checks["tis"].reasons[0]
    assert "outside the feasible range" in checks["dr"].reasons[0]
    # without a logger the value check is not run, and the check says so
    c = check_estimators(rows[:2], uses_weights=lambda e: True, value_range=(0, 1), min_ess=1)
    assert c[0].passed and c[0].reasons == ("not checked against the logger's on-policy value",)


def _nonlinear_log(n: int = 20_000, seed: int = 0) -> tuple[LoggedData, dict, float]:
    """Two actions; q(x, 1) = 0.9 where |x| > 1 else 0.1, q(x, 0) = 0.2: a logistic
    reward model on (x, action) cannot represent it, so DM is biased for the target that
    plays 1 exactly where |x| > 1 (true value 0.9 P(|x|>1) + 0.2 P(|x|<=1) = 0.4222)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1)).astype(np.float32)
    action = rng.integers(0, 2, n)
    far = np.abs(x[:, 0]) > 1
    q = np.where(action == 1, np.where(far, 0.9, 0.1), 0.2)
    reward = (rng.random(n) < q).astype(np.float64)
    data = LoggedData.from_arrays(x, action, reward, np.full(n, 0.5), n_actions=2)
    target = np.column_stack([~far, far]).astype(np.float64)
    p_far = math.erfc(1 / math.sqrt(2))
    return (
        data,
        {"logger": FixedProbs(np.full((n, 2), 0.5)), "t": FixedProbs(target)},
        (0.9 * p_far + 0.2 * (1 - p_far)),
    )


def test_the_choice_avoids_a_biased_model_the_logger_check_cannot_see():
    data, targets, truth = _nonlinear_log()
    res = evaluate(data, targets, estimators=["ips", "snips", "dm", "dr"], interval="normal")
    t = res.table.set_index(["policy", "estimator"])
    assert abs(t.loc[("t", "dm"), "value"] - truth) > 0.1  # DM is far off, with a tight interval
    choice = res.choice
    assert choice is not None and choice.logger == "logger"
    assert choice.on_policy == pytest.approx(float(data.reward.mean()))
    # every estimator recovers the logger's own value (DM too: its model is calibrated on
    # the logger's rows), so all pass the checks; SLOPE then rejects DM
    assert set(choice.passed) == {"ips", "snips", "dm", "dr"}
    assert choice.order[-1] == "dm" and choice.estimator != "dm"
    assert res.recommended == choice.estimator
    v, se = t.loc[("t", choice.estimator), "value"], t.loc[("t", choice.estimator), "stderr"]
    assert abs(v - truth) < 4 * se
    assert any("dm is inconsistent" in r for r in choice.reasons)


def test_without_the_logger_among_the_targets_the_checks_say_so():
    data, targets, _ = _nonlinear_log(4000)
    res = evaluate(data, {"t": targets["t"]}, estimators=["ips", "dr"], interval="normal")
    assert res.choice is not None and res.choice.logger is None
    assert any("no target is the logging policy" in r for r in res.choice.reasons)


def test_single_digit_ess_estimates_neither_count_nor_block():
    """An IS estimator with a usable ESS for one policy passes (with a note) and SLOPE
    ignores its estimate of the policy it cannot see: that garbage does not veto a
    narrower estimator, nor can it be the reason one is chosen."""
    rows = [
        _e("ips", "near", 0.50, 0.05, ess=500),
        _e("ips", "far", 0.05, 0.01, ess=2.0),
        _e("mb", "near", 0.51, 0.01),
        _e("mb", "far", 0.40, 0.01),
    ]
    checks = {
        c.estimator: c
        for c in check_estimators(rows, uses_weights=lambda e: e == "ips", value_range=(0, 1))
    }
    assert checks["ips"].passed
    assert "effective sample size 2.0 for far (< 10): not used" in checks["ips"].reasons
    from offrec.ope.selection import usable

    def use(e: Estimate) -> bool:
        return usable(e, e.estimator == "ips")

    # with the far estimate ips would be the narrower one and veto mb; without it, mb wins
    assert slope(["ips", "mb"], rows)[0] == "ips"
    assert slope(["ips", "mb"], rows, use=use)[0] == "mb"


def test_weights_that_do_not_average_to_one_are_flagged_on_a_real_log() -> None:
    """E_logger[w] = 1 for any target. On the tiny continuous world (horizon 5) the
    target's whole-session weights averaged 0.1 over 30 sessions (most sessions weigh 0,
    the mass is in the unsampled tail): flagged; over 3,000 sessions their interval holds
    1: not flagged. The logger's weights are all 1 (never flagged). The mean is the plain
    mean of the per-session products of ratios, computed here by hand."""
    from offrec.logs.env_collect import env_log
    from offrec.ope.selection import tail_reason
    from tests.ope.test_model_based_continuous import LOGGER, TARGET, world

    for n, flagged in ((30, True), (3000, False)):
        data = env_log(world(), LOGGER, n_sessions=n, seed=1)
        r = evaluate(data, {"logger": LOGGER, "t": TARGET}, estimators=["pdis"], mode="session")
        ratio = TARGET.action_dist(data.context)[np.arange(data.n_rows), data.action] / data.pscore
        _, inv = np.unique(data.session_id, return_inverse=True)
        with np.errstate(divide="ignore"):  # a ratio of 0 zeroes its session's product
            by_hand = np.exp(np.bincount(inv, weights=np.log(ratio))).mean()
        mean = r.weight_mean("t")
        assert mean.value == pytest.approx(by_hand)
        assert (tail_reason("t", mean) is not None) is flagged, mean
        assert tail_reason("logger", r.weight_mean("logger")) is None
        choice = r.choice
        assert choice is not None
        assert (("pdis", "t") in choice.unusable) is flagged


def test_an_unsampled_tail_neither_vetoes_nor_is_chosen() -> None:
    """Issue 26's RECEnv case, by hand: pdis's estimate of a far target is narrow and far
    off (its weights average 0.2, not 1), a wide DR-style estimate and a narrow model
    estimate agree. Without the weight check SLOPE stops at pdis's veto and keeps the wide
    one; with it, the weighted estimates of that target are not used, and the model
    estimate, the only usable one, is chosen. The gate neither lets the flagged estimates
    vote nor rests on one."""
    from offrec.ope.gate import decide
    from offrec.ope.selection import choose_estimator

    rows = [
        _e("dr-nn", "logger", 5.10, 0.15, ess=3000),
        _e("pdis", "logger", 5.10, 0.12, ess=3000),
        _e("mb", "logger", 5.11, 0.2),
        _e("dr-nn", "far", 5.0, 1.0, ess=38),
        _e("pdis", "far", 1.2, 0.6, ess=38),
        _e("mb", "far", 5.3, 0.4),
    ]
    weighted = {"dr-nn", "pdis"}

    class Scored:
        mode, method, value_range = "session", "normal", (0.0, 10.0)
        estimates = rows

        def on_policy_targets(self) -> list[str]:
            return ["logger"]

        def on_policy(self, method: str | None = None) -> Interval:
            return Interval(5.1, 5.0, 5.2, "normal", 0.05)

        def check_against_on_policy(self, policy: str, estimator: str) -> Interval:
            return Interval(0.0, -0.2, 0.2, "normal", 0.05)

    class WithWeights(Scored):
        def weight_mean(self, policy: str) -> Interval:
            if policy == "logger":
                return Interval(1.0, 1.0, 1.0, "normal", 0.05)
            return Interval(0.2, 0.1, 0.3, "normal", 0.05)

    class Shortfall(Scored):
        def weight_mean(self, policy: str) -> Interval:
            if policy == "logger":
                return Interval(1.0, 1.0, 1.0, "normal", 0.05)
            return Interval(0.9, 0.88, 0.92, "normal", 0.05)

    from unittest import mock

    with mock.patch(
        "offrec.ope.sequential.SESSION_CLASSES",
        {
            name: type(name, (), {"uses_weights": staticmethod(lambda w=name in weighted: w)})
            for name in ("dr-nn", "pdis", "mb")
        },
    ):
        plain = choose_estimator(Scored())  # type: ignore[arg-type]
        checked = choose_estimator(WithWeights())  # type: ignore[arg-type]
        # a shortfall the intervals absorb is no reason: the mass known to be missing,
        # 1 - 0.92 = 0.08, can carry at most 0.08 x 10 = 0.8 of a session's value: more
        # than pdis's half-width (0.6), less than dr-nn's (1.0)
        shortfall = choose_estimator(Shortfall())  # type: ignore[arg-type]
    assert plain.estimator == "dr-nn" and plain.unusable == ()
    assert "pdis is inconsistent" in plain.reasons[-1]
    assert checked.estimator == "mb"
    assert shortfall.unusable == (("pdis", "far"),)
    assert "half-width 0.6" in " ".join(
        next(c for c in shortfall.checks if c.estimator == "pdis").reasons
    )
    assert set(checked.unusable) == {("dr-nn", "far"), ("pdis", "far")}
    # no weighted estimator is left with a usable non-logger estimate: they fail
    fails = {c.estimator: c.reasons for c in checked.checks if not c.passed}
    assert set(fails) == {"dr-nn", "pdis"}
    assert "not sampled their tail" in fails["pdis"][0]
    import pandas as pd

    table = pd.DataFrame([r.row() for r in rows])
    roles = {"logger": "logger", "far": "learned"}

    def paired(a: str, b: str, e: str) -> tuple[float, float, float]:
        return (0.19, 0.05, 0.33) if e == "mb" else (-3.9, -4.5, -3.3)

    dec = decide(table, roles, mode="session", paired=paired, choice=checked)
    assert dec.verdict == "recommend" and dec.pick == "far"  # pdis/dr-nn do not vote
    # resting the headline on a flagged estimate is refused
    dec2 = decide(table, roles, mode="session", paired=paired, choice=checked, estimator="pdis")
    assert dec2.verdict != "recommend"
    assert any("tail the log has not sampled" in r for r in dec2.reasons)
