"""``offrec summary``: what is in a log, and whether it passes the log checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options


def add_parser(sub: Any) -> None:
    m = sub.add_parser(
        "summary",
        help="rows, sessions, CTR by topic and step, pscore range, ESS, problems",
        description="Describe a log and run the same checks as every reader; a log "
        "with problems prints them in a 'problems' section and exits with code 2.",
    )
    m.add_argument("logs", type=Path, help="log directory or Parquet file")
    add_global_options(m)
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from offrec.logs.query import summary

    s = summary(args.logs)
    print(s.to_text())
    if s.problems:
        print(
            f"offrec: error: invalid log {args.logs}: {len(s.problems)} problem(s), listed under "
            "'problems'",
            file=sys.stderr,
        )
        return 2
    return 0
