"""``offrec simulate``: log a policy acting in the simulated world to Parquet."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from offrec.cli._common import (
    LazyChoices,
    add_global_options,
    progress,
    world_from_args,
    world_options,
)
from offrec.core.errors import InputError


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "simulate",
        help="log a policy acting in the simulated world to Parquet",
        description="Run a logging policy in the simulated world and write its log "
        "(one row per decision, with propensities) to a Parquet dataset directory.",
    )
    s.add_argument("--out", required=True, type=Path, help="output dataset directory")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--n-decisions", type=int, help="number of logged rows")
    size.add_argument("--n-sessions", type=int, help="number of sessions (users)")
    s.add_argument(
        "--logger",
        choices=LazyChoices("offrec.policies.loggers", "LOGGER_KINDS"),
        metavar="KIND",
        help="logging policy (%(choices)s; softmax when unset): softmax and epsilon-greedy act "
        "on the production model",
    )
    # the old name of --logger (``evaluate --policy`` names a model folder): still read
    s.add_argument(
        "--policy",
        dest="policy_deprecated",
        choices=LazyChoices("offrec.policies.loggers", "LOGGER_KINDS"),
        metavar="KIND",
        help=argparse.SUPPRESS,
    )
    s.add_argument(
        "--beta", type=float, help="softmax inverse temperature (softmax only; 1.0 when unset)"
    )
    s.add_argument(
        "--epsilon", type=float, help="exploration rate (epsilon_greedy only; 0.1 when unset)"
    )
    s.add_argument(
        "--noise",
        type=float,
        help="production model error, 0 = best possible from observations (not uniform; 0.5 when unset)",
    )
    s.add_argument(
        "--model-seed",
        type=int,
        help="seed of the production model's errors (not uniform; 0 when unset)",
    )
    s.add_argument(
        "--support", help="only these items may be shown, e.g. '0,1,2' (deficient support)"
    )
    s.add_argument(
        "--candidates",
        type=int,
        metavar="M",
        help="two-stage logger for large catalogs: retrieve the top M items, then rank "
        "them with the softmax / epsilon-greedy head (not uniform)",
    )
    s.add_argument(
        "--floor",
        type=float,
        help="two-stage logger: uniform mass over the whole catalog, so every item "
        "can be shown (with --candidates; 0 when unset)",
    )
    world_options(s)
    s.add_argument(
        "--seed", type=int, default=0, help="seed of the sessions and the policy's draws"
    )
    s.add_argument(
        "--logging-dist", action="store_true", help="also store the logger's full distribution"
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=65_536,
        help="rows simulated at once: sets peak memory (the log depends on it: keep it to reproduce a log)",
    )
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset at --out (only one offrec wrote)",
    )
    sl = s.add_argument_group("slates (ranked lists; bandit mode)")
    sl.add_argument(
        "--slate-size",
        type=int,
        help="show ranked lists of this many items, ranked by Plackett-Luce over --logger; "
        "one row per slot, --n-sessions slates",
    )
    sl.add_argument(
        "--click-model",
        default="cascade",
        choices=["independent", "pbm", "cascade"],
        help="how users click a list (with --slate-size; default %(default)s)",
    )
    sl.add_argument(
        "--marginal-samples",
        type=int,
        default=2000,
        help="Monte-Carlo prefixes per user for the per-slot marginal propensities when "
        "they cannot be enumerated (default %(default)s)",
    )
    add_global_options(s)
    s.set_defaults(func=run)


def parse_support(text: str | None, n_items: int) -> list[int] | None:
    if text is None:
        return None
    try:
        items = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"--support must be a comma-separated list of item indices; got {text!r}"
        ) from None
    bad = [i for i in items if not 0 <= i < n_items]
    if bad or not items:
        raise InputError(f"--support items must be in [0, {n_items}); got {text!r}")
    return items


def run(args: argparse.Namespace) -> int:
    from offrec.logs import collect
    from offrec.logs.writer import expected_rows
    from offrec.policies.loggers import logging_policy, logging_policy_kwargs

    if (args.n_sessions is None) == (args.n_decisions is None):
        raise InputError("give exactly one of --n-decisions or --n-sessions")
    if args.policy_deprecated is not None:
        if args.logger is not None:
            raise InputError("give --logger only (--policy is its deprecated name)")
        # a warning, not a printed line: errors stay one line on stderr
        warnings.warn("simulate --policy is deprecated; use --logger", DeprecationWarning, 2)
        args.logger = args.policy_deprecated
    args.logger = args.logger or "softmax"
    world = world_from_args(args)
    kwargs = logging_policy_kwargs(
        args.logger,
        beta=args.beta,
        epsilon=args.epsilon,
        noise=args.noise,
        model_seed=args.model_seed,
        support=parse_support(args.support, world.n_actions),
        candidates=args.candidates,
        floor=args.floor,
    )
    policy = logging_policy(world, args.logger, **kwargs)
    if args.slate_size is not None:
        return _run_slates(args, world, policy)
    total = args.n_decisions or expected_rows(world, args.n_sessions)
    with progress(args, total, "simulate") as bar:
        done = [0]

        def tick(rows: int) -> None:
            bar.update(rows - done[0])
            done[0] = rows

        result = collect(
            world,
            policy,
            out=args.out,
            n_sessions=args.n_sessions,
            n_decisions=args.n_decisions,
            seed=args.seed,
            overwrite=args.overwrite,
            logging_dist=args.logging_dist,
            progress=tick,
            chunk_rows=args.batch_size,
        )
    print(result.line())
    return 0


def _run_slates(args: argparse.Namespace, world: Any, policy: Any) -> int:
    """``--slate-size``: a Plackett-Luce ranker over ``policy``, logged one row per slot."""
    from offrec.logs.slate import collect_slates
    from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld

    if args.n_sessions is None:
        raise InputError("with --slate-size give --n-sessions (the number of slates)")
    sw = SlateWorld(world, args.slate_size, ClickModel(args.click_model))
    ranker = PlackettLuce(policy, args.slate_size)
    result = collect_slates(
        sw,
        ranker,
        out=args.out,
        n_slates=args.n_sessions,
        seed=args.seed,
        overwrite=args.overwrite,
        marginal_samples=args.marginal_samples,
    )
    print(result.line().replace("sessions", "slates"))
    return 0
