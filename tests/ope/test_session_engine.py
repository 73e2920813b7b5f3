"""One session engine: session estimators are classes on the Parts protocol, fitted ones
fit once on a bounded sample and stream over the log, and the in-memory functions are the
kernel on one batch (the small MDP of ``test_sequential_learned``)."""

import math

import numpy as np
import pytest

from offrec.ope import evaluate, fqe
from offrec.ope.estimators import Parts
from offrec.ope.evaluate import evaluate_sequential
from offrec.ope.intervals import interval
from offrec.ope.moments import Moments, row_keys
from offrec.ope.sequential import (
    IS_BASED,
    LEARNED_SEQUENTIAL,
    NEEDS_CLICKS,
    NEURAL,
    SESSION_CLASSES,
    TRAJECTORY_ESTIMATORS,
    SessionFits,
    estimate_sequential,
    estimate_sequential_full,
)
from tests.ope.test_sequential_learned import TOL, _Stochastic, simulate, true_value


def test_parts_with_ratio_pairs_hand_computed() -> None:
    """K ratio pairs: V = sum_k sum_i B_ik / sum_i C_ik; a pair with zero denominator adds 0;
    the influence values average to V and give the engine's delta-method standard error."""
    b = np.array([[1.0, 2.0, 5.0], [3.0, 0.0, 7.0], [0.0, 1.0, 0.0]])
    c = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    p = Parts(None, b, c)
    assert p.value() == pytest.approx(4 / 4 + 3 / 2)
    cols, form = p.columns()
    assert len(cols) == 6 and form.a is None and form.b == (0, 1, 2) and form.c == (3, 4, 5)
    a = np.array([1.0, 2.0, 6.0])
    q = Parts(a, b, c)
    assert q.value() == pytest.approx(3.0 + 1 + 1.5)
    psi = q.influence()
    assert psi.mean() == pytest.approx(q.value())
    cols, form = q.columns()
    moments = Moments.of(np.column_stack(cols), keys=row_keys(np.arange(3)))
    iv = interval(moments, form, method="normal")
    from scipy.special import stdtrit

    half = stdtrit(2, 0.975) * psi.std(ddof=1) / math.sqrt(3)
    assert (iv.low, iv.high) == pytest.approx((q.value() - half, q.value() + half))


def test_verdict_sets_are_derived_from_the_classes() -> None:
    assert {"fqe-nn", "dr-nn", "wdr-nn", "sndr-nn"} == NEURAL
    assert frozenset() == NEEDS_CLICKS  # mb, mb-dr take bounded rewards
    assert {"sndr-nn", "mb", "mb-dr", "mis"} == LEARNED_SEQUENTIAL
    assert {"tis", "wtis"} == TRAJECTORY_ESTIMATORS
    assert {"fqe", "fqe-nn", "mb"}.isdisjoint(IS_BASED)
    for name, cls in SESSION_CLASSES.items():
        assert cls.name == name and cls.kind == "session" and cls.reference
        assert (name in NEURAL) == (cls.q_model == "neural")


@pytest.fixture(scope="module")
def small_log():
    return _by_session(simulate(1500, seed=7))


def _by_session(log):
    """In-memory logs stream in batches of whole sessions when sorted by session."""
    return log.subset(np.lexsort((log.step, log.session_id)))


