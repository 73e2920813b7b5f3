"""Reward models: cross-fitting really holds out, determinism, accuracy on known worlds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from offrec.core.errors import InputError
from offrec.ope import estimate_policy_value, estimate_round_rewards
from offrec.reward import RewardModel


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads crawl when the 2 cores are shared (measured 5x
    slower than one thread under load); results do not depend on the thread count."""
    with threadpool_limits(limits=1):
        yield


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def logistic_world(n: int, seed: int, n_actions: int = 6, d: int = 4) -> dict[str, np.ndarray]:
    """q(x, a) = sigmoid(b0 + x.beta + gamma_a + x.delta_a): the logistic design is well specified."""
    world = np.random.default_rng(99)
    beta, gamma = world.normal(size=d), world.normal(size=n_actions)
    delta = world.normal(size=(d, n_actions))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    q = _sigmoid(-1.0 + (x @ beta)[:, None] + gamma[None, :] + x @ delta)
    action = rng.integers(0, n_actions, n)
    reward = (rng.random(n) < q[np.arange(n), action]).astype(np.float64)
    return dict(context=x, action=action, reward=reward, q=q)


def topic_world(n: int, seed: int, n_items: int = 20, n_topics: int = 6, k: int = 4) -> dict:
    """The simulator's shape: q = sigmoid(theta0 + theta1 <w_u, v_i> + b_i), where v_i sits near
    its topic's centroid, w_u = p_u @ centroids + noise, and the context is p_u + noise."""
    world = np.random.default_rng(7)
    centroids = world.normal(size=(n_topics, k))
    v = centroids[world.integers(0, n_topics, n_items)] + 0.3 * world.normal(size=(n_items, k))
    b = world.normal(0, 0.3, n_items)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n_topics, 0.5), n)
    w = p @ centroids + 0.2 * rng.normal(size=(n, k))
    context = p + 0.05 * rng.normal(size=(n, n_topics))
    q = _sigmoid(-1.5 + 0.8 * w @ v.T + b)
    action = rng.integers(0, n_items, n)
    reward = (rng.random(n) < q[np.arange(n), action]).astype(np.float64)
    return dict(context=context, action=action, reward=reward, q=q)


def test_cross_fitting_holds_out_each_fold() -> None:
    """Flipping the rewards of fold k leaves fold k's predictions unchanged (its model never saw
    them) and changes every other fold's (their models did): a leak would show in the first."""
    data = logistic_world(900, seed=1)
    model = RewardModel(n_folds=3, seed=5)
    fold = model.folds(900)
    base = model.fit_predict(data["context"], data["action"], data["reward"])
    for k in range(3):
        flipped = data["reward"].copy()
        flipped[fold == k] = 1 - flipped[fold == k]
        pred = model.fit_predict(data["context"], data["action"], flipped)
        np.testing.assert_array_equal(pred[fold == k], base[fold == k])
        assert np.abs(pred[fold != k] - base[fold != k]).max() > 0.05


def test_folds_are_balanced_and_seeded() -> None:
    folds = RewardModel(n_folds=4, seed=3).folds(1001)
    assert sorted(np.bincount(folds).tolist()) == [250, 250, 250, 251]
    np.testing.assert_array_equal(folds, RewardModel(n_folds=4, seed=3).folds(1001))
    assert (folds != RewardModel(n_folds=4, seed=4).folds(1001)).any()


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_same_seed_same_predictions(kind: str) -> None:
    data = logistic_world(1200, seed=2)
    args = (data["context"], data["action"], data["reward"])
    a = RewardModel(kind=kind, seed=11).fit_predict(*args)
    b = RewardModel(kind=kind, seed=11).fit_predict(*args)
    c = RewardModel(kind=kind, seed=12).fit_predict(*args)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (1200, 6) and ((a >= 0) & (a <= 1)).all()


