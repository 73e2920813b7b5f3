"""Step 3 — deep RL agents (stable-baselines3 DQN and PPO) in the environment.

The environment from step 1 is a plain gymnasium env, so SB3 trains on it as on any
other. The agents see the observation (profile, fatigue per topic, step, last click)
and are rewarded per click; an episode is one user session. After training, the
agent becomes an offrec policy (``SB3Policy``) and the simulator gives its *true*
clicks per session — no noisy evaluation episodes needed.

Needs the optional extra: ``pip install 'offrec[sb3]'``.

    python examples/03_sb3_agents.py [--small]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import gymnasium as gym
import torch

from offrec.policies import UniformPolicy
from offrec.rl.online_baseline import SB3Policy, require_sb3
from offrec.sim import MyopicOracle  # importing offrec.sim registers offrec/Recommender-v0


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)  # one thread: faster than two on a shared 2-core machine
    sb3 = require_sb3()  # a one-line ImportError saying how to install it, if missing
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger

    budget = {"ppo": 2_048, "dqn": 2_000} if small else {"ppo": 60_000, "dqn": 20_000}
    n_eval = 1_000 if small else 5_000

    def make_env() -> gym.Env:  # the env of step 1: sessions of up to 10 steps
        return gym.make("offrec/Recommender-v0", horizon=10, world_seed=0)

    world = make_env().unwrapped.world  # the same world, for the truth
    results: dict[str, Any] = {}
    for algo, steps in budget.items():
        tic = time.perf_counter()
        if algo == "ppo":  # 8 sessions in parallel feed PPO's rollouts
            env = make_vec_env(make_env, n_envs=8, seed=seed)
            model = sb3.PPO(
                "MlpPolicy",
                env,
                n_steps=256,
                batch_size=256,
                gamma=0.9,
                seed=seed,
                device="cpu",
                verbose=0,
            )
        else:
            env = make_vec_env(make_env, n_envs=1, seed=seed)
            model = sb3.DQN(
                "MlpPolicy",
                env,
                learning_starts=1_000,
                batch_size=256,
                gamma=0.9,
                target_update_interval=1_000,
                exploration_fraction=0.3,
                seed=seed,
                device="cpu",
                verbose=0,
            )
        model.set_logger(Logger(folder=None, output_formats=[]))  # no SB3-* temp folders
        model.learn(total_timesteps=steps)
        seconds = time.perf_counter() - tic
        policy = SB3Policy(model, world.n_actions)  # PPO: its stochastic policy; DQN: greedy
        truth = world.true_value(policy, n_sessions=n_eval, seed=seed)
        results[algo] = {
            "policy": policy,
            "truth": truth,
            "steps": model.num_timesteps,
            "seconds": seconds,
        }
        say(
            f"{algo.upper()}: {model.num_timesteps:,} env steps in {seconds:.0f}s -> true "
            f"{truth.value:.3f} ± {truth.stderr:.3f} clicks per session"
        )
    uniform = world.true_value(UniformPolicy(world.n_actions), n_sessions=n_eval, seed=seed)
    myopic = world.true_value(MyopicOracle(world), n_sessions=n_eval, seed=seed)
    say(
        f"for scale: random {uniform.value:.3f}, myopic oracle (knows the true click "
        f"probabilities) {myopic.value:.3f} clicks per session"
    )
    results["uniform"], results["myopic"] = uniform, myopic
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.small, args.seed)
