"""``offrec recommend``: the demo, top-k items for a user profile."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offrec.cli._common import WORLD_OVERRIDES, add_global_options, world_from_args, world_options


def add_parser(sub: Any) -> None:
    rc = sub.add_parser(
        "recommend",
        help="the demo: top-k items for a user profile (or a context) from a trained model",
        description="Top-k items, in the source's item ids. A model trained on a simulated log takes a "
        "--profile; one trained on an imported log takes a --context row (its context columns).",
    )
    rc.add_argument("model", type=Path, help="model folder")
    who = rc.add_mutually_exclusive_group(required=True)
    who.add_argument("--profile", help='topic preferences, e.g. "sports=0.9,news=0.1"')
    who.add_argument(
        "--context", help="a context row, comma-separated, e.g. --context=-0.5,1.2 (imported logs)"
    )
    rc.add_argument("--k", type=int, default=5, help="items to show")
    rc.add_argument("--steps", type=int, default=3, help="session mode: simulated steps to show")
    rc.add_argument(
        "--slate-epsilon",
        type=float,
        default=None,
        metavar="EPS",
        help="serve the list as a slate ranker (top-k, a uniform list with "
        "probability EPS) and show each slot's propensities",
    )
    world_options(rc)
    add_global_options(rc)
    rc.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from offrec.models import load_model
    from offrec.recommend import parse_context, read_world, recommend, recommend_for_context

    if args.context is not None:
        x = parse_context(args.context)
        policy = load_model(args.model, obs_dim=x.size)
        table = recommend_for_context(policy, x, k=args.k, slate_epsilon=args.slate_epsilon)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return 0
    custom = args.world or any(getattr(args, k) is not None for k in WORLD_OVERRIDES)
    world = world_from_args(args) if custom else read_world(args.model)
    policy = load_model(args.model, n_actions=world.n_actions, context_dim=world.context_dim)
    tables = recommend(
        policy, world, args.profile, k=args.k, steps=args.steps, slate_epsilon=args.slate_epsilon
    )
    for t, table in enumerate(tables):
        title = (
            "start of the session"
            if t == 0
            else f"after {t} step(s) showing the top item (no click)"
        )
        print(f"\n{title}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
