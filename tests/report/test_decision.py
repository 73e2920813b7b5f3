import numpy as np
import pandas as pd
import pytest

from offrec.core.errors import InputError
from offrec.report.decision import (
    compare,
    decide,
    disagreements,
    recommended_estimator,
    trust_table,
)


def _table(rows):
    return pd.DataFrame(rows, columns=["policy", "estimator", "value", "low", "high"])


ROLES = {"learned A": "learned", "rule B": "hand-made", "logger": "logger", "oracle": "oracle"}


def test_headline_never_picks_an_oracle_or_the_logger():
    t = _table(
        [
            ("oracle", "dr", 0.9, 0.8, 1.0),
            ("logger", "dr", 0.5, 0.49, 0.51),
            ("learned A", "dr", 0.6, 0.55, 0.65),
            ("rule B", "dr", 0.4, 0.35, 0.45),
        ]
    )
    d = decide(t, ROLES)
    assert d.pick == "learned A" and d.logger == "logger"
    assert d.sentences[0].startswith(
        "Recommended (learned policy): learned A, estimated value 0.6000 (95% interval 0.5500"
    )
    # unknown policies count as oracles: never picked
    d2 = decide(t, {"logger": "logger"})
    assert d2.pick is None and "nothing to recommend" in d2.sentences[0]


def test_lift_sentence_says_whether_the_interval_excludes_the_logger():
    t = _table(
        [
            ("logger", "dr", 0.50, 0.49, 0.51),
            ("learned A", "dr", 0.60, 0.55, 0.65),
            ("rule B", "dr", 0.52, 0.47, 0.57),
        ]
    )
    d = decide(t, ROLES)
    assert (
        "beats the logging policy: the interval excludes the logger's value (0.5000)"
        in (d.sentences[1])
    )
    t2 = t.copy()
    t2.loc[t2["policy"] == "learned A", ["value", "low", "high"]] = (0.51, 0.45, 0.57)
    d2 = decide(t2, ROLES)
    # the best candidate cannot be told apart from the logger: the gate declines
    assert d2.pick is None and d2.best == "rule B" and d2.verdict == "cannot tell"
    assert d2.sentences[0].startswith("Cannot tell: run an online test. The best candidate")
    assert "cannot tell rule B apart from the logging policy" in d2.sentences[1]
    assert "Cannot tell rule B apart from learned A" in d2.sentences[2]
    assert not any(s.startswith("Recommended") for s in d2.sentences)


def test_independent_approximation_is_the_two_standard_errors_in_quadrature():
    z = 1.959963984540054
    t = _table(
        [
            ("a", "ips", 0.6, 0.6 - z * 0.03, 0.6 + z * 0.03),
            ("b", "ips", 0.5, 0.5 - z * 0.04, 0.5 + z * 0.04),
        ]
    )
    rows = {r["policy"]: r for _, r in t.iterrows()}
    c = compare("a", "b", rows, alpha=0.05)
    assert c.method == "independent approximation"
    assert c.diff == pytest.approx(0.1)
    assert c.high - c.diff == pytest.approx(z * 0.05)  # sqrt(0.03^2 + 0.04^2) = 0.05


def test_paired_difference_uses_the_per_row_differences():
    # two policies sharing a large common noise: the paired interval is far tighter and
    # separates them, the independent one cannot
    rng = np.random.default_rng(0)
    n = 400  # independent half-width 1.96 * sqrt(2/n) = 0.139 > 0.1; paired 0.007
    common = rng.normal(0, 1.0, n)
    psi_a = 0.6 + common + rng.normal(0, 0.05, n)
    psi_b = 0.5 + common + rng.normal(0, 0.05, n)
    se = lambda x: x.std(ddof=1) / np.sqrt(n)  # noqa: E731
    z = 1.959963984540054
    t = _table(
        [
            ("a", "ips", psi_a.mean(), psi_a.mean() - z * se(psi_a), psi_a.mean() + z * se(psi_a)),
            ("b", "ips", psi_b.mean(), psi_b.mean() - z * se(psi_b), psi_b.mean() + z * se(psi_b)),
        ]
    )
    rows = {r["policy"]: r for _, r in t.iterrows()}
    paired = compare("a", "b", rows, alpha=0.05, contributions={"a": psi_a, "b": psi_b})
    indep = compare("a", "b", rows, alpha=0.05)
    assert paired.method == "paired on the same rows"
    d = psi_a - psi_b
    assert paired.high - paired.diff == pytest.approx(z * d.std(ddof=1) / np.sqrt(n))
    assert paired.low > 0 and paired.verdict == "a better"
    assert indep.low < 0 < indep.high and indep.verdict == "cannot tell apart"


