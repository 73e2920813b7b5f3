"""The world study's bars (issue 26), per case and pooled, on hand-made cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks.world_study import bars, misorders_only_ties, truth_se_of_gap


def _case(
    chosen: str | None,
    rows: list[tuple[str, str, float, float, float]],
    truth: dict,
    spearman: dict,
) -> dict:
    """A saved case: rows (estimator, policy, value, low, high) scored against ``truth``
    ({policy: (value, se)}), as :func:`benchmarks.world_study.run_case` writes it."""
    tab = pd.DataFrame(rows, columns=["estimator", "policy", "value", "low", "high"])
    tab["truth"] = tab["policy"].map(lambda p: truth[p][0])
    gap = max(v for v, _ in truth.values()) - truth["logger"][0]
    tab["rel_error"] = (tab["value"] - tab["truth"]).abs() / tab["truth"].abs()
    tab["gap_error"] = (tab["value"] - tab["truth"]).abs() / gap
    tab["covered"] = (tab["low"] <= tab["truth"]) & (tab["truth"] <= tab["high"])
    return {"table": tab, "chosen": chosen, "truth": truth, "gap": gap, "spearman": spearman}


TRUTH = {"logger": (1.0, 0.03), "a": (1.2, 0.04), "b": (0.8, 0.01)}  # gap 0.2
GOOD = _case(
    "mb",
    [
        ("mb", "logger", 1.0, 0.9, 1.1),
        ("mb", "a", 1.26, 1.1, 1.3),  # 5% of the value, 30% of the gap, covered
        ("mb", "b", 0.8, 0.75, 0.78),  # exact, not covered
        ("pdis", "a", 2.0, 0.0, 4.0),
        ("pdis", "b", 0.8, 0.0, 4.0),
    ],
    TRUTH,
    {"mb": 1.0, "pdis": 0.5},
)
EXACT = _case(
    "pdis",
    [("pdis", "logger", 1.0, 0.9, 1.1), ("pdis", "a", 1.2, 1.1, 1.3), ("pdis", "b", 0.8, 0.7, 0.9)],
    TRUTH,
    {"pdis": 0.99999999999},
)
NOTHING = _case(None, [("mb", "a", 1.2, 1.1, 1.3), ("mb", "b", 0.8, 0.7, 0.9)], TRUTH, {"mb": 1.0})


def test_pooled_bars_hand_computed() -> None:
    b = bars([GOOD, EXACT])
    assert b.n == 2 and b.no_choice == 0
    assert b.mean_rel == pytest.approx((0.05 / 2 + 0.0) / 2)  # mean over cases of case means
    assert b.mean_gap == pytest.approx((0.3 / 2 + 0.0) / 2)
    assert (b.covered, b.intervals) == (3, 4)  # GOOD's b is not covered
    assert b.spearman_ones == 2
    assert b.per_case_ok == 1  # GOOD: coverage 50% < 80%
    assert b.errors_met and not b.coverage_met and b.spearman_met
    se = math.hypot(0.04, 0.03) / 0.2  # best (a) against the logger, over the gap
    assert b.worst_truth_se_of_gap == pytest.approx(se)
    assert truth_se_of_gap(GOOD) == pytest.approx(se)


def test_a_case_without_a_choice_is_a_miss() -> None:
    b = bars([EXACT, NOTHING])
    assert b.no_choice == 1
    assert (b.covered, b.intervals) == (2, 4)  # its two targets count as not covered
    assert b.spearman_ones == 1  # mb's Spearman 1 does not count: nothing was chosen
    assert b.mean_rel == 0.0  # over the case with a choice ...
    assert not b.errors_met  # ... but the error bar is missed while a case has no choice
    assert "count as misses" in b.sentence()


def test_logger_best_gives_infinite_truth_noise() -> None:
    worse = {"logger": (1.0, 0.03), "a": (0.9, 0.04)}
    case = _case("mb", [("mb", "a", 0.9, 0.8, 1.0)], worse, {"mb": math.nan})
    case["gap"] = 0.0
    assert truth_se_of_gap(case) == math.inf


def test_offrec_case_logs_the_sessions_asked_for() -> None:
    """``--sessions`` counts sessions (it logged sessions x horizon before)."""
    import numpy as np

    from benchmarks.world_study import offrec_case

    case = offrec_case("offrec-h20", 0, 60, 100)
    n = np.unique(case.train.session_id).size + np.unique(case.held.session_id).size
    assert n == 60
    assert 0 < np.unique(case.held.session_id).size < 60


def test_misorders_of_policies_the_truth_cannot_order_are_counted_apart() -> None:
    """A case whose chosen estimator swaps two policies 0.01 apart in truth (s.e. 0.01 each:
    within two s.e. of their difference, 0.028) is below Spearman 1 but counted as a tie;
    swapping the logger and ``a`` (0.2 apart) is not; nothing chosen is not."""
    truth = {"logger": (1.0, 0.01), "a": (1.2, 0.01), "b": (1.21, 0.01)}
    rows = [
        ("mb", "logger", 1.0, 0.9, 1.1),
        ("mb", "a", 1.25, 1.1, 1.3),
        ("mb", "b", 1.22, 1.1, 1.3),
    ]
    tie = _case("mb", rows, truth, {"mb": 0.5})
    assert misorders_only_ties(tie)
    rows = [
        ("mb", "logger", 1.3, 0.9, 1.4),
        ("mb", "a", 1.25, 1.1, 1.3),
        ("mb", "b", 1.26, 1.1, 1.3),
    ]
    swapped = _case("mb", rows, truth, {"mb": -0.5})
    assert not misorders_only_ties(swapped)
    assert not misorders_only_ties(NOTHING)
    assert misorders_only_ties(EXACT)  # nothing misordered
    b = bars([tie, swapped, EXACT])
    assert (b.spearman_ones, b.spearman_ties) == (1, 1)
    assert "of the other 2, 1 misorder only" in b.sentence()
