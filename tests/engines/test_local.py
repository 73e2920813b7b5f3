"""Training from a log of any size: streamed ridge statistics equal the in-memory fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offrec.engines.local import LocalEngine
from offrec.logs import collect, read_logs
from offrec.pipeline_config import PolicySpec
from offrec.policies import registry
from offrec.policies.loggers import logging_policy
from offrec.policies.offline import fit_logged
from offrec.sim import World, WorldConfig
from offrec.training import train_policy


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    world = World(WorldConfig(horizon=1, n_items=15, n_users=1000), seed=0)
    out = tmp_path_factory.mktemp("train") / "log"
    collect(
        world,
        logging_policy(world, "softmax"),
        out=out,
        n_decisions=12_000,
        seed=1,
        chunk_rows=2048,
        rows_per_file=5000,
    )
    return out, world


@pytest.mark.parametrize("name", ["linucb", "lints"])
def test_streamed_ridge_equals_the_in_memory_fit(log: tuple[Path, World], name: str) -> None:
    path, world = log
    data = read_logs(path)
    spec = PolicySpec(name=name, learner=name)
    streamed, _ = train_policy(spec, path, world, 0, batch_size=777)
    direct = fit_logged(registry.make_learner(name, data.n_actions, data.context_dim), data)
    for key, value in direct._state().items():
        np.testing.assert_allclose(streamed._state()[key], value, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(
        streamed.action_dist(data.context[:50]), direct.exploit().action_dist(data.context[:50])
    )


def test_the_fitting_sample_is_bounded_and_independent_of_batching(log: tuple[Path, World]) -> None:
    from offrec.engines import LocalEngine
    from offrec.engines.sample import draw_sample
    from offrec.logs.scan import open_log

    source = open_log(log[0])
    a = draw_sample(source, LocalEngine(batch_size=12_000), 3000, seed=5).data
    b = draw_sample(source, LocalEngine(batch_size=777), 3000, seed=5).data
    assert a is not None and b is not None and a.n_rows == b.n_rows == 3000
    np.testing.assert_array_equal(a.session_id, b.session_id)
    c = draw_sample(source, LocalEngine(batch_size=777), 3000, seed=6).data
    assert c is not None and not np.array_equal(a.session_id, c.session_id)
    whole = draw_sample(source, LocalEngine(), 3000, seed=5, sessions=True).data
    assert whole is not None  # whole sessions: here one row each (bandit log)
    assert abs(whole.n_rows - 3750) < 5 * np.sqrt(3750)  # rate 1.25 * 3000 / 12000


def test_sampled_learners_train(log: tuple[Path, World]) -> None:
    """A learner that reads a bounded sample is trained on exactly that sample (whatever
    the batch size) and learns: it beats the uniform policy in the world's exact truth."""
    from offrec.engines.sample import draw_sample
    from offrec.logs.scan import open_log
    from offrec.policies import UniformPolicy

    path, world = log
    spec = PolicySpec(name="rm", learner="reward-model")
    policy, _ = train_policy(spec, path, world, 0, fit_rows=3000)
    again, _ = train_policy(spec, path, world, 0, fit_rows=3000, batch_size=1000)
    sample = draw_sample(open_log(path), LocalEngine(), 3000, 0).data
    assert sample is not None and sample.n_rows < 12_000
    direct, _ = train_policy(spec, sample, world, 0, fit_rows=3000)
    x = read_logs(path).context[:500]
    dist = policy.action_dist(x)
    assert dist.shape == (500, 15) and np.allclose(dist.sum(axis=1), 1)
    np.testing.assert_array_equal(again.action_dist(x), dist)
    np.testing.assert_array_equal(direct.action_dist(x), dist)
    learned = world.true_value(policy)
    uniform = world.true_value(UniformPolicy(15))
    assert learned.exact and uniform.exact
    assert learned.value > 1.5 * uniform.value