def test_the_ope_paired_interval_is_used_when_given_and_stderr_otherwise():
    t = _table([("a", "dr", 0.6, 0.5, 0.7), ("b", "dr", 0.5, 0.4, 0.6)])
    t["stderr"] = [0.03, 0.04]
    rows = {r["policy"]: r for _, r in t.iterrows()}
    calls = []

    def paired(a, b, est):
        calls.append((a, b, est))
        return 0.1, 0.08, 0.12

    c = compare("a", "b", rows, alpha=0.05, estimator="dr", paired=paired)
    assert calls == [("a", "b", "dr")]
    assert (c.diff, c.low, c.high, c.method) == (0.1, 0.08, 0.12, "paired on the same rows")
    # an undefined paired interval (nan) falls back to the stderr column, in quadrature
    c2 = compare("a", "b", rows, alpha=0.05, paired=lambda *_: (0.1, np.nan, np.nan))
    assert c2.method == "independent approximation"
    assert c2.high - c2.diff == pytest.approx(1.959963984540054 * 0.05)
    d = decide(t, {"a": "learned", "b": "logger"}, paired=paired)
    assert d.lift is not None and d.lift.low == 0.08
    assert "the interval excludes the logger's value" not in d.sentences[1]  # 0.5 in [0.5, 0.7]
    assert "the paired interval of the lift excludes 0" in d.sentences[1]


def test_recommended_estimator_reads_the_table_then_falls_back_by_log_type():
    t = _table([("a", "ips", 1, 0, 2), ("a", "dr", 1, 0, 2), ("a", "snips", 1, 0, 2)])
    assert recommended_estimator(t, "bandit") == "dr"
    t_bool = t.assign(recommended=[False, False, True])
    assert recommended_estimator(t_bool, "bandit") == "snips"
    t_str = t.assign(recommended="ips")
    assert recommended_estimator(t_str, "bandit") == "ips"
    t_attr = t.copy()
    t_attr.attrs["recommended"] = {"bandit": "snips", "session": "wpdis"}
    assert recommended_estimator(t_attr, "bandit") == "snips"
    s = _table([("a", "fqe", 1, 0, 2), ("a", "pdis", 1, 0, 2), ("a", "wpdis", 1, 0, 2)])
    assert recommended_estimator(s, "session") == "fqe"
    # no recommended estimator among them: the first of the table (ope.trust.recommended_for)
    assert recommended_estimator(s[s["estimator"] != "fqe"], "session") == "pdis"
    assert recommended_estimator(s.assign(estimator=["mb", "pdis", "wpdis"]), "session") == "mb"
    with pytest.raises(InputError, match="at least one row"):
        recommended_estimator(_table([]), "bandit")


def test_decide_rejects_unknown_roles_and_missing_columns():
    t = _table([("a", "ips", 1, 0, 2)])
    with pytest.raises(InputError, match=r"roles must be in .*'boss'"):
        decide(t, {"a": "boss"})
    with pytest.raises(InputError, match="table must have a 'high' column"):
        decide(t.drop(columns="high"), {"a": "learned"})


def test_trust_table_shows_the_evaluations_diagnostics_and_derives_none():
    t = _table([("a", "ips", 0.5, 0.4, 0.6), ("b", "dm", 0.5, 0.4, 0.6)])
    t["ess"] = [5.0, np.nan]
    t["ess_share"] = [0.005, np.nan]
    t["support_violation"] = [0.0, 0.05]
    t["warnings"] = ["huge weights", None]
    tr = trust_table(t, {"a": "learned", "b": "hand-made"})
    assert tr["support"].tolist() == [1.0, 0.95]
    assert tr["role"].tolist() == ["learned", "hand-made"]
    # warnings are the evaluation's, as they are: nothing is derived here
    assert tr["warnings"].tolist() == ["huge weights", ""]
    assert trust_table(t.drop(columns="warnings"), {})["warnings"].tolist() == ["", ""]