def test_logistic_is_accurate_on_a_logistic_world() -> None:
    data = logistic_world(20_000, seed=3)
    pred = RewardModel(seed=0).fit_predict(data["context"], data["action"], data["reward"])
    error = np.abs(pred - data["q"]).mean()
    baseline = np.abs(data["reward"].mean() - data["q"]).mean()  # a constant model
    assert error < 0.02, error
    assert baseline > 0.15


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_models_are_good_enough_for_dm_and_dr_on_the_topic_world(kind: str) -> None:
    """20k rows, 20 items, uniform logger; a mostly greedy target. Measured (seed 4): MAE
    0.051 (logistic) / 0.064 (gbm) against 0.140 for a constant; DM relative error -4.6% /
    -7.6% (shrinkage towards the mean under-rates the best items); DR within 4 SE of the truth
    with 0.56 / 0.57 times the standard error of IPS."""
    data = topic_world(20_000, seed=4)
    q, n = data["q"], 20_000
    target = np.eye(20)[np.argmax(q, axis=1)] * 0.8 + 0.2 / 20
    truth = float((target * q).sum(axis=1).mean())
    pred = RewardModel(kind=kind, seed=0).fit_predict(
        data["context"], data["action"], data["reward"]
    )
    assert np.abs(pred - q).mean() < 0.6 * np.abs(data["reward"].mean() - q).mean()
    arrays = dict(
        reward=data["reward"],
        action=data["action"],
        pscore=np.full(n, 1 / 20),
        action_dist=target,
        estimated_rewards=pred,
    )
    dm = estimate_policy_value("dm", **arrays)
    assert abs(dm - truth) / truth < 0.1
    dr, ips = estimate_round_rewards("dr", **arrays), estimate_round_rewards("ips", **arrays)
    se_dr, se_ips = dr.std(ddof=1) / np.sqrt(n), ips.std(ddof=1) / np.sqrt(n)
    assert abs(dr.mean() - truth) < 4 * se_dr
    assert se_dr < 0.7 * se_ips


def test_positions_add_an_axis_and_a_position_effect() -> None:
    data = logistic_world(6000, seed=5)
    rng = np.random.default_rng(0)
    position = rng.integers(0, 2, 6000)
    # position 1 halves the click odds
    q = data["q"][np.arange(6000), data["action"]]
    q = np.where(position == 1, q / (2 - q), q)
    reward = (rng.random(6000) < q).astype(np.float64)
    pred = RewardModel(seed=0).fit_predict(data["context"], data["action"], reward, None, position)
    assert pred.shape == (6000, 6, 2)
    assert (pred[:, :, 1] < pred[:, :, 0]).all()
    fitted = RewardModel(seed=0).fit(data["context"], data["action"], reward, position=position)
    assert fitted.predict(data["context"][:5]).shape == (5, 6, 2)


