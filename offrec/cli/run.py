"""``offrec run``: a pipeline file end to end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "run",
        help="run a pipeline file end to end (logs, training, OPE, truth, report)",
        description="Run a pipeline (TOML): simulate logs, train policies, estimate their "
        "value off-policy, run them online for the truth, and write a report. Cached "
        "stages are checked against their manifest and recomputed when corrupt.",
    )
    r.add_argument("file", type=Path, help="pipeline file, e.g. pipelines/quickstart.toml")
    r.add_argument("--out", type=Path, help="output folder (runs/<pipeline name> when unset)")
    r.add_argument("--seed", type=int, help="override the pipeline's seed (the file's when unset)")
    r.add_argument("--fresh", action="store_true", help="ignore the cache: recompute every stage")
    add_global_options(r)
    r.set_defaults(func=run)


def say(args: argparse.Namespace) -> Callable[[str], None]:
    def _say(msg: str) -> None:
        if not args.quiet:
            print(f"[offrec] {msg}", file=sys.stderr, flush=True)

    return _say


def run(args: argparse.Namespace) -> int:
    from offrec.pipeline import run_pipeline

    if _is_slate_pipeline(args.file):  # a [slate] table: offrec.slate_pipeline runs it
        from offrec.slate_pipeline import run_slate_pipeline

        out = args.out or Path("runs") / args.file.stem
        print(run_slate_pipeline(args.file, out).text())
        return 0
    result = run_pipeline(args.file, args.out, seed=args.seed, progress=say(args), fresh=args.fresh)
    print(result.text())
    return 0


def _is_slate_pipeline(path: Path) -> bool:
    import tomllib

    from offrec.core.errors import InputError
    from offrec.slate_pipeline import is_slate_pipeline

    try:
        return is_slate_pipeline(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, InputError):
        return False  # the pipeline runner reports what is wrong with the file
