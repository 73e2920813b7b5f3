"""The ``offrec`` command: one subcommand per job.

Errors in what the user gave (bad option values, missing files, malformed configs)
print one line ``offrec: error: ...`` and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    KeyError,
    NotADirectoryError,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own usage errors: one line, exit 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _progress(args: argparse.Namespace, total: int | None, desc: str) -> Any:
    """A tqdm progress bar on stderr (none with --quiet)."""
    from tqdm import tqdm

    quiet = args.quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, disable=quiet, file=sys.stderr)


# -- simulate ------------------------------------------------------------------------------
def _world_from_args(args: argparse.Namespace) -> Any:
    from offrec.sim import World, WorldConfig

    cfg = WorldConfig.from_file(args.world) if args.world else WorldConfig()
    overrides = {
        k: getattr(args, k)
        for k in ("n_items", "n_topics", "n_users", "horizon")
        if getattr(args, k) is not None
    }
    if overrides:
        cfg = cfg.replace(**overrides)
    return World(cfg, seed=args.world_seed)


def _parse_support(text: str | None, n_items: int) -> list[int] | None:
    if text is None:
        return None
    try:
        items = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--support must be a comma-separated list of item indices; got {text!r}"
        ) from None
    bad = [i for i in items if not 0 <= i < n_items]
    if bad or not items:
        raise ValueError(f"--support items must be in [0, {n_items}); got {text!r}")
    return items


def cmd_simulate(args: argparse.Namespace) -> int:
    from offrec.logs import collect
    from offrec.logs.writer import expected_rows
    from offrec.policies.loggers import logging_policy

    if (args.n_sessions is None) == (args.n_decisions is None):
        raise ValueError("give exactly one of --n-decisions or --n-sessions")
    world = _world_from_args(args)
    kwargs: dict[str, Any] = {"support": _parse_support(args.support, world.n_items)}
    if args.policy != "uniform":
        kwargs.update(noise=args.noise, model_seed=args.model_seed)
        kwargs.update(
            {"beta": args.beta} if args.policy == "softmax" else {"epsilon": args.epsilon}
        )
    policy = logging_policy(world, args.policy, **kwargs)
    total = args.n_decisions or expected_rows(world, args.n_sessions)
    with _progress(args, total, "simulate") as bar:
        done = [0]

        def tick(rows: int) -> None:
            bar.update(rows - done[0])
            done[0] = rows

        result = collect(
            world, policy, out=args.out, n_sessions=args.n_sessions, n_decisions=args.n_decisions,
            seed=args.seed, overwrite=args.overwrite, logging_dist=args.logging_dist, progress=tick,
        )  # fmt: skip
    print(result.line())
    return 0


# -- query / summary -----------------------------------------------------------------------
def cmd_query(args: argparse.Namespace) -> int:
    import pandas as pd

    from offrec.logs import query

    df = query(args.logs, args.sql)
    with pd.option_context("display.max_rows", args.max_rows, "display.width", 200):
        print(df.to_string(index=False, max_rows=args.max_rows))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from offrec.logs import summary

    print(summary(args.logs).to_text())
    return 0


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="offrec",
        description=(
            "Offline recommendation: simulate logged data, train policies offline, and estimate "
            "their CTR off-policy, then check the estimates against the simulator's ground truth."
        ),
        epilog="Start with:  offrec run pipelines/quickstart.toml   (see README for a tour)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("simulate", help="log a policy acting in the simulated world to Parquet",
                       description="Run a logging policy in the simulated world and write its log "
                       "(one row per decision, with propensities) to a Parquet dataset directory.")  # fmt: skip
    s.add_argument("--out", required=True, type=Path, help="output dataset directory")
    size = s.add_mutually_exclusive_group()
    size.add_argument("--n-decisions", type=int, help="number of logged rows")
    size.add_argument("--n-sessions", type=int, help="number of sessions (users)")
    s.add_argument("--policy", default="softmax", choices=["uniform", "softmax", "epsilon_greedy"],
                   help="logging policy (default softmax over the production model)")  # fmt: skip
    s.add_argument(
        "--beta", type=float, default=1.0, help="softmax inverse temperature (default 1.0)"
    )
    s.add_argument(
        "--epsilon", type=float, default=0.1, help="epsilon for epsilon_greedy (default 0.1)"
    )
    s.add_argument("--noise", type=float, default=0.5,
                   help="production model error: 0 = best possible from observations (default 0.5)")  # fmt: skip
    s.add_argument(
        "--model-seed", type=int, default=0, help="seed of the production model's errors"
    )
    s.add_argument(
        "--support", help="only these items may be shown, e.g. '0,1,2' (deficient support)"
    )
    s.add_argument("--world", type=Path, help="world config file (.json or .toml)")
    s.add_argument("--n-items", type=int, help="override the world's number of items")
    s.add_argument("--n-topics", type=int, help="override the world's number of topics")
    s.add_argument("--n-users", type=int, help="override the world's user population size")
    s.add_argument("--horizon", type=int, help="steps per session (1 = bandit mode)")
    s.add_argument("--world-seed", type=int, default=0, help="seed of items and users (default 0)")
    s.add_argument(
        "--seed", type=int, default=0, help="seed of the sessions and the policy's draws"
    )
    s.add_argument(
        "--logging-dist", action="store_true", help="also store the logger's full distribution"
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    s.set_defaults(func=cmd_simulate)

    q = sub.add_parser("query", help="run SQL on a log with DuckDB (the log is the view 'logs')")
    q.add_argument("logs", type=Path, help="log directory or Parquet file")
    q.add_argument("sql", help='SQL, e.g. "SELECT step, avg(reward) FROM logs GROUP BY step"')
    q.add_argument("--max-rows", type=int, default=50, help="rows to print (default 50)")
    q.set_defaults(func=cmd_query)

    m = sub.add_parser("summary", help="rows, sessions, CTR by topic and step, pscore range, ESS")
    m.add_argument("logs", type=Path, help="log directory or Parquet file")
    m.set_defaults(func=cmd_summary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except USER_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"offrec: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `offrec summary DIR | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("offrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
