"""The shared-parameter learner ``hybrid`` through the registry, persistence and the CLI."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import Head
from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
from offrec.policies.loggers import logging_policy
from offrec.policies.persist import load_policy, save_policy
from offrec.policies.registry import make_learner
from offrec.sim import World, WorldConfig
from offrec.testing import check_policy


@pytest.fixture(scope="module")
def small() -> tuple[World, object]:
    w = World(WorldConfig(n_items=120, n_users=300), seed=3)
    traj = w.run_sessions(logging_policy(w, "uniform"), 3000, np.random.default_rng(1))
    return w, traj


def _same(a: object, b: object, obs: np.ndarray) -> None:
    da, db = a.action_dist_compact(obs), b.action_dist_compact(obs)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(da.items, db.items)
    np.testing.assert_array_equal(da.probs, db.probs)
    assert da.floor == db.floor and da.n_actions == db.n_actions
    np.testing.assert_array_equal(a.action_dist(obs), b.action_dist(obs))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "head, exploit",
    [
        ("greedy", None),
        ("ucb", None),
        ("ts", None),
        ("ucb", Head("epsilon_greedy", epsilon=0.3)),
        ("ts", Head("softmax", temperature=0.05)),
    ],
)
def test_save_load_round_trip_gives_equal_distributions(tmp_path, small, head, exploit) -> None:
    w, traj = small
    learner = make_learner(
        "hybrid",
        w.n_actions,
        w.context_dim,
        world=w,
        head=head,
        candidates=15,
        floor=0.02,
        n_draws=8,
        seed=5,
    )
    np.testing.assert_array_equal(learner.items[:, :-1], catalog_features(w))
    learner.partial_fit(traj.obs[:1500], traj.action[:1500], traj.reward[:1500])
    learner.partial_fit(traj.obs[1500:], traj.action[1500:], traj.reward[1500:])
    policy = learner if exploit is None else learner.exploit(exploit)
    loaded = load_policy(
        save_policy(policy, tmp_path / "m"), n_actions=w.n_actions, context_dim=w.context_dim
    )
    assert type(loaded) is HybridLinear and loaded.spec() == policy.spec()
    assert loaded.n_updates == 2  # TS draws are seeded by (seed, n_updates)
    obs = np.asarray(traj.obs[:200])
    _same(policy, loaded, obs)
    check_policy(loaded, obs[:64])
    # and it keeps learning from where it was: the same update on both, same result
    policy.partial_fit(traj.obs[:100], traj.action[:100], traj.reward[:100])
    loaded.partial_fit(traj.obs[:100], traj.action[:100], traj.reward[:100])
    _same(policy, loaded, obs)


def test_exploit_heads_over_candidates(small) -> None:
    w, traj = small
    learner = make_learner("hybrid", w.n_actions, w.context_dim, world=w, head="ts", candidates=10)
    learner.partial_fit(traj.obs, traj.action, traj.reward)
    obs = np.asarray(traj.obs[:50])
    d = learner.exploit(Head("softmax", temperature=0.1)).action_dist_compact(obs)
    q = learner.predict_pairs(obs, d.items) / 0.1
    ref = np.exp(q - q.max(axis=1, keepdims=True))
    np.testing.assert_allclose(d.probs, ref / ref.sum(axis=1, keepdims=True), rtol=1e-12)
    g = learner.exploit(Head("epsilon_greedy", epsilon=0.4)).action_dist_compact(obs)
    best = np.argmax(learner.predict_pairs(obs, g.items), axis=1)
    np.testing.assert_allclose(g.probs[np.arange(50), best], 0.6 + 0.4 / 10)
    # the copy shares no learning state with the learner
    e = learner.exploit()
    learner.partial_fit(traj.obs[:10], traj.action[:10], traj.reward[:10])
    assert not np.array_equal(e.A, learner.A)


def test_registry_sizes_and_refusals(small) -> None:
    w, _ = small
    onehot = make_learner("hybrid", 6, 3)  # no item table: one-hot items, a model per item
    np.testing.assert_array_equal(onehot.items[:, :-1], np.eye(6))
    assert onehot.candidates == 6
    with pytest.raises(
        InputError,
        match=r"item_features is required by the hybrid learner at "
        r"n_actions=100000 \(one-hot items would need 1100011 parameters",
    ):
        make_learner("hybrid", 100_000, 10)
    with pytest.raises(
        InputError,
        match=r"the world has 120 items; the hybrid learner was asked "
        r"for n_actions=50",
    ):
        make_learner("hybrid", 50, w.context_dim, world=w)
    with pytest.raises(
        InputError,
        match=r"item_features must have one row per item \(7\); "
        r"got shape \(6, 2\)",
    ):
        make_learner("hybrid", 7, 3, item_features=np.zeros((6, 2)))


def _rewrite_arrays(folder, arrays) -> None:
    cfg = json.loads((folder / "policy.json").read_text())
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (folder / "arrays.npz").write_bytes(buf.getvalue())
    cfg["arrays"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (folder / "policy.json").write_text(json.dumps(cfg))


def test_tampered_folders_are_clear_errors(tmp_path, small) -> None:
    w, traj = small
    learner = make_learner("hybrid", w.n_actions, w.context_dim, world=w, candidates=5)
    learner.partial_fit(traj.obs, traj.action, traj.reward)
    folder = save_policy(learner, tmp_path / "m")
    k = catalog_features(w).shape[1]
    # the item table changed behind the checksum's back
    blob = (folder / "arrays.npz").read_bytes()
    (folder / "arrays.npz").write_bytes(blob[:-10] + b"0" * 10)
    with pytest.raises(InputError, match=r"arrays.npz does not match the checksum in policy.json"):
        load_policy(folder)
    state = learner.get_state()
    for bad, message in [
        (
            {**state, "item_features": state["item_features"][:7]},
            rf"HybridLinear state array 'item_features' must have shape \(120, {k}\); got \(7, {k}\)",
        ),
        (
            {**state, "item_features": np.full_like(state["item_features"], np.nan)},
            r"hybrid state array 'item_features' must be finite",
        ),
        (
            {k_: v for k_, v in state.items() if k_ != "A"},
            r"HybridLinear state is missing arrays \['A'\]",
        ),
    ]:
        folder = save_policy(learner, tmp_path / "m", overwrite=True)
        _rewrite_arrays(folder, bad)
        with pytest.raises(InputError, match=message):
            load_policy(folder)
    folder = save_policy(learner, tmp_path / "m", overwrite=True)
    with pytest.raises(
        InputError,
        match=r"saved for n_actions=120 items; cannot load it for "
        r"n_actions=121",
    ):
        load_policy(folder, n_actions=121)


def test_cli_train_evaluate_recommend_on_a_5000_item_log(tmp_path, capsys) -> None:
    from offrec.cli import main
    from offrec.logs import read_logs
    from offrec.policies.logged import fit_logged

    log, model = tmp_path / "log", tmp_path / "m"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(log),
                "--n-items",
                "5000",
                "--n-users",
                "2000",
                "--candidates",
                "50",
                "--floor",
                "0.05",
                "--n-decisions",
                "20000",
                "--seed",
                "1",
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "bandit",
                str(log),
                "--learner",
                "hybrid",
                "--param",
                "candidates=20",
                "--out",
                str(model),
                "-q",
            ]
        )
        == 0
    )
    data = read_logs(log)
    cfg = WorldConfig.from_dict(data.metadata["world_config"])
    world = World(cfg, seed=data.metadata.get("world_seed") or 0)
    # the CLI's model is the learner fitted in Python on the same rows with the world's items
    ref = make_learner("hybrid", world.n_actions, world.context_dim, world=world, candidates=20)
    fit_logged(ref, data)
    saved = load_policy(model)
    obs = np.asarray(data.context[:300])
    _same(ref.exploit(), saved, obs)
    # it learned: exact truth, far above the logger that made the log
    logger = logging_policy(world, "softmax", candidates=50, floor=0.05)
    v_model, v_logger = world.true_value(saved).value, world.true_value(logger).value
    assert v_model > 1.5 * v_logger, (v_model, v_logger)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(log),
                "--policy",
                str(model),
                "--estimators",
                "ips,snips,mips,snmips",
                "--n-bootstrap",
                "200",
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = {
        line.split()[1]: float(line.split()[2])
        for line in out.splitlines()
        if line.split()[:1] == ["m"]
    }
    assert sorted(rows) == ["ips", "mips", "snips", "snmips"], out
    assert all(0.0 <= v <= 1.0 for v in rows.values()), rows
    assert main(["recommend", str(model), "--profile", "sports=0.9,news=0.1", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("sports-") >= 1, out


def test_evaluate_takes_a_sparse_target_at_a_million_items(tmp_path) -> None:
    """The memory guard counts no (batch x n_items) table for a sparse-form target, and no
    (fit_rows x n_items) one when no dense reward model is fitted: the same sizes with a
    dense target, or with DR's dense reward model, are refused up front."""
    from offrec.cli import main
    from offrec.logs import read_logs
    from offrec.ope.evaluate import check_evaluate_memory, evaluate
    from offrec.policies.logged import fit_logged

    log = tmp_path / "log"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(log),
                "--n-items",
                "1000000",
                "--n-users",
                "50",
                "--candidates",
                "200",
                "--floor",
                "0.05",
                "--n-decisions",
                "300",
                "-q",
            ]
        )
        == 0
    )
    data = read_logs(log)
    world = World(
        WorldConfig.from_dict(data.metadata["world_config"]),
        seed=data.metadata.get("world_seed") or 0,
    )
    learner = make_learner("hybrid", world.n_actions, world.context_dim, world=world, floor=0.05)
    target = fit_logged(learner, data)  # the floor: weight on every logged item
    res = evaluate(
        log, {"hybrid": target.exploit()}, estimators=["ips", "snips", "mips"], n_bootstrap=50
    )
    assert {e.estimator for e in res.estimates} == {"ips", "snips", "mips"}
    with pytest.raises(
        InputError, match=r"would need about .*: lower --batch-size \(the largest part\)"
    ):
        check_evaluate_memory(world.n_actions, 65_536, 2, 50, 300)  # a dense target
    with pytest.raises(InputError, match=r"lower --fit-rows \(the largest part\)"):
        check_evaluate_memory(world.n_actions, 65_536, 2, 50, 200_000, dense_rows=False)
    check_evaluate_memory(
        world.n_actions, 65_536, 2, 50, 200_000, dense_rows=False, dense_model=False
    )