def test_disagreements_name_non_overlapping_intervals_only_grouped_by_outlier():
    t = _table(
        [
            ("a", "ips", 0.50, 0.45, 0.55),
            ("a", "dm", 0.70, 0.68, 0.72),  # beyond ips and dr
            ("a", "dr", 0.53, 0.48, 0.60),
            ("a", "snips", 0.40, 0.30, 0.46),  # beyond dr (0.46 < 0.48) and dm, overlaps ips
            ("b", "ips", 0.50, 0.40, 0.60),
            ("b", "dm", 0.55, 0.50, 0.60),  # overlaps
        ]
    )
    assert disagreements(t) == [
        "a: dm (0.7000, 0.6800 to 0.7200) disagrees with ips (0.5000, 0.4500 to 0.5500), "
        "dr (0.5300, 0.4800 to 0.6000), snips (0.4000, 0.3000 to 0.4600) beyond their intervals.",
        "a: dr (0.5300, 0.4800 to 0.6000) disagrees with snips (0.4000, 0.3000 to 0.4600) "
        "beyond their intervals.",
    ]
    assert disagreements(t, policies=["b"]) == []


def test_gate_refuses_a_lift_resting_on_a_single_digit_ess():
    t = _table([("logger", "ips", 0.50, 0.49, 0.51), ("learned A", "ips", 0.70, 0.65, 0.75)])
    t["ess"] = [1000.0, 9.5]
    d = decide(t, ROLES)
    assert d.verdict == "cannot tell" and d.pick is None and d.best == "learned A"
    assert "effective sample size of 9.5" in d.sentences[0]
    t["ess"] = [1000.0, 10.0]  # the threshold itself passes
    assert decide(t, ROLES).pick == "learned A"


def test_gate_keeps_the_logger_when_the_best_candidate_is_worse_and_never_contradicts():
    t = _table([("logger", "dr", 0.60, 0.59, 0.61), ("learned A", "dr", 0.50, 0.48, 0.52)])
    d = decide(t, ROLES)
    assert d.verdict == "keep the logger" and d.pick is None
    assert d.sentences[0].startswith("Keep the logging policy: the best candidate")
    assert not any("Recommended" in s for s in d.sentences)


def test_gate_needs_the_passing_estimators_to_agree_on_the_sign_of_the_lift():
    from offrec.ope.selection import Check, Choice

    t = _table(
        [
            ("logger", "dr", 0.50, 0.49, 0.51),
            ("learned A", "dr", 0.60, 0.58, 0.62),
            ("logger", "ips", 0.50, 0.40, 0.60),
            ("learned A", "ips", 0.45, 0.30, 0.60),
            ("logger", "dm", 0.50, 0.49, 0.51),
            ("learned A", "dm", 0.40, 0.39, 0.41),
        ]
    )
    both = Choice(
        "dr",
        "slope",
        ("ips", "dr"),
        (Check("ips", True), Check("dr", True), Check("dm", False)),
        (),
    )
    d = decide(t, ROLES, choice=both)
    assert d.estimator == "dr" and d.pick is None and d.verdict == "cannot tell"
    assert "disagree on the sign of the lift: ips puts the lift at -0.05" in d.sentences[0]
    # dm (failed its checks) disagrees too, but only the passing estimators count
    only_dr = Choice(
        "dr",
        "only candidate",
        ("dr",),
        (Check("ips", False), Check("dr", True), Check("dm", False)),
        (),
    )
    d2 = decide(t, ROLES, choice=only_dr)
    assert d2.pick == "learned A" and d2.verdict == "recommend"
    # nothing passed: the gate declines whatever the estimate says
    none = Choice(None, "none", (), (Check("dr", False),), ())
    d3 = decide(t, ROLES, choice=none, estimator="dr")
    assert d3.pick is None and "no estimator passed the checks" in d3.sentences[0]


def test_gate_needs_the_logger_to_recommend():
    t = _table([("learned A", "dr", 0.60, 0.58, 0.62), ("rule B", "dr", 0.40, 0.38, 0.42)])
    d = decide(t, ROLES)
    assert d.pick is None and d.best == "learned A"
    assert "the logging policy was not scored" in d.sentences[0]


def test_an_estimate_on_a_single_digit_ess_does_not_vote_on_the_sign():
    from offrec.ope.selection import Check, Choice

    t = _table(
        [
            ("logger", "mb", 0.50, 0.49, 0.51),
            ("learned A", "mb", 0.60, 0.58, 0.62),
            ("logger", "pdis", 0.50, 0.45, 0.55),
            ("learned A", "pdis", 0.10, 0.0, 0.3),
        ]
    )
    t["ess"] = [np.nan, np.nan, 1000.0, 3.0]
    both = Choice("mb", "slope", ("pdis", "mb"), (Check("pdis", True), Check("mb", True)), ())
    assert decide(t, ROLES, choice=both).pick == "learned A"
    t.loc[3, "ess"] = 10.0  # now it counts, and its sign disagrees
    assert decide(t, ROLES, choice=both).pick is None
