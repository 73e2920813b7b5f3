"""Intervals: exact bootstrap sums, determinism, hand-computed analytic intervals, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from offrec.ope import ESTIMATORS, estimate_interval, estimate_policy_value, round_terms
from offrec.ope.intervals import interval_from_terms, resampled_sums

from .test_estimators import ACTION, DIST, PSCORE, REWARD, make_bandit

ARRAYS = dict(reward=REWARD, action=ACTION, pscore=PSCORE, action_dist=DIST)


def _coin_flips(seed: int, n: int, n_bootstrap: int, rows: int) -> np.ndarray:
    """Rebuild the (n_bootstrap, n) 0/1 matrix resampled_sums draws, block by block."""
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n, rows):
        m = min(rows, n - start)
        n_bytes = -(-m // 64) * 8
        raw = rng.bit_generator.random_raw(n_bootstrap * n_bytes // 8)
        bits = np.asarray(raw).view(np.uint8).reshape(n_bootstrap, n_bytes)
        blocks.append(np.unpackbits(bits, axis=1, count=m))
    return np.hstack(blocks).astype(np.float64)


@pytest.mark.parametrize(("n", "n_bootstrap"), [(200, 50), (3001, 2000)])
def test_resampled_sums_equal_explicit_half_sample_sums(n: int, n_bootstrap: int) -> None:
    """(3001, 2000): 512-row blocks, last block of 441 rows (a partial byte in the popcount)."""
    x = np.random.default_rng(0).normal(3.0, 1.0, size=(2, n))
    sums, counts = resampled_sums(x, n_bootstrap, np.random.default_rng(11))
    rows = max(64, ((1 << 20) // n_bootstrap) // 64 * 64)
    h = _coin_flips(11, n, n_bootstrap, rows)
    np.testing.assert_array_equal(counts, h.sum(axis=1))
    np.testing.assert_allclose(sums, (h @ x.T).T, rtol=1e-6)


def test_bootstrap_spread_matches_the_standard_error() -> None:
    x = np.random.default_rng(1).exponential(size=(1, 5000))
    sums, counts = resampled_sums(x, 4000, np.random.default_rng(2))
    spread = (sums[0] / counts).std()
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
    arrays = b.arrays(estimated_rewards=np.clip(b.q + 0.1, 0, 1))
    iv = estimate_interval(name, **arrays, method=method, seed=0)
    assert iv.value == estimate_policy_value(name, **arrays)
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
    (dict(method="jackknife"), ValueError, r"method must be one of \['bootstrap', 'normal', 'bernstein'\]; got 'jackknife'"),
    (dict(alpha=1.5), ValueError, r"alpha must be < 1.0; got 1.5"),
    (dict(n_bootstrap=0), ValueError, r"n_bootstrap must be >= 1; got 0"),
    (dict(n_bootstrap=10.5), TypeError, r"n_bootstrap must be int"),
    (dict(seed=-1), ValueError, r"seed must be >= 0; got -1"),
    (dict(lambda_=1.0, estimator="snips"), ValueError, r"unknown parameter 'lambda_' for estimator 'snips'"),
]  # fmt: skip


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
        terms = round_terms(**b.arrays(estimated_rewards=model))
        for name in names:
            for method in ("bootstrap", "normal"):
                iv = interval_from_terms(name, terms, method=method, seed=rep)
                hits[name, method] += iv.low <= b.truth <= iv.high
    coverage = {key: h / n_reps for key, h in hits.items()}
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage
