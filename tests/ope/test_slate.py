"""Slate estimators: hand-computed values, expectations against enumeration of every slate
(6 items, slates of 3), bias where an assumption fails, intervals over whole slates, and
bad-input errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import offrec.ope.slate as slate_mod
from offrec.core.errors import InputError
from offrec.core.policy import Head, ScorePolicy, UniformPolicy
from offrec.ope.slate import (
    PI,
    SLATE_DIAGNOSTICS,
    SLATE_ESTIMATORS,
    CascadeDR,
    make_slate_estimator,
    slate_terms,
)
from offrec.ope.trust import READS, REWARD_MODEL, WEIGHTS
from offrec.sim.config import WorldConfig
from offrec.sim.slate import CLICK_MODELS, ClickModel, PlackettLuce, SlateWorld, TopKEpsilon
from offrec.sim.world import World

M, K, U = 6, 3, 5
PERMS = np.array(list(itertools.permutations(range(M), K)), dtype=np.int64)


def _hand() -> dict[str, np.ndarray]:
    """Two slates of two slots, every propensity given by hand."""
    return {
        "slate_id": np.array([7, 7, 3, 3]),
        "position": np.array([0, 1, 1, 0]),  # slate 3's rows out of order on purpose
        "reward": np.array([1.0, 0.0, 1.0, 1.0]),
        "pscore": np.array([0.5, 0.5, 0.25, 0.25]),
        "evaluation_policy_pscore": np.array([0.25, 0.25, 0.5, 0.5]),
        "pscore_item_position": np.array([0.5, 0.5, 0.25, 0.5]),
        "evaluation_policy_pscore_item_position": np.array([0.25, 1.0, 0.5, 0.5]),
        "pscore_cascade": np.array([0.5, 0.5, 0.25, 0.5]),
        "evaluation_policy_pscore_cascade": np.array([0.25, 0.25, 0.5, 1.0]),
    }


def test_hand_computed_values() -> None:
    a = _hand()
    # slate 7: w = 0.5, rewards (1, 0); slate 3: w = 2, rewards (pos0 = 1, pos1 = 1)
    assert make_slate_estimator("sips").estimate_policy_value(**a) == pytest.approx((0.5 + 4) / 2)
    # iips: slate 7: 0.5*1 + 2*0; slate 3: pos0 w=1 r=1, pos1 w=2 r=1
    assert make_slate_estimator("iips").estimate_policy_value(**a) == pytest.approx((0.5 + 3) / 2)
    # rips: slate 7: 0.5*1 + 0.5*0; slate 3: pos0 w=2 r=1, pos1 w=2 r=1
    assert make_slate_estimator("rips").estimate_policy_value(**a) == pytest.approx((0.5 + 4) / 2)
    # snsips: (0.5*1 + 2*2) / (0.5 + 2)
    assert make_slate_estimator("snsips").estimate_policy_value(**a) == pytest.approx(4.5 / 2.5)
    # sniips: pos0 (0.5 + 1) / (0.5 + 1) + pos1 (0 + 2) / (2 + 2)
    assert make_slate_estimator("sniips").estimate_policy_value(**a) == pytest.approx(1.5)
    # snrips: pos0 (0.5 + 2) / 2.5 + pos1 (0 + 2) / 2.5
    assert make_slate_estimator("snrips").estimate_policy_value(**a) == pytest.approx(1.8)
    rr = make_slate_estimator("sips").estimate_round_rewards(**a)
    np.testing.assert_allclose(rr, [4.0, 0.5])  # slates in slate_id order (3, 7)


def test_cascade_dr_hand_computed_and_zero_model_is_rips() -> None:
    a = _hand()
    a["action"] = np.array([0, 1, 1, 0])
    q = np.array([[0.5, 0.0], [0.0, 0.25], [1.0, 0.5], [0.5, 0.5]])
    dist = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    # slate 7: k0: w=.5 (1 - .5) + 1 * .5 = .75; k1: w=.5 (0 - .25) + .5 * .25 = 0
    # slate 3: k0 (row 3): w=2 (1 - .5) + 1 * .5 = 1.5; k1 (row 2): 2 (1 - .5) + 2 * .75 = 2.5
    got = CascadeDR().estimate_policy_value(**a, q_hat=q, evaluation_policy_action_dist=dist)
    assert got == pytest.approx((0.75 + 0.0 + 1.5 + 2.5) / 2)
    zero = CascadeDR().estimate_policy_value(
        **a, q_hat=np.zeros_like(q), evaluation_policy_action_dist=dist
    )
    assert zero == pytest.approx(make_slate_estimator("rips").estimate_policy_value(**a))


def _enumerated_arrays(
    click: str, target_name: str
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Every (user, slate) pair of a tiny world as logged slates whose reward is the exact
    expected click of each slot; returns the arrays, the logger's probability of each
    slate (to take expectations) and the target's true value by enumeration."""
    world = World(WorldConfig(n_items=M, n_users=U), seed=4)
    sw = SlateWorld(world, K, ClickModel(click, eta=1.0, stop=0.2))
    base = ScorePolicy(lambda o: 3.0 * o[:, :M], M, Head("softmax"))
    logger = PlackettLuce(UniformPolicy(M), K)
    target = {
        "pl": PlackettLuce(base, K, temperature=0.5),
        "top-k-eps": TopKEpsilon(base, K, epsilon=0.3),
    }[target_name]
    users = np.repeat(np.arange(U), len(PERMS))
    slates = np.tile(PERMS, (U, 1))
    obs = sw.users_obs(users)
    er = sw.expected_clicks(users, slates)  # (n, K) exact E[r_k | u, s]
    b_cond, e_cond = logger.conditional(obs, slates), target.conditional(obs, slates)
    b_casc, e_casc = np.cumprod(b_cond, axis=1), np.cumprod(e_cond, axis=1)
    b_marg, _ = logger.marginals(obs)
    e_marg, _ = target.marginals(obs)
    idx = np.arange(len(slates))[:, None], np.arange(K)[None, :], slates
    n = len(slates)
    shown = np.arange(n)[:, None], slates  # P(item anywhere in the slate) = sum over slots
    b_in, e_in = b_marg.sum(axis=1)[shown], e_marg.sum(axis=1)[shown]
    # q_hat_k is a function of (user, k, prefix, candidate) only, as cascade-DR requires
    table = np.random.default_rng(0).uniform(size=(U, K, (M + 1) ** (K - 1), M))
    code = np.zeros((n, K), np.int64)
    for k in range(1, K):
        code[:, k] = code[:, k - 1] + (slates[:, k - 1] + 1) * (M + 1) ** (k - 1)
    q_hat = table[users[:, None], np.arange(K)[None, :], code].reshape(n * K, M)
    arrays = {
        "slate_id": np.repeat(np.arange(n), K),
        "position": np.tile(np.arange(K), n),
        "reward": er.ravel(),
        "action": slates.ravel(),
        "pscore": np.repeat(b_casc[:, -1], K),
        "evaluation_policy_pscore": np.repeat(e_casc[:, -1], K),
        "pscore_item_position": b_marg[idx].ravel(),
        "evaluation_policy_pscore_item_position": e_marg[idx].ravel(),
        "pscore_cascade": b_casc.ravel(),
        "evaluation_policy_pscore_cascade": e_casc.ravel(),
        "pscore_item": b_in.ravel(),
        "evaluation_policy_pscore_item": e_in.ravel(),
        "q_hat": q_hat,
        "evaluation_policy_action_dist": target.next_item_dist(obs, slates).reshape(n * K, M),
    }
    truth = float((e_casc[:, -1] * er.sum(axis=1)).sum() / U)
    assert truth == pytest.approx(sw.true_value(target).value, abs=1e-12)
    return arrays, b_casc[:, -1] / U, truth


@pytest.mark.parametrize("target", ["pl", "top-k-eps"])
@pytest.mark.parametrize("click", CLICK_MODELS)
def test_expectations_equal_truth_by_enumeration(click: str, target: str) -> None:
    """E[estimate] = sum over every (user, slate) of P_logger(user, slate) times the
    per-slate contribution with rewards replaced by their expectations (the linear
    estimators are linear in the rewards). SIPS, RIPS and cascade-DR are unbiased under
    every click model here; IIPS and PI (with the uniform ranking logger's exact
    pseudo-inverse) under independent and position-based clicks only."""
    arrays, prob, truth = _enumerated_arrays(click, target)
    assert np.allclose(arrays["pscore_item"], K / M)  # the logger is uniform
    for name in ("sips", "iips", "rips", "cascade-dr", "pi"):
        est = PI(n_items=M) if name == "pi" else make_slate_estimator(name)
        expectation = float(prob @ est.estimate_round_rewards(**arrays))
        if name in ("iips", "pi") and click == "cascade":
            # the assumption fails: biased (exact enumeration: rounding is ~1e-15, and
            # PI's bias here is small, 0.09% of the truth for the top-k target)
            assert abs(expectation - truth) > 1e-6 * truth, name
        else:
            assert expectation == pytest.approx(truth, rel=1e-10), name


def test_interval_resamples_whole_slates_and_covers() -> None:
    """The bootstrap unit is the slate: the interval does not depend on the row order
    within the log, and keys by (session_id, step) when given."""
    world = World(WorldConfig(n_items=M, n_users=50), seed=1)
    sw = SlateWorld(world, K, ClickModel("pbm"))
    logger = PlackettLuce(UniformPolicy(M), K)
    rounds = sw.log(logger, 2000, seed=2)
    rows = rounds.rows()
    arrays = {k: rows[k] for k in ("slate_id", "position", "reward", "pscore")}
    arrays["evaluation_policy_pscore"] = rows["pscore"]  # target = logger: w = 1
    est = make_slate_estimator("sips")
    a = est.estimate_interval(**arrays, seed=3, n_bootstrap=400)
    perm = np.random.default_rng(0).permutation(len(rows["reward"]))
    b = est.estimate_interval(**{k: v[perm] for k, v in arrays.items()}, seed=3, n_bootstrap=400)
    assert (a.value, a.low, a.high) == pytest.approx((b.value, b.low, b.high), rel=1e-12)
    assert a.value == pytest.approx(rounds.clicks.sum(axis=1).mean())
    normal = est.estimate_interval(**arrays, method="normal")
    se = rounds.clicks.sum(axis=1).std(ddof=1) / np.sqrt(2000)
    assert normal.high - normal.value == pytest.approx(1.961 * se, rel=1e-3)
    assert a.low < a.value < a.high
    keyed = est.estimate_interval(
        **arrays,
        session_id=rows["slate_id"] + 100,
        step=np.zeros_like(rows["slate_id"]),
        seed=3,
        n_bootstrap=400,
    )
    assert keyed.value == a.value and (keyed.low, keyed.high) != (a.low, a.high)


def test_self_normalized_are_shift_equivariant_per_slot() -> None:
    arrays, _, _ = _enumerated_arrays("pbm", "pl")
    sub = {k: v for k, v in arrays.items() if k not in ("q_hat", "evaluation_policy_action_dist")}
    for name in ("snsips", "sniips", "snrips"):
        est = make_slate_estimator(name)
        base = est.estimate_policy_value(**sub)
        shifted = est.estimate_policy_value(**{**sub, "reward": sub["reward"] + 1.0})
        assert shifted == pytest.approx(base + K, rel=1e-12), name


def test_diagnostics_ess_and_max_weight() -> None:
    a = _hand()
    terms = slate_terms(**a)
    d = make_slate_estimator("sips").diagnostics(terms)
    assert d == {"ess": pytest.approx(2.5**2 / (0.25 + 4)), "max_weight": 2.0}


