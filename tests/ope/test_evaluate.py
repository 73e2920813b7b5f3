"""The one OPE entry point: equal to the functional core, streamed = in memory, any batch
size, engine-independent bootstrap, diagnostics, warnings, positions, paired comparisons,
session logs, and bad input named by file and row."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from offrec.core.policy import Head, ScorePolicy
from offrec.logs import collect
from offrec.logs.data import LoggedData
from offrec.ope import (
    IPS,
    FixedProbs,
    effective_sample_size,
    estimate_interval,
    estimate_policy_value,
    evaluate,
)
from offrec.ope.evaluate import COLUMNS
from offrec.ope.sequential import estimate_sequential
from offrec.policies.loggers import logging_policy
from offrec.reward import RewardModel
from offrec.sim import MyopicOracle, World, WorldConfig

from .test_estimators import Bandit, _softmax, make_bandit


class LinearSoftmax:
    """A target policy: softmax(context @ weights / temperature)."""

    def __init__(self, weights: np.ndarray, temperature: float = 1.0) -> None:
        self.weights, self.temperature = weights, temperature
        self.n_actions = weights.shape[1]

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return _softmax(obs @ self.weights / self.temperature)


def logged(b: Bandit, position: np.ndarray | None = None, logging_dist: bool = True) -> LoggedData:
    n = b.action.shape[0]
    ints = np.arange(n)
    return LoggedData(
        context=b.context.astype(np.float32),
        action=b.action,
        reward=b.reward,
        pscore=b.pscore,
        session_id=ints,
        step=np.zeros(n, np.int64),
        position=np.zeros(n, np.int64) if position is None else position,
        user_id=ints,
        terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        n_actions=b.logging_dist.shape[1],
        logging_dist=b.logging_dist.astype(np.float32) if logging_dist else None,
    )


W = np.random.default_rng(0).normal(size=(3, 4))
POLICIES = {"soft": LinearSoftmax(W), "sharp": LinearSoftmax(W, temperature=0.3)}


def test_table_matches_the_functional_core() -> None:
    b = make_bandit(3000, seed=1)
    data = logged(b)
    ests = ("ips", "snips", IPS(lambda_=5.0))
    table = evaluate(data, POLICIES, estimators=ests, interval="normal", seed=3).table
    assert list(table.columns) == list(COLUMNS)
    assert table[["policy", "estimator"]].values.tolist() == [
        [p, e] for p in ("soft", "sharp") for e in ("ips", "snips", "ips(lambda_=5.0)")
    ]
    for row in table.itertuples():
        dist = POLICIES[row.policy].action_dist(data.context)
        arrays = dict(reward=b.reward, action=b.action, pscore=b.pscore, action_dist=dist)
        params = {"lambda_": 5.0} if row.estimator.startswith("ips(") else {}
        name = row.estimator.split("(")[0]
        iv = estimate_interval(name, **arrays, **params, method="normal")
        # the streamed path and the in-memory functional core: one formula, one engine
        assert row.value == pytest.approx(
            estimate_policy_value(name, **arrays, **params), rel=1e-12
        )
        assert (row.low, row.high) == pytest.approx((iv.low, iv.high), rel=1e-9)
        assert row.stderr == pytest.approx(
            (iv.high - iv.low) / 2 / stats.t.ppf(0.975, 2999), rel=1e-9
        )
        w = dist[np.arange(3000), b.action] / b.pscore
        assert row.ess == pytest.approx(effective_sample_size(w), rel=1e-9)
        assert row.ess_share == pytest.approx(row.ess / 3000)
        assert row.max_weight == pytest.approx(w.max())
        assert row.support_violation == 0.0
    again = evaluate(data, POLICIES, estimators=ests, interval="normal", seed=3).table
    assert table.equals(again)


@pytest.fixture(scope="module")
def parquet_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    world = World(WorldConfig(horizon=1, n_items=20, n_users=2000), seed=0)
    out = tmp_path_factory.mktemp("logs") / "bandit"
    # 3 files: batches cross file boundaries in the tests below
    collect(
        world,
        logging_policy(world, "softmax"),
        out=out,
        n_decisions=30_000,
        seed=1,
        chunk_rows=4096,
        rows_per_file=12_000,
    )
    return out, world


def test_streamed_equals_in_memory_at_any_batch_size(parquet_log: tuple[Path, World]) -> None:
    from offrec.logs import read_logs

    path, world = parquet_log
    targets = {"myopic": MyopicOracle(world, Head("epsilon_greedy", epsilon=0.3))}
    kw = dict(estimators=["ips", "snips", "dr", "sndr"], seed=4, fit_rows=50_000)
    mem = evaluate(read_logs(path), targets, interval="normal", **kw).table
    boot = {}
    for batch_size in (30_000, 4096, 1000):
        streamed = evaluate(path, targets, interval="normal", batch_size=batch_size, **kw).table
        for col in ("value", "low", "high", "stderr", "ess"):
            np.testing.assert_allclose(streamed[col], mem[col], rtol=1e-9)
        boot[batch_size] = evaluate(
            path, targets, interval="bootstrap", n_bootstrap=200, batch_size=batch_size, **kw
        ).table
    # the resamples are keyed by row, not by batch: the same intervals up to the float32
    # rounding of the bootstrap products (~1e-7 relative)
    for batch_size in (4096, 1000):
        np.testing.assert_allclose(boot[batch_size]["low"], boot[30_000]["low"], rtol=1e-6)
        np.testing.assert_allclose(boot[batch_size]["high"], boot[30_000]["high"], rtol=1e-6)
    threads = evaluate(
        path, targets, interval="bootstrap", n_bootstrap=200, batch_size=1000, workers=2, **kw
    ).table
    np.testing.assert_allclose(threads["low"], boot[1000]["low"], rtol=1e-12)  # same batches


def test_dr_is_close_to_the_exact_truth(parquet_log: tuple[Path, World]) -> None:
    path, world = parquet_log
    target = MyopicOracle(world, Head("epsilon_greedy", epsilon=0.3))
    res = evaluate(path, {"t": target}, estimators=["dr", "snips"], interval="normal", seed=0)
    truth = world.true_value(target).value
    for row in res.table.itertuples():  # within 4 standard errors of the exact value
        assert abs(row.value - truth) < 4 * row.stderr, (row.estimator, row.value, truth)
    assert res.recommended == "dr"


def test_paired_difference_by_hand() -> None:
    b = make_bandit(4000, seed=7)
    res = evaluate(logged(b), POLICIES, estimators=["ips"], interval="normal")
    d = res.compare("sharp", "soft", "ips")
    psi = [
        POLICIES[p].action_dist(b.context.astype(np.float32))[np.arange(4000), b.action]
        / b.pscore
        * b.reward
        for p in ("sharp", "soft")
    ]
    diff = psi[0] - psi[1]
    half = stats.t.ppf(0.975, 3999) * diff.std(ddof=1) / math.sqrt(4000)
    assert d.value == pytest.approx(diff.mean(), rel=1e-12)
    assert (d.low, d.high) == pytest.approx((diff.mean() - half, diff.mean() + half), rel=1e-9)


def test_reward_model_estimators_are_cross_fitted() -> None:
    """Row i's reward prediction comes from the model of the other folds, never from one
    that saw row i: DM's value equals the average of those out-of-fold predictions under
    the target, and differs from what an in-sample fit gives."""
    from offrec.core.hashing import row_keys
    from offrec.ope.evaluate import fit_fold_models

    b = make_bandit(3000, seed=3)
    data = logged(b)
    rm = RewardModel(seed=0)
    res = evaluate(data, POLICIES, estimators=["dm", "dr"], reward_model=rm, interval="normal")
    folds = fit_fold_models(data, rm, 0, 1)  # evaluate's seed is 0, as here
    fold = folds.folds(row_keys(data.session_id, data.step, data.position))
    assert set(np.unique(fold)) == set(range(rm.n_folds))
    out_of_fold = np.empty((data.n_rows, data.n_actions))
    for k in range(rm.n_folds):
        train, test = fold != k, fold == k
        model = rm.fit(
            data.context[train],
            data.action[train],
            data.reward[train],
            data.pscore[train],
            n_actions=data.n_actions,
        )
        out_of_fold[test] = model.predict(data.context[test])
    in_sample = rm.fit(
        data.context, data.action, data.reward, data.pscore, n_actions=data.n_actions
    ).predict(data.context)
    t = res.table.set_index(["policy", "estimator"])
    for p, policy in POLICIES.items():
        dist = policy.action_dist(data.context)
        dm = t.loc[(p, "dm"), "value"]
        assert dm == pytest.approx(float((dist * out_of_fold).sum(axis=1).mean()), rel=1e-9)
        # an in-sample fit would give another value, by far more than rounding
        assert abs(dm - float((dist * in_sample).sum(axis=1).mean())) > 1e-6
        # and DR stays unbiased for the value on this sample (the propensities are right)
        truth_on_sample = float((dist * b.q).sum(axis=1).mean())
        assert abs(t.loc[(p, "dr"), "value"] - truth_on_sample) < 4 * t.loc[(p, "dr"), "stderr"]


def test_support_violations_are_reported_and_warned() -> None:
    """The logger never shows action 3 (a deficient-support logger); the target does."""
    b = make_bandit(2000, seed=4)
    logging = b.logging_dist.copy()
    logging[:, 3] = 0.0
    logging /= logging.sum(axis=1, keepdims=True)
    keep = b.action != 3
    b.action, b.reward, b.context = b.action[keep], b.reward[keep], b.context[keep]
    b.pscore = logging[keep][np.arange(keep.sum()), b.action]
    b.logging_dist = logging[keep]
    data = logged(b)
    res = evaluate(data, POLICIES, estimators=["ips"], interval="normal")
    for row in res.table.itertuples():
        mass = POLICIES[row.policy].action_dist(data.context)[:, 3].mean()
        assert row.support_violation == pytest.approx(mass, rel=1e-6)
        assert ("outside the logger's support" in row.warnings) == (mass > 0.01)
    none = evaluate(logged(b, logging_dist=False), POLICIES, estimators=["ips"], interval="normal")
    assert none.table.support_violation.isna().all()


def test_low_ess_and_heavy_weights_are_warned() -> None:
    b = make_bandit(2000, seed=8)
    greedy = {"greedy": LinearSoftmax(W, temperature=0.01)}
    res = evaluate(logged(b), greedy, estimators=["ips", "snips"], interval="normal")
    row = res.table.iloc[0]
    share = row.ess / 2000
    assert ("low effective sample size" in row.warnings) == (row.ess < 100 or share < 0.01)
    on_policy = evaluate(
        logged(b), {"soft": POLICIES["soft"]}, estimators=["ips"], interval="normal"
    )
    assert "low effective sample size" not in on_policy.table.iloc[0].warnings
    # every warning also comes out as a list, prefixed by its policy and estimator
    assert all(w.startswith("greedy / ") for w in res.warnings())


def test_positions_score_each_row_at_its_position() -> None:
    b = make_bandit(2000, seed=5)
    position = np.random.default_rng(0).integers(0, 3, 2000)
    data = logged(b, position=position)
    table = evaluate(data, POLICIES, estimators=["ips", "snips"], interval="normal").table
    for row in table.itertuples():
        dist = POLICIES[row.policy].action_dist(data.context)
        dist3 = np.repeat(dist[:, :, None], 3, axis=2)
        expected = estimate_policy_value(
            row.estimator,
            reward=b.reward,
            action=b.action,
            pscore=b.pscore,
            action_dist=dist3,
            position=position,
        )
        assert row.value == pytest.approx(expected, rel=1e-12)


def test_fixed_probabilities_stream_by_row(parquet_log: tuple[Path, World]) -> None:
    from offrec.logs import read_logs

    path, world = parquet_log
    data = read_logs(path)
    probs = MyopicOracle(world, Head("epsilon_greedy", epsilon=0.3)).action_dist(data.context)
    a = evaluate(
        path, {"p": FixedProbs(probs)}, estimators=["ips"], interval="normal", batch_size=777
    ).table
    expected = estimate_policy_value(
        "ips", reward=data.reward, action=data.action, pscore=data.pscore, action_dist=probs
    )
    assert a.value.iloc[0] == pytest.approx(expected, rel=1e-12)


class _NoDense(ScorePolicy):
    """A greedy-head policy whose dense action_dist must not be called."""

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        raise AssertionError("the dense distribution was built")


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_greedy_targets_stream_without_the_dense_distribution(
    parquet_log: tuple[Path, World], eps: float
) -> None:
    """A greedy / epsilon-greedy policy is scored from its factored form (its dense
    action_dist is never called) and gets the table of the same distribution written out
    as fixed probabilities: (1 - eps) [a = argmax x @ theta] + eps [a allowed] / |allowed|."""
    from offrec.logs import read_logs

    path, world = parquet_log
    data = read_logs(path)
    theta = np.random.default_rng(3).normal(size=(data.context.shape[1], data.n_actions))
    support = np.arange(data.n_actions) != 4
    target = _NoDense(
        lambda x: np.asarray(x, np.float64) @ theta,
        data.n_actions,
        Head("epsilon_greedy", epsilon=eps),
        support,
    )
    s = np.where(support, np.asarray(data.context, np.float64) @ theta, -np.inf)
    probs = (1 - eps) * (s == s.max(axis=1, keepdims=True)) + eps * support / support.sum()
    kw = dict(
        estimators=["ips", "snips", "dm", "dr", "sndr"],
        interval="normal",
        seed=2,
        fit_rows=20_000,
        batch_size=4096,
    )
    got = evaluate(path, {"t": target}, **kw).table  # type: ignore[arg-type]
    expected = evaluate(path, {"t": FixedProbs(probs)}, **kw).table  # type: ignore[arg-type]
    for col in ("value", "low", "high", "stderr", "ess", "max_weight"):
        np.testing.assert_allclose(got[col], expected[col], rtol=1e-12, err_msg=col)
    # the support diagnostic: the target's mass on actions the logger never takes
    logging = np.full((data.n_rows, data.n_actions), 1.0 / (data.n_actions - 1), np.float32)
    logging[:, 7] = 0.0
    with_dist = dataclasses.replace(data, logging_dist=logging)
    got = evaluate(with_dist, {"t": target}, estimators=["ips"], interval="normal").table
    assert got.support_violation.iloc[0] == pytest.approx(probs[:, 7].mean(), rel=1e-12)


def test_several_greedy_targets_with_ties_share_the_reduced_predictions(
    parquet_log: tuple[Path, World],
) -> None:
    """Two epsilon-greedy targets scored together from the reward model's reductions
    (no dense predictions), one whose scores tie on about half of the rows (its odd rows are
    predicted densely): the table of the same distributions as fixed probabilities."""
    from offrec.logs import read_logs

    path, _ = parquet_log
    data = read_logs(path)
    k = data.n_actions
    rng = np.random.default_rng(5)
    theta = [rng.normal(size=(data.context.shape[1], k)) for _ in range(2)]

    def tied(x: np.ndarray) -> np.ndarray:
        s = np.asarray(x, np.float64) @ theta[1]
        rows = s[:, 0] > s[:, 1]  # a tie between action 3 and the argmax (row-wise: batches)
        s[rows, 3] = s[rows].max(axis=1)
        return s

    scorers = {"a": lambda x: np.asarray(x, np.float64) @ theta[0], "b": tied}
    eps = {"a": 0.1, "b": 0.3}
    targets, fixed = {}, {}
    for name, score in scorers.items():
        targets[name] = _NoDense(score, k, Head("epsilon_greedy", epsilon=eps[name]), None)
        s = score(data.context)
        top = s == s.max(axis=1, keepdims=True)
        fixed[name] = FixedProbs((1 - eps[name]) * top / top.sum(1, keepdims=True) + eps[name] / k)
    assert (top.sum(1) > 1).sum() > data.n_rows // 4  # ties are exercised
    kw = dict(
        estimators=["dm", "dr", "sndr"], interval="normal", seed=2, fit_rows=20_000, batch_size=4096
    )
    got = evaluate(path, targets, **kw).table  # type: ignore[arg-type]
    expected = evaluate(path, fixed, **kw).table  # type: ignore[arg-type]
    for col in ("value", "low", "high", "stderr"):
        np.testing.assert_allclose(got[col], expected[col], rtol=1e-12, err_msg=col)
    # with a dense target among them (the dense predictions for all): the same rows
    mixed = evaluate(path, {"a": targets["a"], "d": fixed["b"], "b": targets["b"]}, **kw).table  # type: ignore[arg-type]
    for name in ("a", "b"):
        rows = mixed.policy == name
        np.testing.assert_allclose(mixed[rows].value, got[got.policy == name].value, rtol=1e-12)


def test_session_logs_use_the_sequential_estimators(tmp_path: Path) -> None:
    from offrec.logs import read_logs

    world = World(WorldConfig(horizon=5, n_items=10, n_users=500), seed=1)
    logger = logging_policy(world, "softmax")
    collect(
        world,
        logger,
        out=tmp_path / "s",
        n_sessions=3000,
        seed=2,
        chunk_rows=2048,
        rows_per_file=5000,
    )
    data = read_logs(tmp_path / "s")
    target = logging_policy(world, "epsilon_greedy", epsilon=0.3)
    kw = dict(estimators=["pdis", "wpdis", "tis"], interval="normal", seed=1)
    streamed = evaluate(tmp_path / "s", {"t": target}, batch_size=999, **kw)
    assert streamed.mode == "session" and streamed.n_units == np.unique(data.session_id).size
    dist = target.action_dist(data.context)
    for row in streamed.table.itertuples():
        iv = estimate_sequential(row.estimator, data, dist, method="normal")
        assert row.value == pytest.approx(iv.value, rel=1e-9)
        assert (row.low, row.high) == pytest.approx((iv.low, iv.high), rel=1e-9)
    # only bandit estimators named: every decision is scored as a bandit round
    per_decision = evaluate(tmp_path / "s", {"t": target}, estimators=["ips"], interval="normal")
    assert per_decision.mode == "bandit" and per_decision.n_units == data.n_rows


def _rewrite_with_bad_row(src: Path, dst: Path, row: int) -> None:
    dst.mkdir()
    for f in sorted(src.glob("*.parquet")):
        table = pq.read_table(f)
        if row < table.num_rows:
            p = table.column("pscore").to_numpy().copy()
            p[row] = 0.0
            table = table.set_column(table.column_names.index("pscore"), "pscore", pa.array(p))
            row = 1 << 60
        else:
            row -= table.num_rows
        pq.write_table(table, dst / f.name)


def test_a_bad_row_in_a_late_batch_is_named_by_file_and_row(
    parquet_log: tuple[Path, World], tmp_path: Path
) -> None:
    path, world = parquet_log
    _rewrite_with_bad_row(path, tmp_path / "bad", 25_123)  # in the third file
    target = {"t": MyopicOracle(world, Head("epsilon_greedy", epsilon=0.3))}
    with pytest.raises(
        ValueError,
        match=r"log file part-00002.parquet: column 'pscore' must be in \(0, 1\]; row 547 \(row 25,123 of the log\) has 0.0",
    ):
        evaluate(tmp_path / "bad", target, estimators=["ips"], batch_size=1000)


BAD = [
    (dict(estimators=["ipw"]), r"are not bandit estimators; valid: \['ips'"),
    (dict(estimators=["pdis"]), r"not bandit estimators.*one step per session"),
    (dict(interval="exact"), r"interval method must be one of"),
    (dict(mode="slate"), r"mode must be one of"),
    (dict(engine="spark"), r"engine must be one of \['local', 'ray'\]; got 'spark'"),
    (dict(batch_size=0), r"batch_size must be >= 1; got 0"),
]


@pytest.mark.parametrize(("options", "message"), BAD)
def test_bad_options(options: dict[str, object], message: str) -> None:
    b = make_bandit(300, seed=6)
    with pytest.raises(ValueError, match=message):
        evaluate(logged(b), POLICIES, **options)  # type: ignore[arg-type]


def test_bad_targets() -> None:
    b = make_bandit(300, seed=6)
    data = logged(b)
    with pytest.raises(
        ValueError, match=r"target 'x' must have n_actions == the log's n_actions \(4\)"
    ):
        evaluate(data, {"x": LinearSoftmax(np.ones((3, 5)))})
    with pytest.raises(ValueError, match=r"targets must name at least one policy"):
        evaluate(data, {})

    class Broken(LinearSoftmax):
        def action_dist(self, obs: np.ndarray) -> np.ndarray:
            return super().action_dist(obs) * 1.1

    with pytest.raises(ValueError, match=r"policy 'bad': action_dist rows must sum to 1 .* row 0"):
        evaluate(data, {"bad": Broken(W)}, estimators=["ips"])


def test_the_feasible_range_follows_the_declared_reward_domain() -> None:
    """Watch time in [0, 300]: a value of 150 is feasible there, and infeasible for clicks."""
    b = make_bandit(2000, seed=9)
    data = logged(b)
    data.reward = data.reward * 150.0 + 50.0 * (data.reward == 0)  # 50 or 150 seconds
    soft = {"soft": POLICIES["soft"]}
    clicks = evaluate(data, soft, estimators=["snips"], interval="normal")
    assert "outside the feasible range [0, 1]" in clicks.table.iloc[0].warnings
    data.reward_domain = {"kind": "continuous", "low": 0.0, "high": 300.0}
    watch = evaluate(data, soft, estimators=["snips"], interval="normal")
    assert watch.value_range == (0.0, 300.0)
    assert "feasible range" not in watch.table.iloc[0].warnings
