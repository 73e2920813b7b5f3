"""``offrec evaluate``: estimate a policy's value from a log (off-policy), through the one
OPE entry point :func:`offrec.ope.evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from offrec.cli._common import LazyChoices, add_global_options, progress
from offrec.core.errors import InputError, MissingInputError


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "evaluate",
        help="estimate a policy's value from a log (off-policy)",
        description="Estimate a target policy's value from a log. Bandit logs use the bandit "
        "estimators, session logs the session ones (offrec.ope.SESSION_CLASSES: "
        "pdis, tis, wpdis, wtis, dr, fqe, mb, mis, the neural forms ...).",
    )
    e.add_argument("logs", type=Path, help="log directory")
    e.add_argument("--policy", help="a saved model folder (offrec train ...)")
    e.add_argument(
        "--probs",
        help="target probabilities aligned with the log rows (.npy or .parquet, n x n_actions)",
    )
    e.add_argument(
        "--estimators",
        help="comma-separated (default: offrec.ope.trust.DEFAULT_BANDIT on bandit logs, "
        "DEFAULT_SESSION on session logs)",
    )
    e.add_argument(
        "--reward-model",
        default="logistic",
        choices=LazyChoices("offrec.reward", "ALL_KINDS"),
        metavar="KIND",
        help="reward model of the DM/DR-type bandit estimators (default %(default)s; "
        "bilinear: the (context, item) model on the log's item table, for large catalogs)",
    )
    e.add_argument(
        "--interval",
        default="bootstrap",
        choices=["bootstrap", "normal", "bernstein", "none"],
        help="confidence interval method (default %(default)s)",
    )
    e.add_argument(
        "--n-bootstrap", type=int, default=1000, help="bootstrap resamples (default %(default)s)"
    )
    e.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap, folds and fitting sample (default %(default)s)",
    )
    e.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "bandit", "session"],
        help="auto: session estimators on session logs; bandit: every decision as a bandit round (default %(default)s)",
    )
    e.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: batches on this machine; ray: Ray Data, local or --ray-address (default %(default)s)",
    )
    e.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)",
    )
    e.add_argument(
        "--batch-size",
        type=int,
        default=65_536,
        help="rows per batch: sets peak memory (default %(default)s)",
    )
    e.add_argument(
        "--workers",
        type=int,
        default=2,
        help="batches at once on the local engine, threads (default %(default)s)",
    )
    e.add_argument(
        "--fit-rows",
        type=int,
        default=200_000,
        help="rows sampled to fit reward/Q models (default %(default)s)",
    )
    e.add_argument(
        "--strict",
        action="store_true",
        help="an estimator named in --estimators that cannot apply to the log is an error "
        "(default: it is skipped, the others are reported, and the reason is listed)",
    )
    e.add_argument("--json", type=Path, help="also write the estimates and warnings as JSON")
    e.add_argument(
        "--repair",
        choices=["drop"],
        help="drop duplicated log rows instead of failing (reads the log into memory; not with --probs)",
    )
    sl = e.add_argument_group("slate logs (offrec simulate --slate-size)")
    sl.add_argument(
        "--slate-ranker",
        default="pl",
        choices=["pl", "top-k"],
        help="how --policy ranks: pl = Plackett-Luce over its probabilities, top-k = its "
        "top items with probability 1 - --slate-epsilon (default %(default)s)",
    )
    sl.add_argument(
        "--slate-temperature",
        type=float,
        default=1.0,
        help="Plackett-Luce temperature (default %(default)s)",
    )
    sl.add_argument(
        "--slate-epsilon",
        type=float,
        default=0.1,
        help="top-k: probability of a uniformly random list (default %(default)s)",
    )
    add_global_options(e)
    e.set_defaults(func=run)


def _aligned_by_key(table: Any, source: Any) -> Any:
    """The probability columns of ``table`` (every column but session_id, step, position)
    in the log's row order, matched on the row key (session_id, step, position): every
    log row must have exactly one row in ``table``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = [c for c in ("session_id", "step", "position") if c in table.column_names]
    log = pa.concat_tables([pq.read_table(f, columns=keys) for f in source.files])
    mine = [np.asarray(log.column(c).to_numpy(), np.int64) for c in keys]
    theirs = [np.asarray(table.column(c).to_numpy(zero_copy_only=False), np.int64) for c in keys]
    if len(theirs[0]) != len(mine[0]):
        raise InputError(f"--probs has {len(theirs[0]):,} rows; the log has {len(mine[0]):,}")
    a, b = np.lexsort(mine[::-1]), np.lexsort(theirs[::-1])
    differ = np.zeros(len(a), bool)
    for m, t in zip(mine, theirs, strict=True):
        differ |= m[a] != t[b]
    if differ.any():
        i = int(a[np.flatnonzero(differ)[0]])
        key = ", ".join(f"{c}={int(m[i])}" for c, m in zip(keys, mine, strict=True))
        raise InputError(f"--probs has no row (or several) for the log's row {i:,} ({key})")
    values = table.drop(keys).to_pandas().to_numpy(dtype=np.float64)
    out = np.empty_like(values)
    out[a] = values[b]
    return out