def test_streamed_fitted_estimators_fit_once_and_do_not_depend_on_batch_size(
    small_log, monkeypatch
) -> None:
    """The neural Q is fitted once per target (one model per fold) for all three neural
    estimators, then streamed: one batch or many give the same numbers, equal to the
    in-memory kernel on the log as one batch."""
    calls = []
    real = fqe.fit_neural_fqe

    def counting(*a, **k):
        calls.append(1)
        return real(*a, max_epochs=3, n_iterations=2, **{x: v for x, v in k.items()})

    monkeypatch.setattr(fqe, "fit_neural_fqe", counting)
    names = ["fqe-nn", "dr-nn", "wdr-nn", "dr", "fqe", "wpdis"]
    fits = SessionFits(small_log, seed=0)
    one = evaluate(small_log, {"t": _Stochastic()}, estimators=names, interval="normal", fits=fits)
    assert len(calls) == fits.n_folds
    many = evaluate(
        small_log,
        {"t": _Stochastic()},
        estimators=names,
        interval="normal",
        fits=fits,
        batch_size=301,
    )
    assert len(calls) == fits.n_folds  # cached in the fits
    a, b = one.table.set_index("estimator"), many.table.set_index("estimator")
    for e in names:
        assert b.loc[e, "value"] == pytest.approx(a.loc[e, "value"], rel=1e-6), e
        assert b.loc[e, "high"] == pytest.approx(a.loc[e, "high"], rel=1e-6), e
        mem = estimate_sequential(e, small_log, _Stochastic(), method="normal", fits=fits)
        assert mem.value == pytest.approx(a.loc[e, "value"], rel=1e-6), e
        assert (mem.low, mem.high) == pytest.approx((a.loc[e, "low"], a.loc[e, "high"]), rel=1e-6)


def test_one_bootstrap_engine_for_streamed_and_in_memory(small_log) -> None:
    """The in-memory session bootstrap is the streamed one (sessions resampled by their
    hashed id, self-normalized forms renormalized per resample): the same interval."""
    res = evaluate(
        small_log,
        {"t": _Stochastic()},
        estimators=["wpdis", "pdis"],
        interval="bootstrap",
        n_bootstrap=200,
        seed=4,
        batch_size=500,
    )
    t = res.table.set_index("estimator")
    for e in ("wpdis", "pdis"):
        mem = estimate_sequential(e, small_log, _Stochastic(), n_bootstrap=200, seed=4)
        assert mem.method == "bootstrap"
        assert (mem.value, mem.low, mem.high) == pytest.approx(
            (t.loc[e, "value"], t.loc[e, "low"], t.loc[e, "high"]), rel=1e-6
        )  # the bootstrap sums are float32 products


def test_models_fitted_on_a_sample_stream_over_the_whole_log() -> None:
    """With fit_rows below the log's size the Q-model is fitted on a sample of whole
    sessions, yet the DR average runs over every session (n_units) and stays unbiased:
    within TOL of the exact value."""
    log = _by_session(simulate(8000, seed=11))
    target = _Stochastic()
    res = evaluate(
        log,
        {"t": target},
        estimators=["dr", "fqe"],
        interval="normal",
        fit_rows=2000,
        batch_size=5000,
    )
    assert res.n_units == np.unique(log.session_id).size
    dr = res.table.set_index("estimator").loc["dr"]
    assert abs(dr["value"] - true_value(target)) < TOL


def test_in_memory_table_and_deprecated_alias(small_log) -> None:
    table = evaluate_sequential(small_log, {"t": _Stochastic()}, ["pdis", "wtis"])
    assert list(table.columns) == [
        "policy",
        "estimator",
        "value",
        "low",
        "high",
        "interval_method",
        "recommended",
        "warnings",
    ]
    pdis = estimate_sequential("pdis", small_log, _Stochastic(), method="normal")
    assert table.set_index("estimator").loc["pdis", "value"] == pytest.approx(pdis.value)
    with pytest.warns(DeprecationWarning, match="estimate_sequential"):
        old = estimate_sequential_full("pdis", small_log, _Stochastic())
    assert old == pdis


def test_sample_estimators_keep_their_warnings_whole_in_the_table() -> None:
    """A warning of an estimator computed on the sample reaches evaluate's table as one
    sentence (the table joins warnings with '; ', so none may contain it)."""
    from tests.ope.test_sequential_learned import _Greedy

    log = _by_session(simulate(100, seed=2))
    res = evaluate(log, {"g": _Greedy()}, estimators=["mis", "pdis"], interval="normal")
    row = next(e for e in res.estimates if e.estimator == "mis")
    own = estimate_sequential("mis", log, _Greedy(), method="normal").warnings
    assert any("tiny ESS" in w for w in own)
    assert all("; " not in w for w in own)
    assert {w for w in own if "feasible range" not in w} <= set(row.warnings)
