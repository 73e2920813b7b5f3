"""``offrec query``: SQL over a log with DuckDB, after the log's checks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options

DESCRIPTION = """\
Run SQL on a log with in-process DuckDB. The log is the view 'logs' (and, for simulated
logs, the table 'items(action, topic)'). The log is validated first (the same checks as
every reader). The SQL is full DuckDB SQL run with your rights; by default DuckDB's
access to files is locked once the log is registered (no COPY ... TO, no read_csv of
other files, no extensions); --allow-external-access lifts that lock."""


def add_parser(sub: Any) -> None:
    q = sub.add_parser(
        "query",
        help="run SQL on a log with DuckDB (the log is the view 'logs')",
        description=DESCRIPTION,
    )
    q.add_argument("logs", type=Path, help="log directory or Parquet file")
    q.add_argument("sql", help='SQL, e.g. "SELECT step, avg(reward) FROM logs GROUP BY step"')
    q.add_argument("--max-rows", type=int, default=50, help="rows to print")
    q.add_argument(
        "--allow-external-access",
        action="store_true",
        help="let the SQL read and write other files and load extensions",
    )
    add_global_options(q)
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from offrec.logs.query import query

    df = query(args.logs, args.sql, external_access=args.allow_external_access)
    import pandas as pd

    with pd.option_context("display.max_rows", args.max_rows, "display.width", 200):
        print(df.to_string(index=False, max_rows=args.max_rows))
    return 0
