"""The lean Q-function (offrec.rl.qfunction) learns exactly what d3rlpy's default does."""

import copy

import numpy as np
import pytest
import torch

from offrec.rl import RLConfig, VectorizedReplayBuffer, to_transitions
from offrec.rl.config import build_algo, matmul_precision, seeded

from .test_train import two_step_log


def _trained(lean: bool, algo: str, batches: list) -> tuple[list[dict], dict]:
    cfg = RLConfig(
        algo=algo,
        hidden_units=(16, 16),
        n_critics=2 if algo == "dqn" else 1,
        target_update_interval=2,
        lean_q_function=lean,
        seed=3,
    )
    with seeded(cfg.seed), matmul_precision("highest"):
        a = build_algo(cfg)
        a.create_impl((2,), 4)
        losses = [a.update(b) for b in batches]
    weights = {k: v.detach().clone() for k, v in a.impl.q_function.state_dict().items()}
    return losses, weights


@pytest.mark.parametrize("algo", ["dqn", "double-dqn", "cql", "bcq"])
def test_lean_q_function_takes_the_same_steps_as_d3rlpys(algo):
    tr = to_transitions(two_step_log(n_sessions=200))
    buf = VectorizedReplayBuffer(tr, seed=0)
    batches = [buf.sample_transition_batch(64) for _ in range(6)]
    lean_losses, lean_w = _trained(True, algo, batches)
    base_losses, base_w = _trained(False, algo, batches)
    assert lean_losses[0].keys() == base_losses[0].keys()
    for got, want in zip(lean_losses, base_losses, strict=True):
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7), name
    assert lean_w.keys() == base_w.keys()  # same parameter names: saved models load either way
    for name, w in base_w.items():
        torch.testing.assert_close(lean_w[name], w, rtol=1e-5, atol=1e-6, msg=name)


def test_repeated_forward_is_shared_only_while_nothing_changed():
    cfg = RLConfig(algo="cql", hidden_units=(8,))
    algo = build_algo(cfg)
    algo.create_impl((3,), 5)
    q = algo.impl.q_function[0]
    q.train()  # as during d3rlpy's updates
    x = torch.randn(4, 3)
    first = q(x)
    assert q(x) is first  # the second call on the same tensor shares the first's graph
    assert q(x.clone()) is not first  # another tensor (equal values): computed afresh
    again = q(x)
    with torch.no_grad():
        next(q.parameters()).add_(1.0)  # an optimiser step changes the weights in place
    after_step = q(x)
    assert after_step is not again
    assert not torch.equal(after_step.q_value, again.q_value)
    with torch.no_grad():
        x.add_(1.0)  # the input changed in place
    fresh = q(x)
    assert fresh is not after_step
    with torch.no_grad():  # grad mode is part of the key: no graph-less output for a loss
        target = q(x)
        assert target is not fresh and q(x) is target  # a target network's second look
        target.q_value.mul_(2.0)  # somebody wrote into the output
        assert q(x) is not target
        torch.testing.assert_close(q(x).q_value, fresh.q_value.detach())
    with torch.inference_mode():  # no version counters: never shared
        assert q(x) is not q(x)
    q.eval()  # predictions (and QPolicy) run in eval mode: never shared
    assert q(x) is not q(x)
    q.train()
    assert torch.equal(copy.deepcopy(q)(x).q_value, q(x).q_value)  # copies drop the cache


def test_lean_q_function_config_field():
    assert RLConfig().lean_q_function is True
    cfg = RLConfig(lean_q_function=False)
    assert RLConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="RLConfig.lean_q_function must be true or false; got 1"):
        RLConfig(lean_q_function=1)  # type: ignore[arg-type]
    old = RLConfig().to_dict()
    del old["lean_q_function"]  # a config saved before the field existed still loads
    assert RLConfig.from_dict(old).lean_q_function is True


def test_same_seed_same_weights_with_the_lean_q_function():
    log = two_step_log(n_sessions=100)
    from offrec.rl import train_rl

    cfg = RLConfig(algo="cql", n_steps=30, batch_size=32, hidden_units=(8,), log_every=10)
    a, b = train_rl(log, cfg), train_rl(log, cfg)
    obs = np.array([[0, 1], [1, 1]], np.float32)
    np.testing.assert_array_equal(a.policy.q_values(obs), b.policy.q_values(obs))
    np.testing.assert_array_equal(a.curve.losses["loss"], b.curve.losses["loss"])
