"""The ``offrec`` command: one subcommand per job, one thin module per subcommand.

Each subcommand module parses its options, calls one library function and prints.
Errors in what the user gave (bad option values, missing files, malformed configs) print
one line ``offrec: error: ...`` and exit with code 2, without a traceback; the CLI turns
the library's Python spelling (``overwrite=True``) into the flag (``--overwrite``).

Importing this package (and ``offrec --help``) loads no heavy dependency: torch,
d3rlpy, scikit-learn, scipy and pandas are imported inside the subcommands that use them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from offrec.cli import (
    evaluate,
    export,
    import_,
    ope_study,
    query,
    recommend,
    run,
    serve,
    simulate,
    summary,
    train,
)
from offrec.cli._common import Parser, add_global_options
from offrec.core.errors import OffrecError
from offrec.core.version import __version__

USER_ERRORS = (OffrecError,)
"""What the CLI reports as one line (exit 2); anything else is a bug and keeps its traceback."""

SUBCOMMANDS = (
    simulate,
    query,
    summary,
    run,
    train,
    evaluate,
    ope_study,
    import_,
    export,
    recommend,
    serve,
)

# the library's keyword spelling -> the command's flag
FLAG_HINTS: tuple[tuple[str, str], ...] = (
    (r"pass overwrite=True", "use --overwrite"),
    (r"pass repair='drop'", "use --repair drop"),
    (r"repair='drop'", "--repair drop"),
    (r"\bexternal_access=True\b", "--allow-external-access"),
    (r"pass encoding='([^']*)'", r"use --encoding \1"),
)


def cli_message(exc: BaseException) -> str:
    """The one-line message of a library error, with Python keywords turned into flags."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for pattern, flag in FLAG_HINTS:
        msg = re.sub(pattern, flag, msg)
    return msg


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="offrec",
        description=(
            "Offline recommendation: simulate logged data, train policies offline, and estimate "
            "their CTR off-policy, then check the estimates against the simulator's ground truth."
        ),
        epilog="Start with:  offrec run pipelines/quickstart.toml   (see README for a tour)",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"offrec {__version__}",
        help="print the version and exit",
    )
    add_global_options(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except USER_ERRORS as exc:
        print(f"offrec: error: {cli_message(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `offrec summary DIR | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # a read-only or full disk met outside offrec's writers
        from offrec.core.atomic import write_error

        err = write_error(exc, getattr(exc, "filename", None) or "the output")
        if err is None:
            raise
        print(f"offrec: error: {cli_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a write (offrec.core.atomic)
        signum = getattr(exc, "signum", None)
        print("offrec: interrupted" + (f" (signal {signum})" if signum else ""), file=sys.stderr)
        return 128 + signum if signum else 130


if __name__ == "__main__":
    raise SystemExit(main())
