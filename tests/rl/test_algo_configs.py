"""Per-algorithm RL configs (d3rlpy style) and the runtime knobs kept apart; the flat
RLConfig (what saved Q-policies and older pipeline files hold) still reads."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.rl.algos import ALGOS
from offrec.rl.config import (
    ALGO_CONFIGS,
    BCQConfig,
    CQLConfig,
    DQNConfig,
    RLConfig,
    RuntimeConfig,
)
from offrec.training import check_params, learner_params


def test_every_registered_algorithm_has_its_config():
    assert sorted(ALGO_CONFIGS) == sorted(ALGOS.names)
    for name, cls in ALGO_CONFIGS.items():
        assert cls().to_rl_config().algo == name


def test_split_and_join_round_trip():
    cql = CQLConfig(n_steps=500, alpha=0.2, hidden_units=(16, 8))
    runtime = RuntimeConfig(seed=3, n_threads=1, log_every=50)
    flat = cql.to_rl_config(runtime)
    assert (flat.algo, flat.n_steps, flat.alpha, flat.seed, flat.log_every) == (
        "cql",
        500,
        0.2,
        3,
        50,
    )
    assert flat.algo_config == cql and flat.runtime == runtime
    assert RLConfig.from_dict(flat.to_dict()) == flat  # the saved form is unchanged
    assert isinstance(RLConfig(algo="bcq", bcq_threshold=0.5).algo_config, BCQConfig)


def test_each_algorithm_takes_only_its_own_knobs():
    dqn, cql, bcq = (learner_params(a) for a in ("dqn", "cql", "bcq"))
    assert "alpha" in cql and "alpha" not in dqn and "alpha" not in bcq
    assert "bcq_threshold" in bcq and "bcq_threshold" not in cql
    runtime = [f.name for f in dataclasses.fields(RuntimeConfig)]
    for params in (dqn, cql, bcq):
        assert params[-len(runtime) :] == runtime
    flat = {f.name for f in dataclasses.fields(RLConfig)} - {"algo"}
    assert set(dqn) | {"alpha", "bcq_threshold"} == flat
    with pytest.raises(TypeError):
        DQNConfig(alpha=0.1)  # type: ignore[call-arg]


def test_old_keys_of_another_algorithm_are_read_with_a_warning_typos_fail():
    with pytest.warns(DeprecationWarning, match=r"\['alpha'\] do not apply to 'dqn'"):
        check_params("dqn", {"alpha": 0.1, "n_steps": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_params("cql", {"alpha": 0.1, "seed": 2})
    with pytest.raises(InputError, match=r"unknown parameter\(s\) \['alpah'\] for learner 'cql'"):
        check_params("cql", {"alpah": 0.1})


def test_values_are_checked_by_the_one_set_of_rules():
    with pytest.raises(InputError, match=r"RLConfig.n_steps"):
        DQNConfig(n_steps=0)
    with pytest.raises(InputError, match=r"RLConfig.bcq_threshold"):
        BCQConfig(bcq_threshold=0.0)
    with pytest.raises(InputError, match=r"RLConfig.sampler must be one of"):
        CQLConfig().to_rl_config(RuntimeConfig(sampler="fast"))


def test_train_rl_with_a_per_algorithm_config_equals_the_flat_one():
    from offrec.rl.dataset import Transitions
    from offrec.rl.q_learning import train_rl

    rng = np.random.default_rng(0)
    n, d, k = 200, 3, 4
    starts = np.arange(0, n + 1, 4)
    tr = Transitions(
        observations=rng.random((n, d)).astype(np.float32),
        actions=rng.integers(0, k, n),
        rewards=rng.random(n).astype(np.float32),
        terminals=np.isin(np.arange(n), starts[1:] - 1).astype(np.float32),
        episode_starts=starts,
        episode_terminated=np.ones(starts.size - 1, bool),
        episode_truncated=np.zeros(starts.size - 1, bool),
        n_actions=k,
    )
    dqn, runtime = DQNConfig(n_steps=30, batch_size=16, hidden_units=(8,)), RuntimeConfig(seed=5)
    a = train_rl(tr, dqn, runtime=runtime).policy
    b = train_rl(tr, dqn.to_rl_config(runtime)).policy
    x = rng.random((10, d)).astype(np.float32)
    np.testing.assert_array_equal(a.q_values(x), b.q_values(x))
    c = train_rl(tr, dqn, runtime=RuntimeConfig(seed=6)).policy
    assert not np.array_equal(a.q_values(x), c.q_values(x))  # the seed reaches training
    with pytest.raises(InputError, match="runtime goes with a per-algorithm config"):
        train_rl(tr, dqn.to_rl_config(), runtime=runtime)
