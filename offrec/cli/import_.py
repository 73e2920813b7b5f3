"""``offrec import``: bring your own logs (CSV/Parquet with a column map, offrec's own
Parquet, or the Open Bandit Dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options


def add_parser(sub: Any) -> None:
    i = sub.add_parser(
        "import",
        help="import your own logs (CSV/Parquet with a column map, or OBD)",
        description="Import a log. Every problem (missing values, pscores outside (0, 1], "
        "rewards outside the declared domain, duplicated rows, step gaps) is an error "
        "naming the rows, unless --repair drop. A Parquet log written by offrec is "
        "recognised and re-imported as it is.",
    )
    i.add_argument(
        "flavour",
        choices=["csv", "parquet", "obd", "minari"],
        help="generic file, the Open Bandit Dataset, or a Minari dataset (id or folder)",
    )
    i.add_argument("src", type=Path, help="source file (OBD: the campaign CSV)")
    i.add_argument("--out", type=Path, required=True, help="log directory to write")
    i.add_argument(
        "--action",
        default="action",
        help="item column (any ids, sparse or negative; mapped to 0..K-1, the map kept with the log)",
    )
    i.add_argument("--reward", default="reward", help="reward column")
    i.add_argument(
        "--reward-domain",
        default="binary",
        choices=["binary", "continuous"],
        help="what the reward is: clicks (0/1) or a continuous value within --reward-low/--reward-high",
    )
    i.add_argument("--reward-low", type=float, help="lower bound of a continuous reward")
    i.add_argument("--reward-high", type=float, help="upper bound of a continuous reward")
    i.add_argument("--pscore", default="pscore", help="propensity column")
    i.add_argument("--session", help="session column (each row its own session when unset)")
    i.add_argument("--step", help="step column (order within the session when unset)")
    i.add_argument("--position", help="position (slot) column")
    i.add_argument("--user", help="user column")
    i.add_argument(
        "--context",
        help="comma-separated context columns (no context when unset and no --context-prefix)",
    )
    i.add_argument("--context-prefix", help="context = every column starting with this")
    i.add_argument(
        "--categorical",
        default="onehot",
        choices=["onehot", "hash"],
        help="encoding of text context columns",
    )
    i.add_argument(
        "--encoding", default="utf-8", help="text encoding of a CSV source, e.g. latin-1"
    )
    i.add_argument(
        "--claimed-policy", choices=["uniform"], help="check propensities against this logger"
    )
    i.add_argument(
        "--repair", choices=["drop"], help="drop problem rows instead of failing (reported)"
    )
    i.add_argument(
        "--items",
        type=Path,
        metavar="LOG_OR_CATALOG",
        help="number items as this item map does: an offrec log (e.g. an earlier import) or a "
        "catalog file (CSV/Parquet with an item_id column); ids it lacks are refused, listed",
    )
    i.add_argument(
        "--extend-items",
        action="store_true",
        help="with --items: add the ids the map lacks (after its items) instead of refusing",
    )
    i.add_argument(
        "--catalog",
        type=Path,
        metavar="FILE",
        help="item table (CSV/Parquet: item_id, topic, quality, emb_0, emb_1, ...): numbers the "
        "items, is stored beside the log, and gives the hybrid learner and MIPS/OffCEM the items",
    )
    i.add_argument("--item-context", type=Path, help="OBD item_context.csv")
    i.add_argument("--overwrite", action="store_true", help="replace a log offrec wrote at --out")
    i.add_argument(
        "--uniform-pscore",
        action="store_true",
        help="minari: the data was logged uniformly at random (pscore 1/n_actions)",
    )
    add_global_options(i)
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from offrec.logs.importers import ColumnMap, import_any

    if args.flavour == "minari":  # SRC: a dataset id (under MINARI_DATASETS_PATH) or folder
        from offrec.logs.minari import import_minari

        got = import_minari(
            args.src, args.out, uniform_pscore=args.uniform_pscore, overwrite=args.overwrite
        )
        print(f"imported {got.line()} from Minari dataset {got.dataset} to {args.out}")
        return 0

    cmap = ColumnMap(
        action=args.action,
        reward=args.reward,
        pscore=args.pscore,
        session=args.session,
        step=args.step,
        position=args.position,
        user=args.user,
        context=tuple(c for c in args.context.split(",") if c) if args.context else None,
        context_prefix=args.context_prefix,
        categorical=args.categorical,
    )
    res = import_any(
        args.flavour,
        args.src,
        args.out,
        cmap,
        given=_given(args),
        encoding=args.encoding,
        reward=(args.reward_domain, args.reward_low, args.reward_high),
        item_context_csv=args.item_context,
        repair=args.repair,
        claimed_policy=args.claimed_policy,
        overwrite=args.overwrite,
        items=args.items,
        extend_items=args.extend_items,
        catalog=args.catalog,
    )
    print(res.line(args.out))
    return 0


def _given(args: argparse.Namespace) -> set[str]:
    """Column-map options the user set (their defaults differ from the parser's)."""
    defaults = {"action": "action", "reward": "reward", "pscore": "pscore", "categorical": "onehot"}
    names = (
        "action",
        "reward",
        "pscore",
        "session",
        "step",
        "position",
        "user",
        "context",
        "context_prefix",
        "categorical",
        "claimed_policy",
        "item_context",
    )
    return {
        n for n in names if getattr(args, n) is not None and getattr(args, n) != defaults.get(n)
    }