def _target_from_args(
    args: argparse.Namespace, source: Any, n_rows: int, n_actions: int, obs_dim: int
) -> tuple[str, Any]:
    import numpy as np

    if args.policy:
        from offrec.models import load_model

        # sizes checked by evaluate(), after laying the model's item map onto the log's
        return Path(args.policy).name, load_model(args.policy, obs_dim=obs_dim)
    from offrec.ope import FixedProbs

    path = Path(args.probs)
    if not path.is_file():
        raise MissingInputError(f"no such file: {path}")
    if path.suffix == ".npy":
        probs = np.load(path, allow_pickle=False, mmap_mode="r")  # streamed: rows read per batch
        keyed = False
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        keyed = {"session_id", "step"} <= set(table.column_names)
        probs = (
            _aligned_by_key(table, source)
            if keyed
            else np.asarray(table.to_pandas().to_numpy(), dtype=np.float64)
        )
    if not keyed and source.metadata.get("rows_reordered"):
        raise InputError(
            f"--probs {path} gives probabilities by row position, but the rows of {source.path} "
            "were reordered when it was imported (grouped by session, or problem rows "
            "dropped): row i of the log is not row i of the source file. Give --probs as a "
            "Parquet file with session_id and step (and position) columns to align by key"
        )
    if probs.shape != (n_rows, n_actions):
        raise InputError(
            f"--probs must have one row per log row and one column per action, "
            f"shape ({n_rows}, {n_actions}); got {probs.shape}"
        )
    return path.stem, FixedProbs(probs)


def _reward_model(args: argparse.Namespace, source: Any) -> Any:
    """``--reward-model``: a :class:`~offrec.reward.RewardModel` kind, or ``bilinear`` built
    on the log's item table (refused, naming the file it needs, when the log has none)."""
    from offrec.reward import RewardModel
    from offrec.reward.bilinear import BILINEAR, BilinearLogistic

    if args.reward_model != BILINEAR:
        return RewardModel(kind=args.reward_model, seed=args.seed)
    from offrec.logs.catalog import CATALOG_FILE, catalog_path, read_catalog

    path = Path(source.path)
    if not path.is_dir() or catalog_path(path) is None:
        raise InputError(
            f"--reward-model bilinear needs the log's item table ({CATALOG_FILE}: a "
            f"two-stage simulated log, or `offrec import ... --catalog FILE`); {path} has none"
        )
    return BilinearLogistic(read_catalog(path).features(), seed=args.seed)


