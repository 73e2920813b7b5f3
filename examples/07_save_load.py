"""Step 7 — save a trained model and load it back.

A bandit learner (LinUCB) is saved as an offrec model folder (``save_model`` /
``load_model``: JSON + checksummed arrays, no pickle); an SB3 agent with SB3's own zip
(``SB3Policy.save`` / ``load_sb3_policy``). Loaded models act exactly as the originals.
(Offline RL policies from d3rlpy save the same way as bandits: ``save_model``.)

    python examples/07_save_load.py [--small] [--out runs/examples/models]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrec.models import load_model, save_model
from offrec.policies import LinUCB, run_online
from offrec.sim import World, WorldConfig


def main(
    small: bool = False, seed: int = 0, verbose: bool = True, out: str | Path | None = None
) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="offrec-models-"))
    world = World(WorldConfig(horizon=10), seed=0)
    obs = world.observe(world.new_sessions(256, np.random.default_rng(seed)))

    linucb = LinUCB(world.n_actions, world.context_dim, alpha=0.5)
    run_online(world, linucb, 5_000 if small else 50_000, batch_size=500, seed=seed)
    greedy = linucb.exploit()
    path = save_model(greedy, folder / "linucb", overwrite=True)
    loaded = load_model(path, n_actions=world.n_actions, obs_dim=world.context_dim)
    same_bandit = bool(np.array_equal(loaded.action_dist(obs), greedy.action_dist(obs)))
    say(
        f"LinUCB saved to {path} ({sorted(p.name for p in path.iterdir())}); "
        f"loaded copy acts identically on 256 observations: {same_bandit}"
    )

    result: dict[str, Any] = {"same_bandit": same_bandit, "folder": folder}
    try:
        from offrec.rl.online_baseline import OnlineConfig, load_sb3_policy, train_online
    except ImportError:  # pragma: no cover - torch missing
        return result
    try:
        cfg = OnlineConfig(
            "dqn",
            total_timesteps=1_500 if small else 10_000,
            hidden_units=(64,),
            eval_every=10**9,
            eval_sessions=200,
            seed=seed,
        )
        agent = train_online(world, cfg).policy
    except ImportError as exc:  # SB3 not installed: the bandit part still ran
        say(f"skipping the SB3 part: {exc}")
        return result
    zip_path = agent.save(folder / "dqn.zip")
    again = load_sb3_policy(zip_path, world.n_actions)
    same_sb3 = bool(np.array_equal(again.action_dist(obs), agent.action_dist(obs)))
    say(f"SB3 DQN saved to {zip_path}; loaded copy acts identically: {same_sb3}")
    result["same_sb3"] = same_sb3
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/examples/models")
    args = ap.parse_args()
    main(args.small, args.seed, out=args.out)
