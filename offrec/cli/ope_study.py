"""``offrec ope-study``: how accurate are the estimators? logs x seeds vs exact truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options, progress, world_from_args, world_options
from offrec.core.errors import InputError, OutputExistsError


def add_parser(sub: Any) -> None:
    st = sub.add_parser(
        "ope-study",
        help="how accurate are the estimators? logs x seeds vs exact truth",
        description="For several seeds: log a softmax logger in the world, estimate "
        "target policies with each estimator, and compare with the truth (exact in "
        "bandit mode, Monte-Carlo in session mode): relative error, bias, coverage.",
    )
    st.add_argument(
        "--target",
        action="append",
        help="target policy (repeatable): myopic[:eps], best_item[:eps], softmax[:beta], "
        "epsilon_greedy[:eps], uniform (default myopic:0.3 and softmax:1.0; session mode "
        "softmax:1.0 and epsilon_greedy:0.3)",
    )
    st.add_argument(
        "--beta", type=float, default=0.5, help="the softmax logger's beta (default 0.5)"
    )
    st.add_argument(
        "--estimators",
        help="comma-separated (default ips,snips,dm,dr; session mode pdis,wpdis,dr,fqe)",
    )
    st.add_argument(
        "--n-rows", type=int, default=100_000, help="logged rows per seed (default 100k)"
    )
    st.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    st.add_argument(
        "--interval",
        default="bootstrap",
        choices=["bootstrap", "normal", "bernstein"],
        help="interval method",
    )
    st.add_argument("--n-bootstrap", type=int, default=500, help="bootstrap resamples")
    st.add_argument("--out", type=Path, help="folder for runs.csv, summary.csv and estimators.png")
    st.add_argument("--overwrite", action="store_true", help="replace a folder offrec wrote")
    world_options(st)
    add_global_options(st)
    st.set_defaults(func=run)


def _parse_target(text: str, world: Any) -> tuple[str, Any]:
    """``myopic:0.3`` (epsilon), ``best_item``, ``softmax:2.0`` (beta), ``epsilon_greedy:0.2``, ``uniform``."""
    from offrec.core.policy import Head
    from offrec.policies.loggers import logging_policy
    from offrec.sim import BestItemOracle, MyopicOracle

    kind, _, arg = text.partition(":")
    try:
        value = float(arg) if arg else None
    except ValueError:
        raise InputError(f"--target {text!r}: the value after ':' must be a number") from None
    if kind in ("myopic", "best_item"):
        head = Head("epsilon_greedy", epsilon=value) if value else Head()
        return text, (MyopicOracle if kind == "myopic" else BestItemOracle)(world, head)
    if kind == "softmax":
        return text, logging_policy(world, "softmax", beta=value or 1.0)
    if kind == "epsilon_greedy":
        return text, logging_policy(
            world, "epsilon_greedy", epsilon=0.1 if value is None else value
        )
    if kind == "uniform":
        return text, logging_policy(world, "uniform")
    raise InputError(
        f"--target must be myopic[:eps], best_item[:eps], softmax[:beta], epsilon_greedy[:eps] or uniform; got {text!r}"
    )


def run(args: argparse.Namespace) -> int:
    from offrec.core.atomic import atomic_dir
    from offrec.ope.accuracy import evaluate_estimators
    from offrec.policies.loggers import logging_policy

    world = world_from_args(args)
    logger = logging_policy(world, "softmax", beta=args.beta)
    default_targets = (
        ["myopic:0.3", "softmax:1.0"]
        if world.config.horizon == 1
        else ["softmax:1.0", "epsilon_greedy:0.3"]
    )
    targets = dict(_parse_target(t, world) for t in (args.target or default_targets))
    default = "ips,snips,dm,dr" if world.config.horizon == 1 else "pdis,wpdis,dr,fqe"
    estimators = [e.strip() for e in (args.estimators or default).split(",") if e.strip()]
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise OutputExistsError(f"output {args.out} already exists; pass --overwrite to replace it")
    with progress(args, args.seeds, "seeds") as bar:
        ev = evaluate_estimators(
            world,
            logger,
            targets,
            estimators=estimators,
            n_rows=args.n_rows,
            seeds=range(args.seeds),
            interval=args.interval,
            n_bootstrap=args.n_bootstrap,
            progress=lambda k: bar.update(1),
        )
    print(ev.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out is not None:
        with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
            ev.runs.to_csv(tmp / "runs.csv", index=False)
            ev.summary.to_csv(tmp / "summary.csv", index=False)
            ev.plot(tmp / "estimators.png")
        print(f"runs.csv, summary.csv and estimators.png written to {args.out}")
    return 0
