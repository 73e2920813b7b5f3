"""``offrec export``: write a log in another format (Farama Minari, for offline RL libraries)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offrec.cli._common import add_global_options


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="write a log in another format (minari: Farama's offline RL datasets)",
        description="Write a log as a Minari dataset (one episode per session; the logging "
        "propensities in infos['pscore']). The dataset DATASET_ID ([namespace/]name-v0) goes "
        "to ROOT/DATASET_ID, ROOT being --root, else MINARI_DATASETS_PATH, else "
        "~/.minari/datasets: then minari.load_dataset('DATASET_ID') reads it (with "
        "MINARI_DATASETS_PATH=ROOT when --root is elsewhere).",
    )
    e.add_argument("--format", required=True, choices=["minari"], help="output format")
    e.add_argument("logs", type=Path, help="log directory")
    e.add_argument(
        "--out",
        required=True,
        metavar="DATASET_ID",
        help="Minari dataset id, e.g. offrec/sessions-v0",
    )
    e.add_argument(
        "--root",
        type=Path,
        help="datasets folder (default: MINARI_DATASETS_PATH, else ~/.minari/datasets)",
    )
    e.add_argument(
        "--overwrite", action="store_true", help="replace a dataset offrec exported under that id"
    )
    add_global_options(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from offrec.logs.minari import export_minari

    res = export_minari(args.logs, args.out, root=args.root, overwrite=args.overwrite)
    print(f"wrote {res.line()} as Minari dataset {res.dataset} at {res.path}")
    return 0
