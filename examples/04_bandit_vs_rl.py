"""Step 4 — bandit against RL agent: CTR, clicks per episode, and learning curves.

In sessions with boredom, a bandit that maximises the next click (here LinUCB, a
contextual bandit; and the context-free epsilon-greedy) and an RL agent that maximises
clicks over the whole session (SB3 PPO) learn online from the same world. For each, the
true value of the policy it would deploy is measured as it learns (``compare_online``,
what ``offrec train online`` runs), then its CTR (clicks per decision), clicks per
episode (session) and session length, with standard errors (``session_stats``).

    python examples/04_bandit_vs_rl.py [--small] [--out runs/examples/bandit_vs_rl]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from offrec.policies.online import session_stats
from offrec.report.learning_curves import save_online_runs
from offrec.rl.online_baseline import compare_online, online_references
from offrec.sim import World, WorldConfig


def main(
    small: bool = False, seed: int = 0, verbose: bool = True, out: str | Path | None = None
) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    torch.set_num_threads(1)
    n_steps = 6_000 if small else 100_000
    n_eval = 500 if small else 5_000
    world = World(WorldConfig(horizon=10), seed=0)
    runs = compare_online(
        world,
        ["epsilon-greedy", "linucb", "ppo"],
        n_steps,
        seed=seed,
        params={"linucb": {"alpha": 0.5}, "epsilon-greedy": {"epsilon": 0.05}},
        eval_every=n_steps // 5,
        eval_sessions=n_eval,
    )
    rows = []
    for name, run in runs.items():
        st = session_stats(world, run.policy, n_sessions=n_eval, seed=seed + 1)
        rows.append(
            {
                "learner": name,
                "interactions": int(run.curve.interactions[-1]),
                "CTR": st["ctr"],
                "±CTR": st["ctr_se"],
                "clicks/episode": st["clicks_per_session"],
                "±clicks": st["clicks_per_session_se"],
                "length": st["session_length"],
                "±length": st["session_length_se"],
                "seconds": run.curve.seconds,
            }
        )
    table = pd.DataFrame(rows)
    say(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    refs = online_references(world, n_sessions=n_eval)
    say("references: " + ", ".join(f"{k} {v:.3f}" for k, v in refs.items()))
    for name, run in runs.items():
        curve = ", ".join(
            f"{int(x / 1000)}k: {v:.2f}"
            for x, v in zip(run.curve.interactions, run.curve.value, strict=True)
        )
        say(f"learning curve, {name} (clicks per session): {curve}")
    if out is not None:
        save_online_runs(
            runs,
            out,
            references=refs,
            overwrite=True,
            title="bandits vs PPO: true clicks per session while learning",
        )
        say(f"plots and curves written to {out} (value_curves.png, learning_curves.png)")
    return {"runs": runs, "table": table, "references": refs}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("OFFREC_SMALL")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/examples/bandit_vs_rl")
    args = ap.parse_args()
    main(args.small, args.seed, out=args.out)