def run(args: argparse.Namespace) -> int:
    import json

    from offrec.logs.scan import open_log
    from offrec.ope import evaluate

    if (args.policy is None) == (args.probs is None):
        raise InputError("give exactly one of --policy MODEL_DIR or --probs FILE")
    if args.json:
        from offrec.core.atomic import check_writable

        check_writable(args.json)  # before the work, not after it
    if args.repair is not None and args.probs is not None:
        raise InputError(
            "--repair drop changes the log's rows; --probs are aligned with them: "
            "use --policy, or write the probabilities for a repaired copy"
        )
    source = open_log(args.logs, check_rows=args.repair is None)
    if _is_slate_log(args.logs):
        return _run_slates(args, source)
    logs: Any = source.path
    if args.repair is not None:
        from offrec.logs import read_logs

        logs = read_logs(args.logs, repair=args.repair)  # the reader's rule and warning
    name, target = _target_from_args(
        args, source, source.n_rows, source.n_actions or 0, source.context_dim
    )
    estimators = (
        [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    )
    with progress(args, source.n_rows, "evaluate") as bar:
        done = [0]

        def tick(rows: int) -> None:  # one bar per pass over the log
            bar.update(rows - done[0] if rows >= done[0] else rows)
            done[0] = rows

        result = evaluate(
            logs,
            {name: target},
            estimators=estimators,
            reward_model=_reward_model(args, source),
            interval=None if args.interval == "none" else args.interval,
            n_bootstrap=args.n_bootstrap,
            seed=args.seed,
            mode=args.mode,
            engine=args.engine,
            batch_size=args.batch_size,
            workers=args.workers,
            ray_address=args.ray_address,
            fit_rows=args.fit_rows,
            progress=tick,
            strict=args.strict,
        )
    table = result.table
    shown = table.drop(columns=["warnings"]).assign(
        recommended=(table["estimator"] == result.recommended).map({True: "*", False: ""})
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for est, reason in result.skipped.items():
        print(f"skipped {est}: {reason}")
    print(f"recommended estimator for this {result.mode} log: {result.recommended}")
    for w in result.warnings():
        print(f"WARNING: {w}", file=sys.stderr)
    if args.json:
        from offrec.core.atomic import atomic_write_text

        out = {
            "mode": result.mode,
            "recommended": result.recommended,
            "estimates": json.loads(table.to_json(orient="records")),
            "warnings": result.warnings(),
            "skipped": [{"estimator": k, "reason": v} for k, v in result.skipped.items()],
        }
        atomic_write_text(args.json, json.dumps(out, indent=2))
    return 0


def _is_slate_log(path: Path) -> bool:
    from offrec.logs.reader import read_metadata

    return isinstance(read_metadata(path).get("slate"), dict)


def _run_slates(args: argparse.Namespace, source: Any) -> int:
    """A slate log: the slate estimators (:mod:`offrec.ope.slate`) on a ranker over --policy."""
    import json

    from offrec.logs.reader import read_metadata
    from offrec.models import load_model
    from offrec.ope.slate_log import evaluate_slates
    from offrec.sim.slate import PlackettLuce, TopKEpsilon

    if args.policy is None:
        raise InputError(
            "a slate log is evaluated with --policy MODEL_DIR (--probs holds one item per row)"
        )
    size = int(read_metadata(args.logs)["slate"]["slate_size"])
    base = load_model(args.policy, n_actions=source.n_actions, obs_dim=source.context_dim)
    ranker: Any = (
        PlackettLuce(base, size, temperature=args.slate_temperature)
        if args.slate_ranker == "pl"
        else TopKEpsilon(base, size, epsilon=args.slate_epsilon)
    )
    estimators = (
        [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    )
    method = "normal" if args.interval == "none" else args.interval
    results = evaluate_slates(
        args.logs,
        ranker,
        estimators,
        method=method,
        n_bootstrap=args.n_bootstrap,
        seed=args.seed,
        batch_rows=args.batch_size,
    )
    name = Path(args.policy).name
    print(
        f"{'policy':<12} {'estimator':<11} {'value':>8} {'low':>8} {'high':>8} {'ess':>9} {'max_weight':>11}"
    )
    for r in results:
        print(
            f"{name:<12} {r.estimator:<11} {r.value:8.4g} {r.low:8.4g} {r.high:8.4g} {r.ess:9.4g} {r.max_weight:11.4g}"
        )
    print(f"slate log: {results[0].n_slates:,} slates of {size}; value = expected clicks per slate")
    for r in results:
        for w in r.warnings:
            print(f"WARNING: {w}", file=sys.stderr)
    if args.json:
        from dataclasses import asdict

        from offrec.core.atomic import atomic_write_text

        out = {"mode": "slate", "estimates": [asdict(r) for r in results]}
        atomic_write_text(args.json, json.dumps(out, indent=2))
    return 0
