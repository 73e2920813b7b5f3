"""``offrec serve``: serve a saved model over HTTP, logging every decision (see
:mod:`offrec.serve`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options


def add_parser(sub: Any) -> None:
    sv = sub.add_parser(
        "serve",
        help="serve a saved model over HTTP; every decision is logged with its propensity",
        description=(
            "Serve MODEL over HTTP (POST /v1/recommend, /v1/feedback; GET /v1/health, "
            "/v1/model). Each decision is made durable in LOG/_wal before it is answered, "
            "then compacted into Parquet part files of offrec's log schema in LOG. "
            "SIGHUP re-reads MODEL and deploys it without downtime."
        ),
    )
    sv.add_argument("model", type=Path, help="saved model folder")
    sv.add_argument("--log", type=Path, required=True, help="log folder (created)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind")
    sv.add_argument("--port", type=int, default=8000, help="port (0: a free one)")
    sv.add_argument(
        "--token",
        default=os.environ.get("OFFREC_SERVE_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' (default: $OFFREC_SERVE_TOKEN); "
        "also enables the admin endpoints",
    )
    sv.add_argument("--window", type=float, default=30.0, help="attribution window, seconds")
    sv.add_argument(
        "--grace",
        type=float,
        default=2.0,
        help="extra seconds before a segment whose window closed is compacted",
    )
    sv.add_argument("--compact-every", type=float, default=5.0, help="seconds between compactions")
    sv.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for")
    sv.add_argument("--max-body", type=int, default=64 * 1024, help="request size limit, bytes")
    sv.add_argument(
        "--context-dim",
        type=int,
        default=None,
        help="context width (when the model folder has no world.json)",
    )
    sv.add_argument("--seed", type=int, default=None, help="seed of the service's sampling")
    sv.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the URL and pid here (JSON) once serving",
    )
    add_global_options(sv)
    sv.set_defaults(func=run)
    add_loop_parser(sub)


def add_loop_parser(sub: Any) -> None:
    lp = sub.add_parser(
        "loop",
        help="the closed loop: simulated users call offrec serve over HTTP; learn, estimate, "
        "deploy only when the lift's lower bound is > 0",
    )
    lp.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="loop file (e.g. pipelines/closed_loop.toml); default: built-in defaults",
    )
    lp.add_argument("--out", type=Path, required=True, help="output folder")
    lp.add_argument("--seed", type=int, default=None, help="override the file's seed")
    lp.add_argument("--rounds", type=int, default=None, help="override the file's rounds")
    add_global_options(lp)
    lp.set_defaults(func=run_loop)


def run_loop(args: argparse.Namespace) -> int:
    from offrec.serve.loop import LoopConfig, report, run_loop

    overrides = {k: v for k, v in (("seed", args.seed), ("rounds", args.rounds)) if v is not None}
    if args.config is not None:
        config = LoopConfig.from_toml(args.config, **overrides)
    else:
        config = LoopConfig.from_dict(overrides)

    def show(row: Any) -> None:
        if not args.quiet:
            print(
                f"round {row.round}: true CTR {row.true_ctr:.4f}, lift {row.estimate:+.4f} "
                f"[{row.low:+.4f}, {row.high:+.4f}] -> {'deploy' if row.deployed else 'keep'}",
                file=sys.stderr,
                flush=True,
            )

    rounds = run_loop(config, args.out, progress=show)
    final = __import__("json").loads((args.out / "loop.json").read_text())["serving_true_ctr"]
    print(report(config, rounds, final))
    return 0


def run(args: argparse.Namespace) -> int:
    from offrec.serve.server import run_service
    from offrec.serve.service import ServiceConfig

    config = ServiceConfig(
        window_s=args.window,
        grace_s=args.grace,
        compact_every_s=args.compact_every,
        max_k=args.max_k,
        seed=args.seed,
    )

    def ready(info: dict[str, Any]) -> None:
        print(
            f"offrec serve: {info['model_version']} on {info['url']} (log {args.log})",
            file=sys.stderr,
            flush=True,
        )

    health = run_service(
        args.model,
        args.log,
        host=args.host,
        port=args.port,
        token=args.token,
        config=config,
        context_dim=args.context_dim,
        max_body=args.max_body,
        ready_file=args.ready_file,
        on_ready=ready,
    )
    served = health["served"]
    print(
        f"served {served['decisions']:,} decisions, {served['feedback']:,} rewards "
        f"({served['late_feedback']:,} late); log in {args.log}",
        file=sys.stderr,
    )
    return 0
