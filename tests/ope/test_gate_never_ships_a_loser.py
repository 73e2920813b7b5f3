"""The decision gate never ships a loser (issue 26): the cases of the issue's "Why" as
tests, and a property over random tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from offrec.ope.gate import CANNOT_TELL, KEEP_LOGGER, RECOMMEND, decide
from offrec.ope.selection import Check, Choice
from offrec.ope.trust import GATE_MIN_ESS, RECOMMENDED

ROLES = {
    "logger": "logger",
    "LinUCB (online bandit)": "learned",
    "PPO (online)": "learned",
    "CQL (offline)": "learned",
    "lookahead oracle": "oracle",
}
COLS = ["policy", "estimator", "value", "low", "high", "ess"]


def test_an_ess_of_one_never_makes_a_headline():
    """online_vs_offline as shipped: pdis put LinUCB first on an ESS of 1 of 4,981 sessions
    with a lift of -5.7%, and the report headlined "Recommended (learned policy): LinUCB".
    pdis and wpdis both rest on single-digit ESS for every learned policy, so no estimator
    passes the checks and the gate declines."""
    t = pd.DataFrame(
        [
            ("logger", "pdis", 1.501, 1.47, 1.53, 4981.0),
            ("LinUCB (online bandit)", "pdis", 1.416 * 1.13, 0.0, 4.5, 1.0),
            ("PPO (online)", "pdis", 0.9, 0.0, 3.0, 2.0),
            ("CQL (offline)", "pdis", 1.1, 0.2, 2.0, 3.0),
            ("logger", "wpdis", 1.501, 1.47, 1.53, 4981.0),
            ("LinUCB (online bandit)", "wpdis", 1.416, 0.5, 2.3, 1.0),
            ("PPO (online)", "wpdis", 1.2, 0.4, 2.0, 2.0),
            ("CQL (offline)", "wpdis", 1.3, 0.5, 2.1, 3.0),
        ],
        columns=COLS,
    )
    reason = (f"effective sample size below {GATE_MIN_ESS:g} for every policy",)
    nothing = Choice(None, "none", (), (Check("pdis", False, reason), Check("wpdis", False)), ())
    for choice in (nothing, None):
        d = decide(t, ROLES, mode="session", choice=choice, estimator="pdis")
        assert d.verdict == CANNOT_TELL and d.pick is None, d.sentences
        assert d.sentences[0].startswith("Cannot tell: run an online test.")
        assert "effective sample size of 1.0" in d.sentences[0]
        assert not any(s.startswith("Recommended") for s in d.sentences)


def test_recommended_and_keep_the_logger_never_share_a_headline():
    """A small session pipeline printed "Recommended (learned policy): bandit ... bandit is
    worse than the logging policy: keep the logger" in one box. Whatever the intervals,
    a headline with a negative lift names no recommendation."""
    t = pd.DataFrame(
        [
            ("logger", "mb", 1.00, 0.95, 1.05, np.nan),
            ("CQL (offline)", "mb", 0.97, 0.90, 1.04, np.nan),  # overlaps the logger
        ],
        columns=COLS,
    )
    mb = Choice("mb", "only candidate", ("mb",), (Check("mb", True),), ())

    def paired_below(a: str, b: str, e: str) -> tuple[float, float, float]:
        return (-0.03, -0.05, -0.01)  # paired on the same sessions: clearly below 0

    d = decide(t, ROLES, mode="session", choice=mb, paired=paired_below)
    assert d.verdict == KEEP_LOGGER and d.pick is None
    text = " ".join(d.sentences)
    assert "Recommended" not in text and "worse than" in text


def test_the_headline_scores_with_the_chosen_estimator_not_the_tables_default():
    """The pipeline scored with pdis/wpdis while mb was recommended: the gate's estimator
    is the choice's, whatever the table's ``recommended`` column says."""
    t = pd.DataFrame(
        [
            ("logger", "pdis", 1.0, 0.9, 1.1, 5000.0),
            ("CQL (offline)", "pdis", 2.0, 1.5, 2.5, 12.0),
            ("logger", "mb", 1.0, 0.97, 1.03, np.nan),
            ("CQL (offline)", "mb", 1.2, 1.15, 1.25, np.nan),
        ],
        columns=COLS,
    )
    t["recommended"] = t["estimator"] == "pdis"
    choice = Choice("mb", "slope", ("pdis", "mb"), (Check("pdis", True), Check("mb", True)), ())
    d = decide(t, ROLES, mode="session", choice=choice)
    assert d.estimator == "mb" and d.value == 1.2


def test_online_vs_offline_scores_with_the_session_default_estimator():
    """The shipped pipeline lists the estimator the log is expected to choose (the
    session default, `mb`), so the headline can rest on it rather than on pdis/wpdis."""
    path = Path(__file__).resolve().parents[2] / "pipelines" / "online_vs_offline.toml"
    raw = tomllib.loads(path.read_text())
    assert RECOMMENDED["session"] in raw["ope"]["estimators"]
    assert raw["ope"].get("interval", "bootstrap") is not None


def test_property_a_recommendation_always_has_a_positive_paired_lift_and_agreement():
    """Random tables (3 estimators x logger + 3 candidates, random ESS, random choices):
    whenever the gate recommends, the pick is the best deployable policy by the chosen
    estimator, its lift's interval is above 0, every passing estimator with ESS >= 10
    puts the lift above 0, the ESS is not in single digits, and no sentence contradicts
    it; when it does not recommend, no sentence starts with "Recommended"."""
    rng = np.random.default_rng(26)
    ests = ["pdis", "dr", "mb"]
    cands = ["LinUCB (online bandit)", "PPO (online)", "CQL (offline)"]
    n_rec = 0
    for _ in range(300):
        rows = []
        for e in ests:
            for p in ["logger", *cands]:
                v = float(rng.normal(1.0, 0.2))
                h = float(rng.uniform(0.01, 0.3))
                ess = float(rng.choice([np.nan, 3.0, 50.0, 500.0]))
                ess = 5000.0 if p == "logger" and ess == ess else ess  # its weights are 1
                rows.append((p, e, v, v - h, v + h, ess))
        t = pd.DataFrame(rows, columns=COLS)
        passed = [e for e in ests if rng.random() < 0.7]
        chosen = passed[0] if passed else None
        checks = tuple(Check(e, e in passed) for e in ests)
        choice = Choice(chosen, "slope", tuple(passed), checks, ())
        d = decide(t, ROLES, mode="session", choice=choice, estimator=chosen or "pdis")
        text = " ".join(d.sentences)
        if d.verdict == RECOMMEND:
            n_rec += 1
            sub = t[t["estimator"] == d.estimator].set_index("policy")
            assert d.pick == sub.loc[cands, "value"].idxmax()
            assert d.lift is not None and d.lift.low > 0
            assert not sub.loc[d.pick, "ess"] < GATE_MIN_ESS
            for e in passed:
                s = t[t["estimator"] == e].set_index("policy")
                if not s.loc[d.pick, "ess"] < GATE_MIN_ESS:
                    assert s.loc[d.pick, "value"] > s.loc["logger", "value"]
            assert "worse than" not in text and "Cannot tell:" not in text
        else:
            assert d.pick is None and not text.startswith("Recommended")
    assert 5 < n_rec < 300  # the property was exercised on both sides


def test_keep_the_logger_needs_an_estimator_that_passed():
    """Issue 26's study, offrec h10 / 1,000 items, seed 3: no estimator passed the checks,
    the untrusted estimate put the candidate's lift below 0, and the gate said "keep the
    logger" while a policy was truly better. Without a passing estimator it cannot tell."""
    t = pd.DataFrame(
        [
            ("logger", "mb", 1.00, 0.95, 1.05, np.nan),
            ("CQL (offline)", "mb", 0.84, 0.75, 0.93, np.nan),
        ],
        columns=COLS,
    )

    def paired_below(a: str, b: str, e: str) -> tuple[float, float, float]:
        return (-0.16, -0.28, -0.05)

    nothing = Choice(None, "none", (), (Check("mb", False, ("model off",)),), ())
    d = decide(t, ROLES, mode="session", choice=nothing, paired=paired_below, estimator="mb")
    assert d.verdict == CANNOT_TELL and d.pick is None
    assert "no estimator passed the checks against the log" in d.sentences[0]
    passed = Choice("mb", "only candidate", ("mb",), (Check("mb", True),), ())
    d2 = decide(t, ROLES, mode="session", choice=passed, paired=paired_below)
    assert d2.verdict == KEEP_LOGGER