BAD = [
    (
        {"position": np.array([0, 0, 1, 0])},
        "every slate must hold positions 0..1 exactly once; slate_id 7 has positions \\[0, 0\\]",
    ),
    (
        {"slate_id": np.array([7, 3, 3, 3])},
        "every slate must hold positions 0..1 exactly once; slate_id 3 has positions \\[0, 1, 1\\]",
    ),
    ({"position": np.array([0, 1, -1, 0])}, "position must be >= 0; row 2 has -1"),
    ({"pscore": np.array([0.5, 0.5, 0.0, 0.0])}, r"pscore must be in \(0, 1\]; row 2 has 0.0"),
    (
        {"pscore": np.array([0.5, 0.4, 0.25, 0.25])},
        "must be equal in every slot of a slate; slate_id 7",
    ),
    (
        {"evaluation_policy_pscore_cascade": np.array([0.25, 1.5, 0.5, 1.0])},
        r"evaluation_policy_pscore_cascade must be in \[0, 1\]; row 1 has 1.5",
    ),
    ({"reward": np.array([1.0, np.nan, 1.0, 1.0])}, "reward must be finite; row 1 has nan"),
    ({"slate_id": np.array([7.0, 7.0, 3.0, 3.0])}, "slate_id must be integers"),
    (
        {"reward": np.array([1.0, 0.0, 1.0])},
        r"pscore must have the same length as reward \(3\); got 4|slate_id must have the same length as reward \(3\); got 4",
    ),
    ({"evaluation_policy_pscore": None}, "evaluation_policy_pscore is required with pscore"),
    ({"bogus": np.zeros(4)}, "unknown slate array 'bogus'"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_input_names_the_array_rule_and_row(change: dict, message: str) -> None:
    arrays = {**_hand(), **change}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(InputError, match=message):
        slate_terms(**arrays)  # every array given is checked
    if "cascade" not in str(change):  # SIPS checks what it reads (not the cascade pair)
        with pytest.raises(InputError, match=message):
            make_slate_estimator("sips").estimate_policy_value(**arrays)


def test_missing_propensities_and_unknown_name() -> None:
    a = {k: v for k, v in _hand().items() if "item_position" not in k}
    with pytest.raises(InputError, match="'iips' needs pscore_item_position"):
        make_slate_estimator("iips").estimate_policy_value(**a)
    with pytest.raises(InputError, match="needs q_hat"):
        make_slate_estimator("cascade-dr").estimate_policy_value(**a)
    with pytest.raises(InputError, match="slate estimator must be one of"):
        make_slate_estimator("nope")
    assert set(SLATE_ESTIMATORS) == {
        "sips",
        "iips",
        "rips",
        "snsips",
        "sniips",
        "snrips",
        "cascade-dr",
        "pi",
    }


def test_cascade_dr_model_input_errors() -> None:
    a = {**_hand(), "action": np.array([0, 1, 1, 0])}
    q = np.array([[0.5, 0.0], [0.0, 0.25], [1.0, np.inf], [0.5, 0.5]])
    dist = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    with pytest.raises(InputError, match="q_hat must be finite; row 2 has inf"):
        CascadeDR().estimate_policy_value(**a, q_hat=q, evaluation_policy_action_dist=dist)
    bad = dist.copy()
    bad[1] = [0.5, 0.25]
    with pytest.raises(InputError, match="evaluation_policy_action_dist .*row 1"):
        CascadeDR().estimate_policy_value(
            **a, q_hat=np.zeros((4, 2)), evaluation_policy_action_dist=bad
        )
    with pytest.raises(InputError, match=r"action must be in \[0, 2\); row 0 has 5"):
        CascadeDR().estimate_policy_value(
            **{**a, "action": np.array([5, 1, 1, 0])},
            q_hat=np.zeros((4, 2)),
            evaluation_policy_action_dist=dist,
        )


def _factored_logger_arrays(click: str) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Every (user, slate) pair under a logger that draws each slot independently (items
    may repeat: all M**K slates), with a Plackett-Luce target; rewards are the exact
    expected clicks. Returns the arrays, P_logger(user, slate) and the target's truth."""
    world = World(WorldConfig(n_items=M, n_users=U), seed=4)
    sw = SlateWorld(world, K, ClickModel(click, eta=1.0, stop=0.2))
    target = PlackettLuce(ScorePolicy(lambda o: 3.0 * o[:, :M], M, Head("softmax")), K, 0.5)
    logits = np.random.default_rng(1).normal(size=(U, K, M))
    mu = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)  # (U, K, M) per slot
    every = np.array(list(itertools.product(range(M), repeat=K)), dtype=np.int64)
    users = np.repeat(np.arange(U), len(every))
    slates = np.tile(every, (U, 1))
    n = len(slates)
    b_marg = mu[users[:, None], np.arange(K)[None, :], slates]  # (n, K)
    e_marg, exact = target.marginals(sw.users_obs(users))
    assert exact
    e_item = e_marg[np.arange(n)[:, None], np.arange(K)[None, :], slates]
    arrays = {
        "slate_id": np.repeat(np.arange(n), K),
        "position": np.tile(np.arange(K), n),
        "reward": sw.expected_clicks(users, slates).ravel(),
        "pscore_item_position": b_marg.ravel(),
        "evaluation_policy_pscore_item_position": e_item.ravel(),
    }
    return arrays, b_marg.prod(axis=1) / U, sw.true_value(target).value


@pytest.mark.parametrize("click", CLICK_MODELS)
def test_pi_unbiased_under_additive_clicks_with_a_factored_logger(click: str) -> None:
    """PI's expectation by enumeration equals the truth when the reward is additive over
    (slot, item) pairs (independent, position-based clicks) and the logger's slots are
    independent; cascade clicks are not additive and PI is biased there."""
    arrays, prob, truth = _factored_logger_arrays(click)
    assert prob.sum() == pytest.approx(1.0, rel=1e-12)
    expectation = float(prob @ make_slate_estimator("pi").estimate_round_rewards(**arrays))
    if click == "cascade":
        assert abs(expectation - truth) > 1e-2 * truth
    else:
        assert expectation == pytest.approx(truth, rel=1e-10)
    # IIPS (also item-position weights) is unbiased here too; PI differs from it per slate
    iips = make_slate_estimator("iips").estimate_round_rewards(**arrays)
    if click != "cascade":
        assert float(prob @ iips) == pytest.approx(truth, rel=1e-10)
    assert not np.allclose(iips, make_slate_estimator("pi").estimate_round_rewards(**arrays))


@pytest.mark.parametrize("target", ["pl", "top-k-eps"])
def test_pi_marginal_form_is_biased_when_the_logger_ranks_without_replacement(
    target: str,
) -> None:
    """With a uniform Plackett-Luce logger (no item twice) the slots are dependent, the
    product-case pseudo-inverse is not the logger's, and PI is biased even under
    independent clicks (the limitation its docstring states); the uniform logger's exact
    pseudo-inverse (``n_items``) is not."""
    arrays, prob, truth = _enumerated_arrays("independent", target)
    pi = float(prob @ make_slate_estimator("pi").estimate_round_rewards(**arrays))
    assert abs(pi - truth) > 1e-2 * truth
    exact = float(prob @ PI(n_items=M).estimate_round_rewards(**arrays))
    assert exact == pytest.approx(truth, rel=1e-10)


def test_pi_uniform_ranking_form_checks_its_logger() -> None:
    arrays, _, _ = _enumerated_arrays("pbm", "pl")
    bad = arrays["pscore_item_position"].copy()
    bad[4] = 0.25
    with pytest.raises(
        InputError, match=r"pscore_item_position must be 1/n_items = 0.1666.* row 4 has 0.25"
    ):
        PI(n_items=M).estimate_policy_value(**{**arrays, "pscore_item_position": bad})
    with pytest.raises(InputError, match="n_items must exceed the slate size \\(3\\).*got 3"):
        PI(n_items=3).estimate_policy_value(
            **{**arrays, "pscore_item_position": np.full_like(bad, 1 / 3)}
        )
    bad_in = arrays["pscore_item"].copy()
    bad_in[7] = 0.75
    with pytest.raises(
        InputError, match=r"pscore_item must be slate_size/n_items = 0.5 .* row 7 has 0.75"
    ):
        PI(n_items=M).estimate_policy_value(**{**arrays, "pscore_item": bad_in})
    no_item = {k: v for k, v in arrays.items() if k != "evaluation_policy_pscore_item"}
    with pytest.raises(
        InputError, match="evaluation_policy_pscore_item is required with pscore_item"
    ):
        PI(n_items=M).estimate_policy_value(**no_item)
    with pytest.raises(InputError, match="n_items"):
        PI(n_items=1)


def test_pi_hand_computed() -> None:
    a = _hand()
    # slate 7: w_item = (0.5, 2), g = 2.5 - 1 = 1.5, R = 1; slate 3: w = (1, 2), g = 2, R = 2
    assert make_slate_estimator("pi").estimate_policy_value(**a) == pytest.approx((1.5 + 4) / 2)
    rr = make_slate_estimator("pi").estimate_round_rewards(**a)
    np.testing.assert_allclose(rr, [4.0, 1.5])


@pytest.mark.parametrize("name", list(SLATE_ESTIMATORS))
def test_every_slate_estimator_declares_its_metadata(name: str) -> None:
    """Conformance over the registry (a new class cannot escape): a reference, non-empty
    assumptions, reads drawn from READS and consistent with what it computes, and
    diagnostics whose keys are the declared ones."""
    cls = SLATE_ESTIMATORS[name]
    info = cls.info()
    assert info.name == name and info.kind == "slate"
    assert info.reference.strip() and len(info.reference) > 20
    assert info.assumptions and all(a.strip() for a in info.assumptions)
    assert len(set(info.assumptions)) == len(info.assumptions)
    assert set(info.reads) <= set(READS) and WEIGHTS in info.reads and info.uses_weights
    assert (REWARD_MODEL in info.reads) == cls.needs_model
    assert info.diagnostics == SLATE_DIAGNOSTICS
    assert set(cls().diagnostics(slate_terms(**_hand()))) == set(info.diagnostics)


def test_metadata_states_where_each_estimator_is_right() -> None:
    """The assumptions separate the estimators as the enumeration tests measure: IIPS and PI
    need an item-position (additive) reward, RIPS and cascade-DR the cascade model, SIPS no
    click model at all; the self-normalized forms inherit their base's assumptions."""
    text = {n: " ".join(c.info().assumptions) for n, c in SLATE_ESTIMATORS.items()}
    assert "click model" not in text["sips"] and "cascade" not in text["sips"]
    assert "not cascade" in text["iips"] and "not cascade" in text["pi"]
    assert "cascade (reward-interaction) model" in text["rips"]
    assert text["cascade-dr"] == text["rips"]
    assert "independently" in text["pi"]
    for sn, base in (("snsips", "sips"), ("sniips", "iips"), ("snrips", "rips")):
        assert text[sn] == text[base]
        assert SLATE_ESTIMATORS[sn].reference.startswith(SLATE_ESTIMATORS[base].reference)


# -- the point-estimate fast path ----------------------------------------------------------
def _grouped(n: int = 40, k: int = 3, m: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` slates of ``k`` in the usual layout (rows grouped by increasing slate_id, slots
    in order; ids with gaps), every array the slate estimators read."""
    rng = np.random.default_rng(seed)
    b, e = rng.uniform(0.05, 1.0, (n, k)), rng.uniform(0.0, 1.0, (n, k))
    bc, ec = np.cumprod(b, axis=1), np.cumprod(e, axis=1)
    return {
        "slate_id": np.repeat(np.cumsum(rng.integers(1, 4, n)), k),
        "position": np.tile(np.arange(k), n),
        "reward": rng.random(n * k).round(1),
        "action": np.argsort(rng.random((n, m)), axis=1)[:, :k].ravel(),
        "pscore": np.repeat(bc[:, -1], k),
        "evaluation_policy_pscore": np.repeat(ec[:, -1], k),
        "pscore_item_position": b.ravel(),
        "evaluation_policy_pscore_item_position": e.ravel(),
        "pscore_cascade": bc.ravel(),
        "evaluation_policy_pscore_cascade": ec.ravel(),
        "q_hat": rng.random((n * k, m)),
        "evaluation_policy_action_dist": rng.dirichlet(np.ones(m), n * k),
    }


def _full(name: str, a: dict[str, np.ndarray]) -> float:
    """The estimate through the full validation (no fast path)."""
    est = make_slate_estimator(name)
    return est.parts(est.terms(keys=False, **a)).value()


@pytest.mark.parametrize("block", [None, 3, 9, 30])
def test_fast_path_equals_the_validated_path_in_any_blocks(block, monkeypatch) -> None:
    """The fast path runs on the usual layout, in one block or several (block sizes that
    split the input unevenly), and equals the fully validated estimate."""
    if block is not None:
        monkeypatch.setattr(slate_mod, "_ONE_BLOCK_ROWS", 0)
        monkeypatch.setattr(slate_mod, "_BLOCK_ROWS", block)
    a = _grouped()
    for name in SLATE_ESTIMATORS:
        est = make_slate_estimator(name)
        fast = slate_mod._fast_value(est, a)
        assert fast is not None or name == "pi"  # PI keeps its own terms (uniform-logger form)
        assert est.estimate_policy_value(**a) == pytest.approx(_full(name, a), rel=1e-13), name


def test_fast_path_declines_other_layouts_and_dtypes() -> None:
    a = _grouped()
    iips = make_slate_estimator("iips")
    swapped = {**a, "position": a["position"].copy()}
    swapped["position"][[0, 1]] = swapped["position"][[1, 0]]  # slot order inside a slate
    for case in (
        swapped,
        {**a, "slate_id": a["slate_id"][::-1].copy()},  # decreasing ids
        {**a, "reward": a["reward"].astype(np.float32)},
        {**a, "position": a["position"].astype(np.int32)},
    ):
        assert slate_mod._fast_value(iips, case) is None
    # declined input still gets its estimate (or its error) from the full path
    got = iips.estimate_policy_value(**swapped)
    assert got == pytest.approx(_full("iips", swapped), rel=1e-13)


FAST_BAD = [
    ("reward", 4, np.nan, "reward must be finite; row 4 has nan"),
    ("reward", 7, -np.inf, "reward must be finite; row 7 has -inf"),
    ("pscore_item_position", 5, 0.0, r"pscore_item_position must be in \(0, 1\]; row 5 has 0.0"),
    ("pscore_item_position", 6, 1.5, r"pscore_item_position must be in \(0, 1\]; row 6 has 1.5"),
    ("pscore_item_position", 2, -0.5, r"pscore_item_position must be in \(0, 1\]; row 2 has -0.5"),
    ("pscore_item_position", 3, np.nan, r"pscore_item_position must be in \(0, 1\]; row 3 has nan"),
    (
        "evaluation_policy_pscore_item_position",
        8,
        1.0 + 1e-9,
        r"evaluation_policy_pscore_item_position must be in \[0, 1\]; row 8",
    ),
    ("position", 4, 0, "every slate must hold positions 0..2 exactly once; slate_id"),
    ("position", 4, -1, "position must be >= 0; row 4 has -1"),
    ("slate_id", 4, 10**6, "every slate must hold positions 0..2 exactly once; slate_id"),
]


@pytest.mark.parametrize("block", [None, 6])
@pytest.mark.parametrize(("field", "row", "value", "message"), FAST_BAD)
def test_bad_value_on_the_usual_layout_gets_the_named_error(
    field, row, value, message, block, monkeypatch
) -> None:
    """A bad value in input the fast path would take (whatever block it falls in) still gets
    the error naming the array, the rule and the row: a zero logging propensity or a
    non-finite reward is caught by the non-finite estimate it causes."""
    if block is not None:
        monkeypatch.setattr(slate_mod, "_ONE_BLOCK_ROWS", 0)
        monkeypatch.setattr(slate_mod, "_BLOCK_ROWS", block)
    a = _grouped()
    a[field] = a[field].copy()
    a[field][row] = value
    for name in ("iips", "sniips", "pi"):
        with pytest.raises(InputError, match=message):
            make_slate_estimator(name).estimate_policy_value(**a)
    if field in ("reward", "position", "slate_id"):
        for name in ("sips", "rips", "snsips", "snrips", "cascade-dr"):
            with pytest.raises(InputError, match=message):
                make_slate_estimator(name).estimate_policy_value(**a)


def test_zero_logging_propensity_with_zero_target_and_zero_reward_is_caught() -> None:
    """``0 / 0`` weights times a zero reward: NaN, so still the named error (every
    estimator, including the joint and cascade weights)."""
    a = _grouped()
    for base, target in (
        ("pscore", "evaluation_policy_pscore"),
        ("pscore_cascade", "evaluation_policy_pscore_cascade"),
    ):
        b, e, r = a[base].copy(), a[target].copy(), a["reward"].copy()
        b[3:6], e[3:6], r[3:6] = 0.0, 0.0, 0.0  # the whole slate 1 (joint equal in a slate)
        bad = {**a, base: b, target: e, "reward": r}
        names = ("sips", "snsips") if base == "pscore" else ("rips", "snrips", "cascade-dr")
        for name in names:
            with pytest.raises(InputError, match=rf"{base} must be in \(0, 1\]; row 3 has 0.0"):
                make_slate_estimator(name).estimate_policy_value(**bad)


def test_fast_cascade_dr_model_errors_name_the_row() -> None:
    a = _grouped()
    q = a["q_hat"].copy()
    q[10, 2] = np.inf
    with pytest.raises(InputError, match="q_hat must be finite; row 10 has inf"):
        CascadeDR().estimate_policy_value(**{**a, "q_hat": q})
    d = a["evaluation_policy_action_dist"].copy()
    d[11] *= 0.5
    with pytest.raises(InputError, match="evaluation_policy_action_dist .*row 11"):
        CascadeDR().estimate_policy_value(**{**a, "evaluation_policy_action_dist": d})


def test_self_normalized_mass_is_checked_on_the_totals_not_per_block(monkeypatch) -> None:
    """A block with no target weight at a position is fine when the whole input has some;
    no weight at a position in the whole input is the named error."""
    monkeypatch.setattr(slate_mod, "_ONE_BLOCK_ROWS", 0)
    monkeypatch.setattr(slate_mod, "_BLOCK_ROWS", 9)
    a = _grouped()
    e = a["evaluation_policy_pscore_item_position"].reshape(-1, 3).copy()
    e[:20, 1] = 0.0  # slates 0..19 (blocks of 3 slates) carry no weight at position 1
    part = {**a, "evaluation_policy_pscore_item_position": e.ravel()}
    sn = make_slate_estimator("sniips")
    assert slate_mod._fast_value(sn, part) is not None
    assert sn.estimate_policy_value(**part) == pytest.approx(_full("sniips", part), rel=1e-13)
    e[:, 1] = 0.0
    with pytest.raises(InputError, match="sniips is undefined: every importance weight"):
        sn.estimate_policy_value(**{**a, "evaluation_policy_pscore_item_position": e.ravel()})


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_valid_input_whose_estimate_overflows_returns_it() -> None:
    """A subnormal logging propensity is valid; its weight overflows to inf, and the estimate
    is inf on both paths, without an error."""
    a = _grouped()
    b = a["pscore_item_position"].copy()
    b[0] = 1e-310
    bad = {**a, "pscore_item_position": b, "reward": np.ones_like(a["reward"])}
    assert make_slate_estimator("iips").estimate_policy_value(**bad) == np.inf
    assert _full("iips", bad) == np.inf


def test_cascade_dr_reads_q_hat_in_any_memory_order_and_obps_flat_layout() -> None:
    """The logged ``q_hat`` is gathered by flat indices from a C-ordered array, by 2-D
    indices otherwise, and read from OBP's flat ``(rows * items,)`` layout: one value."""
    a = _grouped()
    want = _full("cascade-dr", a)
    cdr = make_slate_estimator("cascade-dr")
    fortran = {**a, "q_hat": np.asfortranarray(a["q_hat"])}
    flat = {k: a[k].ravel() for k in ("q_hat", "evaluation_policy_action_dist")}
    for case in (a, fortran, {**a, **flat}):
        assert cdr.estimate_policy_value(**case) == pytest.approx(want, rel=1e-13)


def test_unequal_joint_propensities_on_the_usual_layout_are_named() -> None:
    a = _grouped()
    p = a["pscore"].copy()
    p[7] *= 0.5  # slate 2's second slot (rows 6..8)
    for name in ("sips", "snsips"):
        with pytest.raises(InputError, match="must be equal in every slot of a slate; slate_id"):
            make_slate_estimator(name).estimate_policy_value(**{**a, "pscore": p})
