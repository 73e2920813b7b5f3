"""Intervals: exact bootstrap sums, determinism, hand-computed analytic intervals, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from offrec.ope import ESTIMATORS, estimate_interval, estimate_policy_value
from offrec.ope.moments import N_BUCKETS, Moments, bucket_of, resample_bits, row_keys

from .test_estimators import ACTION, DIST, PSCORE, REWARD, make_bandit

ARRAYS = dict(reward=REWARD, action=ACTION, pscore=PSCORE, action_dist=DIST)


def test_resample_bits_are_fair_independent_and_a_function_of_the_key() -> None:
    keys = row_keys(np.arange(20_000), np.zeros(20_000, np.int64))
    bits = resample_bits(keys, 300, seed=5).astype(np.float64)
    assert bits.shape == (20_000, 300)
    # each bit is 1 with probability 1/2: the mean over 6M bits is within 4 sd of 0.5
    assert abs(bits.mean() - 0.5) < 4 * 0.5 / math.sqrt(bits.size)
    # resamples are uncorrelated: |corr| of two columns over 20k rows is O(1/sqrt(20k))
    corr = np.corrcoef(bits[:, :50].T)[np.triu_indices(50, 1)]
    assert np.abs(corr).max() < 5 / math.sqrt(20_000)
    # rows are uncorrelated too (consecutive keys must not share bits)
    assert abs(np.corrcoef(bits[:-1].ravel(), bits[1:].ravel())[0, 1]) < 5 / math.sqrt(bits.size)
    # the bits of a row depend on its key and the seed only, not on the rows around it
    np.testing.assert_array_equal(resample_bits(keys[::-1], 300, seed=5), bits[::-1])
    assert not np.array_equal(resample_bits(keys, 300, seed=6), bits)


@pytest.mark.parametrize("cut", [1, 777, 3000])
def test_moments_merge_to_the_moments_of_the_union(cut: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(5000, 3)) * [1.0, 10.0, 0.1]
    keys = row_keys(np.arange(5000))
    whole = Moments.of(x, keys=keys, n_bootstrap=64, seed=1)
    parts = Moments.of(x[:cut], keys=keys[:cut], n_bootstrap=64, seed=1).merge(
        Moments.of(x[cut:], keys=keys[cut:], n_bootstrap=64, seed=1)
    )
    np.testing.assert_allclose(whole.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(whole.cov, np.cov(x.T), rtol=1e-12)
    for name in ("mean", "m2", "low", "high", "buckets", "boot_n"):
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-12)
    # bootstrap sums are float32 products over blocks of buckets (0/1 weights exact, the
    # block sums carry float32 rounding, ~1e-7 relative), accumulated in float64
    np.testing.assert_allclose(parts.boot, whole.boot, rtol=1e-6)
    # row i is in resample b when its bucket is: H[i, b] = bits[bucket(i), b]
    g = bucket_of(keys, seed=1)
    h = resample_bits(g.astype(np.uint64), 64, seed=1).astype(np.float64)
    np.testing.assert_allclose(whole.boot, x.T @ h, rtol=1e-6)
    np.testing.assert_array_equal(whole.boot_n, h.sum(axis=0))


def test_buckets_are_even_and_a_function_of_key_and_seed() -> None:
    keys = row_keys(np.arange(400_000))
    g = bucket_of(keys, seed=3)
    assert g.min() >= 0 and g.max() < N_BUCKETS
    # occupancy is Poisson(n / G): the variance of the counts is their mean, within 5%
    counts = np.bincount(g, minlength=N_BUCKETS)
    assert counts.var() == pytest.approx(counts.mean(), rel=0.05)
    np.testing.assert_array_equal(bucket_of(keys[::-1], seed=3), g[::-1])
    assert (bucket_of(keys, seed=4) != g).mean() > 0.99


def test_bucket_bootstrap_spread_matches_the_standard_error_of_a_large_log() -> None:
    """With ~15 rows a bucket (1M rows), the resampled means spread like the standard
    error of the mean: sd(B = 1000) has ~2.2% relative noise, the grouping ~0.6%."""
    x = np.random.default_rng(7).exponential(size=(1_000_000, 1)) ** 2  # skewed
    m = Moments.of(x, keys=row_keys(np.arange(x.shape[0])), n_bootstrap=1000, seed=2)
    assert m.boot is not None and m.boot_n is not None
    spread = (m.boot[0] / m.boot_n).std()
    assert spread == pytest.approx(x.std() / math.sqrt(x.shape[0]), rel=0.10)


def test_bootstrap_spread_matches_the_standard_error() -> None:
    x = np.random.default_rng(1).exponential(size=(5000, 1))
    m = Moments.of(x, keys=row_keys(np.arange(5000)), n_bootstrap=4000, seed=2)
    assert m.boot is not None and m.boot_n is not None
    spread = (m.boot[0] / m.boot_n).std()
    assert spread == pytest.approx(x.std() / math.sqrt(5000), rel=0.05)


def test_bootstrap_is_deterministic_by_seed() -> None:
    b = make_bandit(2000, seed=3)
    a1 = estimate_interval("ips", **b.arrays(), seed=7)
    a2 = estimate_interval("ips", **b.arrays(), seed=7)
    a3 = estimate_interval("ips", **b.arrays(), seed=8)
    assert a1 == a2
    assert (a1.low, a1.high) != (a3.low, a3.high)
    assert (a1.method, a1.alpha, a1.n_bootstrap) == ("bootstrap", 0.05, 1000)


@pytest.mark.parametrize("method", ["bootstrap", "normal", "bernstein"])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_interval_contains_the_point_estimate(name: str, method: str) -> None:
    b = make_bandit(3000, seed=4)
    arrays = b.arrays(estimated_rewards=np.clip(b.q + 0.1, 0, 1), **b.groups_for(name))
    iv = estimate_interval(name, **arrays, method=method, seed=0)
    assert iv.value == pytest.approx(estimate_policy_value(name, **arrays), rel=1e-12)
    assert iv.low < iv.value < iv.high
    assert iv.method == method and iv.n_bootstrap == (1000 if method == "bootstrap" else None)


def test_self_normalized_estimators_are_renormalized_per_resample() -> None:
    """With every reward 1, SNIPS is exactly 1 on every resample: a zero-width interval.

    Dividing by the full-sample mean weight instead would give a wide interval.
    """
    b = make_bandit(2000, seed=5)
    iv = estimate_interval("snips", **{**b.arrays(), "reward": np.ones(2000)}, seed=0)
    assert iv.low == pytest.approx(1.0, abs=1e-6) and iv.high == pytest.approx(1.0, abs=1e-6)
    ips = estimate_interval("ips", **{**b.arrays(), "reward": np.ones(2000)}, seed=0)
    assert ips.high - ips.low > 0.05


def test_normal_interval_by_hand() -> None:
    # IPS contributions w*r = [1, 0, 2, 4, 0]: mean 1.4, deviations [-.4, -1.4, .6, 2.6, -1.4],
    # sum of squares 11.2, sample variance 11.2 / 4 = 2.8
    iv = estimate_interval("ips", **ARRAYS, method="normal", alpha=0.1)
    half = stats.t.ppf(0.95, df=4) * math.sqrt(2.8 / 5)
    assert (iv.low, iv.high) == pytest.approx((1.4 - half, 1.4 + half), rel=1e-12)
    assert iv.n_bootstrap is None and iv.alpha == 0.1


def test_normal_interval_of_snips_uses_the_linearization() -> None:
    # SNIPS = 7/9; psi = (w*r - 7/9 * w) / mean(w), w = [1, 2, 2, 4, 0], w*r = [1, 0, 2, 4, 0]
    w, wr = np.array([1, 2, 2, 4, 0.0]), np.array([1, 0, 2, 4, 0.0])
    psi = (wr - 7 / 9 * w) / 1.8
    iv = estimate_interval("snips", **ARRAYS, method="normal")
    half = stats.t.ppf(0.975, df=4) * psi.std(ddof=1) / math.sqrt(5)
    assert (iv.low, iv.high) == pytest.approx((7 / 9 - half, 7 / 9 + half), rel=1e-12)


def test_bernstein_interval_by_hand() -> None:
    log_term = math.log(4 / 0.05)
    half = math.sqrt(2 * 2.8 * log_term / 5) + 7 * 4.0 * log_term / (3 * 4)
    iv = estimate_interval("ips", **ARRAYS, method="bernstein", bound=4.0)
    assert (iv.low, iv.high) == pytest.approx((1.4 - half, 1.4 + half), rel=1e-12)
    default = estimate_interval("ips", **ARRAYS, method="bernstein")  # observed range 4 - 0
    assert (default.low, default.high) == (iv.low, iv.high)


def test_analytic_intervals_agree_with_the_bootstrap_at_moderate_n() -> None:
    b = make_bandit(20_000, seed=6)
    for name in ("ips", "snips"):
        boot = estimate_interval(name, **b.arrays(), seed=1, n_bootstrap=2000)
        normal = estimate_interval(name, **b.arrays(), method="normal")
        bern = estimate_interval(name, **b.arrays(), method="bernstein")
        assert boot.high - boot.low == pytest.approx(normal.high - normal.low, rel=0.1)
        assert bern.high - bern.low > normal.high - normal.low  # a bound, wider than the CLT


BAD = [
    (
        dict(method="jackknife"),
        ValueError,
        r"method must be one of \['bootstrap', 'normal', 'bernstein'\]; got 'jackknife'",
    ),
    (dict(alpha=1.5), ValueError, r"alpha must be < 1.0; got 1.5"),
    (dict(n_bootstrap=0), ValueError, r"n_bootstrap must be >= 1; got 0"),
    (dict(n_bootstrap=10.5), TypeError, r"n_bootstrap must be int"),
    (dict(seed=-1), ValueError, r"seed must be >= 0; got -1"),
    (
        dict(lambda_=1.0, estimator="snips"),
        ValueError,
        r"unknown parameter 'lambda_' for estimator 'snips'",
    ),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD)
def test_bad_interval_options(options: dict[str, object], error: type, message: str) -> None:
    options = dict(options)
    name = options.pop("estimator", "ips")
    with pytest.raises(error, match=message):
        estimate_interval(name, **ARRAYS, **options)  # type: ignore[arg-type]


def test_one_row_is_not_enough() -> None:
    with pytest.raises(ValueError, match=r"an interval needs at least 2 rows; got 1"):
        estimate_interval("ips", reward=[1.0], action=[0], pscore=[0.5], action_dist=[[1.0, 0.0]])


def test_coverage_on_the_synthetic_bandit() -> None:
    """200 logs of 2000 rows from a world with exact truth; 95% intervals must cover it
    in 88-99% of the logs (the binomial sd of a 95% rate over 200 logs is 1.5 points)."""
    n_reps = 200
    names = ("ips", "snips", "dr")
    hits = {(name, m): 0 for name in names for m in ("bootstrap", "normal")}
    for rep in range(n_reps):
        b = make_bandit(2000, seed=10_000 + rep)
        model = np.clip(b.q + 0.1 * np.sin(7 * b.context[:, :1]), 0, 1)  # imperfect, fixed model
        arrays = b.arrays(estimated_rewards=model)
        for name in names:
            for method in ("bootstrap", "normal"):
                iv = estimate_interval(name, **arrays, method=method, seed=rep)
                hits[name, method] += iv.low <= b.truth <= iv.high
    coverage = {key: h / n_reps for key, h in hits.items()}
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage


def test_a_nan_column_leaves_the_other_estimates_intervals_alone() -> None:
    """One estimator's nan terms (e.g. a model fitted on nothing) must not turn every
    other estimator's interval nan: the delta-method variance reads only the columns a
    form uses. The interval of column 0 equals the one computed without the nan column,
    and the nan column's own interval stays nan."""
    from offrec.ope.intervals import Form, interval, standard_error

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    poisoned = x.copy()
    poisoned[7, 2] = np.nan
    clean, bad = Moments.of(x[:, :2]), Moments.of(poisoned)
    for method in ("normal", "bernstein"):
        want = interval(clean, Form(0), method=method)
        got = interval(bad, Form(0), method=method)
        assert (got.low, got.high) == pytest.approx((want.low, want.high), rel=1e-12), method
        ratio = interval(bad, Form(1, (0,), (1,)), method=method)  # a self-normalized form
        assert math.isfinite(ratio.low) and math.isfinite(ratio.high), method
    assert standard_error(bad, Form(0)) == pytest.approx(standard_error(clean, Form(0)))
    assert math.isnan(interval(bad, Form(2), method="normal").low)