@pytest.mark.parametrize("positions", [1, 3])
def test_logistic_predictions_equal_the_classifier_on_every_design_row(positions: int) -> None:
    """predict (folded coefficients, 1 / (1 + exp(z))) against scikit-learn's own
    predict_proba on the explicit (row, action[, position]) design: the same probabilities."""
    data = logistic_world(4000, seed=3)
    rng = np.random.default_rng(1)
    position = rng.integers(0, positions, 4000) if positions > 1 else None
    fitted = RewardModel(seed=0).fit(
        data["context"], data["action"], data["reward"], position=position
    )
    x = data["context"][:300]
    k = 6
    rows, act = (
        np.repeat(np.arange(300), k * positions),
        np.tile(np.repeat(np.arange(k), positions), 300),
    )
    pos = np.tile(np.arange(positions), 300 * k) if positions > 1 else None
    design = fitted.design((x[rows] - fitted.mean) / fitted.scale, act, pos)
    truth = fitted.clf.predict_proba(design)[:, 1].reshape(300, k, positions)
    got = fitted.predict(x).reshape(300, k, positions)
    np.testing.assert_allclose(got, truth, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("positions", [1, 3])
def test_predict_by_fold_is_each_rows_own_fold_model(positions: int) -> None:
    """The blocked cross-fitted prediction: row i by models[fold[i]] (at its own position when
    given), as each model predicts on its own; blocks cut across fold runs."""
    from offrec.reward.model import _BLOCK_CELLS, predict_by_fold

    data = logistic_world(3000, seed=4)
    rng = np.random.default_rng(2)
    position = rng.integers(0, positions, 3000) if positions > 1 else None
    models = [
        RewardModel(seed=s).fit(
            data["context"][s::3],
            data["action"][s::3],
            data["reward"][s::3],
            position=None if position is None else position[s::3],
        )
        for s in range(3)
    ]
    n = 3 * _BLOCK_CELLS // 6 + 17  # several blocks of rows, the last one partial
    x = rng.normal(size=(n, 4))
    fold = rng.integers(0, 3, n)
    fold[: _BLOCK_CELLS // 6] = 1  # one whole block of a single fold
    truth = np.stack([m.predict(x) for m in models])[fold, np.arange(n)]
    np.testing.assert_allclose(predict_by_fold(models, fold, x), truth, rtol=1e-14)
    if positions > 1:
        pos = rng.integers(0, positions, n)
        own = predict_by_fold(models, fold, x, pos)
        np.testing.assert_allclose(own, truth[np.arange(n), :, pos], rtol=1e-14)


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_predict_reduced_by_fold_equals_the_reductions_of_the_dense_predictions(
    kind: str,
) -> None:
    """q @ W and q at given columns, without the dense q: equal to reducing
    predict_by_fold's array (blocks cut across folds; gbm takes the dense route)."""
    from offrec.reward.model import _BLOCK_CELLS, predict_by_fold, predict_reduced_by_fold

    data = logistic_world(3000, seed=4)
    models = [
        RewardModel(kind=kind, seed=s).fit(
            data["context"][s::3], data["action"][s::3], data["reward"][s::3]
        )
        for s in range(3)
    ]
    rng = np.random.default_rng(8)
    n = 2 * _BLOCK_CELLS // 6 + 5 if kind == "logistic" else 500
    x = rng.normal(size=(n, 4))
    fold = rng.integers(0, 3, n)
    weights = rng.random((6, 2))
    cols = rng.integers(0, 6, (n, 3))
    q = predict_by_fold(models, fold, x)
    sums, picked = predict_reduced_by_fold(models, fold, x, weights, cols)
    np.testing.assert_allclose(sums, q @ weights, rtol=1e-13)
    np.testing.assert_allclose(picked, np.take_along_axis(q, cols, axis=1), rtol=1e-13)
    with pytest.raises(InputError, match=r"weights must have shape \(6, P\); got \(5, 2\)"):
        predict_reduced_by_fold(models, fold, x, weights[:5], cols)


def test_fit_predicts_every_action_and_ipw_weighting_runs() -> None:
    data = logistic_world(3000, seed=6)
    fitted = RewardModel(seed=0).fit(data["context"], data["action"], data["reward"], n_actions=8)
    assert fitted.predict(data["context"][:10]).shape == (10, 8)  # actions 6, 7 never logged
    pred = RewardModel(weighting="ipw").fit_predict(
        data["context"], data["action"], data["reward"], np.full(3000, 1 / 6)
    )
    plain = RewardModel().fit_predict(data["context"], data["action"], data["reward"])
    np.testing.assert_allclose(pred, plain, atol=1e-3)  # uniform pscore: the same fit


def test_a_fold_with_one_class_gets_a_constant_model() -> None:
    data = logistic_world(300, seed=7)
    pred = RewardModel().fit_predict(data["context"], data["action"], np.zeros(300))
    np.testing.assert_array_equal(pred, 0.0)


BAD = [
    (dict(reward=np.full(50, 0.5)), r"reward must be 0 or 1 for a classifier; row 0 has 0.5"),
    (dict(action=np.full(50, 7), n_actions=6), r"action must be in \[0, 6\); row 0 has 7"),
    (dict(action=np.zeros(50)), r"action must be integers; got dtype float64"),
    (dict(context=np.zeros(50)), r"context must be 2-D with shape \(n, d\); got shape \(50,\)"),
    (dict(reward=np.zeros(49)), r"reward must have shape \(50,\) like context rows; got \(49,\)"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_inputs(override: dict[str, object], message: str) -> None:
    args: dict[str, object] = dict(
        context=np.zeros((50, 2)), action=np.zeros(50, int), reward=np.zeros(50)
    )
    args.update(override)
    with pytest.raises(ValueError, match=message):
        RewardModel().fit_predict(**args)  # type: ignore[arg-type]


def test_bad_config() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of \['logistic', 'gbm'\]; got 'rf'"):
        RewardModel(kind="rf")
    with pytest.raises(ValueError, match=r"n_folds must be >= 2; got 1"):
        RewardModel(n_folds=1)
    with pytest.raises(ValueError, match=r"weighting='ipw' needs pscore; got None"):
        RewardModel(weighting="ipw").fit_predict(np.zeros((4, 1)), np.zeros(4, int), np.zeros(4))
