"""Step 1 — the problem and the environment.

Recommendation as RL: a user arrives (an observation: their profile, plus what the
session has shown so far), the recommender picks one item (an action), the user clicks
or not (the reward), and either stays for another step or leaves (the episode ends).
offrec's environment is ``offrec/Recommender-v0``, a gymnasium env over the simulator's
batch core. This script builds it with ``gymnasium.make``, checks it with gymnasium's
``check_env``, and plays a few random steps.

    python examples/01_env.py            # default budget
    python examples/01_env.py --small    # what the test suite runs
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import offrec.sim  # noqa: F401  (registers offrec/Recommender-v0)
from offrec.policies import UniformPolicy


def main(small: bool = False, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    n_episodes = 200 if small else 2_000
    env = gym.make("offrec/Recommender-v0", horizon=10)  # sessions of up to 10 steps
    check_env(env.unwrapped)  # raises if the env breaks the gymnasium API
    world = env.unwrapped.world
    say(f"env: {env.spec.id}, {world.n_actions} items, observation {env.observation_space.shape}")
    for part, where in world.obs_slices().items():
        say(f"  obs[{where.start}:{where.stop}] = {part}")

    obs, info = env.reset(seed=seed)
    profile = {
        t: round(float(v), 2) for t, v in zip(world.topics, obs[: len(world.topics)], strict=True)
    }
    say(f"\nfirst user {info['user']}: observed profile over topics {profile}")
    done, t = False, 0
    while not done:
        a = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(a)
        say(
            f"  step {t}: show item {a} ({world.item_names()[a]}), click prob "
            f"{info['click_prob']:.3f}, clicked {bool(reward)}, user left {terminated}"
        )
        done, t = terminated or truncated, t + 1

    # random play: clicks per episode, next to the simulator's truth for a uniform policy
    env.action_space.seed(seed)
    totals, lengths = [], []
    for ep in range(n_episodes):
        env.reset(seed=seed + 1 + ep)
        done, total, length = False, 0.0, 0
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total, length, done = total + r, length + 1, term or trunc
        totals.append(total)
        lengths.append(length)
    clicks = np.asarray(totals)
    truth = world.true_value(UniformPolicy(world.n_actions), n_sessions=20_000, seed=seed)
    se = clicks.std(ddof=1) / np.sqrt(n_episodes)
    say(
        f"\nrandom play, {n_episodes} episodes: {clicks.mean():.3f} ± {se:.3f} clicks per "
        f"episode, {np.mean(lengths):.2f} steps per episode"
    )
    say(f"simulator's truth for a uniform policy: {truth.value:.3f} ± {truth.stderr:.3f}")
    return {
        "clicks": clicks,
        "lengths": np.asarray(lengths),
        "truth": truth,
        "obs_shape": env.observation_space.shape,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    main(args.small, args.seed)
