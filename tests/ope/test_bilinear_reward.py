"""The cross-fitted bilinear logistic reward model (offrec.reward.bilinear) and the DM / DR /
OffCEM intervals that include its fitting noise (offrec.ope.embedding.cross_fit_interval)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, stdtrit

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys
from offrec.logs.scan import open_log
from offrec.ope import evaluate, make_estimator
from offrec.ope.embedding import _pairs, cross_fit_interval, logging_group_pscore
from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
from offrec.policies.loggers import logging_policy
from offrec.reward.bilinear import BilinearLogistic, context_folds
from offrec.sim import World, WorldConfig


def _synthetic(n: int, n_items: int = 40, seed: int = 0):
    """Rows from a bilinear logistic truth: 300 distinct contexts (users), items with 3 features."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, 3))
    users = rng.normal(size=(300, 2))
    beta = rng.normal(scale=0.7, size=(3, 4))  # [x, 1] x [e, 1]
    u = rng.integers(0, 300, n)
    x = users[u]
    a = rng.integers(0, n_items, n)
    logit = np.einsum("ni,ij,nj->n", np.c_[x, np.ones(n)], beta, np.c_[items[a], np.ones(n)])
    r = (rng.random(n) < expit(logit)).astype(float)
    return items, x, a, r, beta


def test_fit_recovers_coefficients_within_their_standard_errors() -> None:
    items, x, a, r, beta = _synthetic(60_000)
    m = BilinearLogistic(items, l2=1e-3).fit(x, a, r)
    assert m.coef.shape == (3, 12)
    for k in range(3):
        se = np.sqrt(np.diag(np.linalg.inv(m.hess[k])))
        assert np.all(np.abs(m.coef[k] - beta.ravel()) < 5 * se), (m.coef[k], beta.ravel())


def test_each_fold_is_the_penalised_optimum_of_the_other_folds_rows() -> None:
    items, x, a, r, _ = _synthetic(3000)
    m = BilinearLogistic(items, l2=2.0).fit(x, a, r)
    fold = context_folds(x, 3, 0)
    z = np.einsum("ni,nj->nij", np.c_[x, np.ones(len(x))], np.c_[items[a], np.ones(len(x))])
    z = z.reshape(len(x), -1)
    for k in range(3):
        t = fold != k
        grad = z[t].T @ (r[t] - expit(z[t] @ m.coef[k])) - 2.0 * m.coef[k]
        assert np.abs(grad).max() < 1e-6


def test_folds_follow_the_context_and_predictions_are_out_of_fold() -> None:
    items, x, a, r, _ = _synthetic(3000)
    fold = context_folds(x, 3, 0)
    # equal contexts share a fold, whatever the order or the batch
    perm = np.random.default_rng(1).permutation(len(x))
    assert np.array_equal(context_folds(x[perm], 3, 0), fold[perm])
    _, first = np.unique(x, axis=0, return_index=True)
    assert len({(tuple(x[i]), fold[i]) for i in range(len(x))}) == first.size
    assert np.bincount(fold).min() > 700  # balanced enough
    # flipping the rewards of fold 0's rows leaves fold 0's predictions unchanged
    base = BilinearLogistic(items).fit(x, a, r)
    flipped = np.where(fold == 0, 1.0 - r, r)
    other = BilinearLogistic(items).fit(x, a, flipped)
    rows = fold == 0
    assert np.allclose(
        base.predict_pairs(x[rows], a[rows, None]), other.predict_pairs(x[rows], a[rows, None])
    )
    assert not np.allclose(
        base.predict_pairs(x[~rows], a[~rows, None]), other.predict_pairs(x[~rows], a[~rows, None])
    )


def test_predict_mean_is_the_catalog_mean_of_predict_pairs() -> None:
    items, x, a, r, _ = _synthetic(2000, n_items=5000)
    m = BilinearLogistic(items).fit(x, a, r)
    all_items = np.broadcast_to(np.arange(5000), (20, 5000))
    assert np.allclose(m.predict_mean(x[:20]), m.predict_pairs(x[:20], all_items).mean(axis=1))


def _world_rows(n: int, seed: int, n_items: int = 300):
    # a world the bilinear model specifies exactly: no user or observation noise
    w = World(WorldConfig(n_items=n_items, n_users=2000, user_noise=0.0, obs_noise=0.0), seed=0)
    logger = logging_policy(w, "softmax", candidates=50, floor=0.1)
    return w, logger, w.run_sessions(logger, n, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def target_world():
    w, logger, train = _world_rows(20_000, 1000)
    target = HybridLinear(catalog_features(w), w.context_dim, candidates=10, epsilon=0.2)
    target.partial_fit(train.obs, train.action, train.reward)
    return w, logger, target, w.true_value(target).value


@pytest.mark.parametrize("estimator", ["dm", "dr", "offcem"])
def test_correction_is_the_derivative_of_the_estimate_in_one_reward(
    target_world, estimator
) -> None:
    # n * (V(r with r_j changed) - V(r)) = w_j dr + dc_j, c's first-order claim, checked by refitting
    w, logger, target, _ = target_world
    _, _, log = _world_rows(4000, 7)
    x, items = log.obs, catalog_features(w)
    kw = dict(
        action=log.action,
        pscore=log.pscore,
        action_dist=target.action_dist_compact(x),
        item_groups=w.item_topic,
        pscore_group=logging_group_pscore(logger.action_dist_compact(x), w.item_topic, log.action),
    )
    model = BilinearLogistic(items, l2=1.0).fit(x, log.action, log.reward)
    j = int(np.flatnonzero(log.reward == 1)[0])
    r2 = log.reward.copy()
    r2[j] = 0.0
    model2 = BilinearLogistic(items, l2=1.0).fit(x, log.action, r2)
    v1 = cross_fit_interval(estimator, model, x, reward=log.reward, **kw).value
    v2 = cross_fit_interval(estimator, model2, x, reward=r2, **kw).value
    from offrec.ope.terms import round_terms

    dist = kw["action_dist"]
    t = round_terms(reward=log.reward, **{k: kw[k] for k in kw})
    wj = {"dm": 0.0, "dr": t.weight[j], "offcem": t.group_weight[j]}[estimator]
    ws = (
        np.zeros(len(x)) if estimator == "dm" else t.weight if estimator == "dr" else t.group_weight
    )
    c1 = model.correction(x, log.action, log.reward, dist, ws)
    c2 = model.correction(x, log.action, r2, dist, ws)
    other = 0 if j != 0 else 1
    dc = (c2[j] - c1[j]) - (c2[other] - c1[other])  # the centring cancels
    predicted = -wj + dc
    actual = len(x) * (v2 - v1)
    assert abs(actual - predicted) <= 0.05 * abs(predicted) + 1e-3, (actual, predicted)
    assert abs(dc) > 0.05  # the fitting-noise term is not negligible here


@pytest.mark.slow
def test_intervals_cover_the_exact_truth(target_world) -> None:
    # 40 logs of 4,000 rows; the model is well specified, so its intervals must cover the
    # exact truth at the 95% rate: at least 95% - 3 binomial sd = 84.7% of 40 (34 logs)
    w, logger, target, truth = target_world
    items = catalog_features(w)
    seeds = 40
    hits = {e: 0 for e in ("dm", "dr", "offcem")}
    est = {e: [] for e in hits}
    for s in range(seeds):
        _, _, log = _world_rows(4000, s)
        x = log.obs
        b = logger.action_dist_compact(x)
        kw = dict(
            reward=log.reward,
            action=log.action,
            pscore=log.pscore,
            action_dist=target.action_dist_compact(x),
            item_groups=w.item_topic,
            pscore_group=logging_group_pscore(b, w.item_topic, log.action),
        )
        model = BilinearLogistic(items, seed=s).fit(x, log.action, log.reward)
        for e in hits:
            iv = cross_fit_interval(e, model, x, **kw)
            hits[e] += iv.low <= truth <= iv.high
            est[e].append(iv.value)
    floor = 0.95 - 3 * np.sqrt(0.95 * 0.05 / seeds)
    for e in hits:
        assert hits[e] / seeds >= floor, (e, hits, truth, np.mean(est[e]))
        # and unbiased: the mean of 40 estimates within 4 standard errors of the truth
        assert abs(np.mean(est[e]) - truth) <= 4 * np.std(est[e]) / np.sqrt(seeds)


def test_usable_as_evaluate_reward_model(target_world, tmp_path) -> None:
    from offrec.logs import collect, read_logs

    w, logger, target, _ = target_world
    collect(w, logger, out=tmp_path / "log", n_decisions=3000, seed=3)
    data = read_logs(tmp_path / "log")
    x = np.asarray(data.context)
    model = BilinearLogistic(catalog_features(w)).fit(x, data.action, data.reward)
    res = evaluate(
        tmp_path / "log", {"t": target}, estimators=["dm"], reward_model=model, interval=None
    ).table
    direct = cross_fit_interval(
        "dm",
        model,
        x,
        reward=data.reward,
        action=data.action,
        pscore=data.pscore,
        action_dist=target.action_dist_compact(x),
    )
    got = float(res.loc[res.estimator == "dm", "value"].iloc[0])
    assert got == pytest.approx(direct.value, rel=1e-9)


def _terms_by_hand(model, groups, target, w, d):
    """The target's terms on rows ``d`` with the bilinear model's predictions."""
    from offrec.ope.terms import round_terms

    xd = np.asarray(d.context)
    dist = target.action_dist_compact(xd)
    pg = groups.pscore_group(xd, d.action, d.pscore, None, d.pscore_group)
    return (
        xd,
        dist,
        round_terms(
            reward=d.reward,
            action=d.action,
            pscore=d.pscore,
            action_dist=dist,
            estimated_rewards=_pairs(model, xd, d.action, dist),
            item_groups=w.item_topic,
            pscore_group=pg,
        ),
    )


@pytest.mark.parametrize("fit_rows", [10_000, 1200])
def test_evaluate_cross_fits_it_and_widens_the_intervals(target_world, tmp_path, fit_rows) -> None:
    # reward_model=BilinearLogistic(...): evaluate fits it on its sample; with the whole log
    # as the sample, its intervals are cross_fit_interval's; with a smaller sample the
    # corrections sit on the sample's rows only (scaled by n / m)
    from offrec.logs import collect, read_logs

    w, logger, target, _ = target_world
    collect(w, logger, out=tmp_path / "log", n_decisions=3000, seed=4)
    data = read_logs(tmp_path / "log")
    x = np.asarray(data.context)
    names = ["dm", "dr", "offcem"]
    res = evaluate(
        tmp_path / "log",
        {"t": target},
        estimators=names,
        reward_model=BilinearLogistic(catalog_features(w)),
        interval="normal",
        fit_rows=fit_rows,
        batch_size=700,
    ).table.set_index("estimator")
    plain = evaluate(
        tmp_path / "log",
        {"t": target},
        estimators=names,
        reward_model=BilinearLogistic(catalog_features(w)).fit(x, data.action, data.reward)
        if fit_rows >= 3000
        else None,
        interval="normal",
    ).table.set_index("estimator")
    pg = logging_group_pscore(logger.action_dist_compact(x), w.item_topic, data.action)
    kw = dict(reward=data.reward, action=data.action, pscore=data.pscore)
    kw.update(action_dist=target.action_dist_compact(x), item_groups=w.item_topic)
    for e in names:
        if fit_rows >= 3000:
            model = BilinearLogistic(catalog_features(w)).fit(x, data.action, data.reward)
            want = cross_fit_interval(e, model, x, pscore_group=pg, **kw)
            assert res.loc[e, "value"] == pytest.approx(want.value, rel=1e-9)
            assert res.loc[e, "low"] == pytest.approx(want.low, rel=1e-6)
            assert res.loc[e, "high"] == pytest.approx(want.high, rel=1e-6)
            assert plain.loc[e, "value"] == pytest.approx(want.value, rel=1e-9)
            # the model's fitting noise widens DM's interval (DM's own terms vary little)
            if e == "dm":
                assert want.high - want.low > 1.2 * (plain.loc[e, "high"] - plain.loc[e, "low"])
        else:  # by hand: the sample's corrections (scaled by n / m) on its rows, 0 elsewhere
            from offrec.engines import make_engine
            from offrec.engines.sample import draw_sample
            from offrec.ope.embedding import LoggerGroups, model_noise_terms

            src = open_log(tmp_path / "log")
            fit = draw_sample(src, make_engine("local"), fit_rows, 0).data
            assert fit is not None and len(fit.reward) < 3000
            model = BilinearLogistic(catalog_features(w)).fit(
                np.asarray(fit.context), fit.action, fit.reward
            )
            groups = LoggerGroups(data.metadata, False, True)

            est = make_estimator(e)
            xs, ds, ts = _terms_by_hand(model, groups, target, w, fit)
            c_fit = model_noise_terms(est, model, xs, fit.action, ds, ts, 3000 / len(xs))
            keys = row_keys(data.session_id, data.step, data.position)
            at = np.searchsorted(
                keys, row_keys(fit.session_id, fit.step, fit.position), sorter=np.argsort(keys)
            )
            c = np.zeros(3000)
            c[np.argsort(keys)[at]] = c_fit
            psi = est.parts(_terms_by_hand(model, groups, target, w, data)[2]).a
            se = np.std(psi + c, ddof=1) / np.sqrt(3000)
            t = float(stdtrit(2999, 0.975))  # the normal method's Student quantile
            assert res.loc[e, "value"] == pytest.approx(psi.mean(), rel=1e-9)
            assert res.loc[e, "high"] - res.loc[e, "low"] == pytest.approx(2 * t * se, rel=1e-6)


def test_bad_input() -> None:
    items = np.zeros((5, 2))
    with pytest.raises(InputError, match="item_features must be a finite"):
        BilinearLogistic(np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="l2"):
        BilinearLogistic(items, l2=0.0)
    with pytest.raises(InputError, match="n_folds"):
        BilinearLogistic(items, n_folds=1)
    m = BilinearLogistic(items)
    x = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(InputError, match=r"action must be in \[0, 5\); row 2 has 5"):
        m.fit(x, np.array([0, 1, 5] + [0] * 27), np.zeros(30))
    with pytest.raises(InputError, match=r"reward must be in \[0, 1\]; row 0 has 2.0"):
        m.fit(x, np.zeros(30, np.int64), np.r_[2.0, np.zeros(29)])
    with pytest.raises(InputError, match="cross-fitting needs more distinct contexts"):
        m.fit(np.ones((30, 2)), np.zeros(30, np.int64), np.zeros(30))
    with pytest.raises(InputError, match="estimator must be a reward-model estimator"):
        cross_fit_interval("snips", m.fit(x, np.zeros(30, np.int64), np.zeros(30)), x)


def test_cli_evaluate_with_the_bilinear_model(tmp_path, capsys) -> None:
    # `offrec evaluate --reward-model bilinear` builds it on the log's item table; the
    # printed DM equals evaluate() with BilinearLogistic on the table's features
    from offrec.cli import main
    from offrec.logs import collect
    from offrec.logs.catalog import read_catalog

    log, model = tmp_path / "log", tmp_path / "m"
    args = ["--n-items", "2000", "--n-users", "500", "--candidates", "30", "--floor", "0.05"]
    assert main(["simulate", "--out", str(log), *args, "--n-decisions", "6000", "-q"]) == 0
    train = ["train", "bandit", str(log), "--learner", "hybrid", "--out", str(model), "-q"]
    assert main([*train, "--param", "candidates=10"]) == 0
    capsys.readouterr()
    ev = ["evaluate", str(log), "--policy", str(model), "--interval", "normal", "-q"]
    assert main([*ev, "--estimators", "dm,offcem", "--reward-model", "bilinear"]) == 0
    out = capsys.readouterr().out
    rows = {
        ln.split()[1]: float(ln.split()[2]) for ln in out.splitlines() if ln.split()[:1] == ["m"]
    }
    from offrec.models import load_model

    res = evaluate(
        log,
        {"m": load_model(model)},
        estimators=["dm"],
        reward_model=BilinearLogistic(read_catalog(log).features()),
        interval="normal",
    ).table
    assert rows["dm"] == pytest.approx(float(res["value"].iloc[0]), rel=1e-3), out
    # a log without an item table: one line naming what is missing, exit 2
    w = World(WorldConfig(n_items=50, n_users=100), seed=0)
    collect(w, logging_policy(w, "softmax"), out=tmp_path / "small", n_decisions=500, seed=1)
    capsys.readouterr()
    small = ["evaluate", str(tmp_path / "small"), "--policy", str(model), "-q"]
    assert main([*small, "--reward-model", "bilinear", "--estimators", "dm"]) == 2
    err = capsys.readouterr().err
    assert "needs the log's item table (_offrec_items.arrow" in err and "has none" in err, err
