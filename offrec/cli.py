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

from offrec.core.errors import InputError, MissingInputError, OffrecError, OutputExistsError

USER_ERRORS = (OffrecError,)
"""What the CLI reports as one line (exit 2); anything else is a bug and keeps its traceback."""


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
        raise InputError(
            f"--support must be a comma-separated list of item indices; got {text!r}"
        ) from None
    bad = [i for i in items if not 0 <= i < n_items]
    if bad or not items:
        raise InputError(f"--support items must be in [0, {n_items}); got {text!r}")
    return items


def cmd_simulate(args: argparse.Namespace) -> int:
    from offrec.logs import collect
    from offrec.logs.writer import expected_rows
    from offrec.policies.loggers import logging_policy

    if (args.n_sessions is None) == (args.n_decisions is None):
        raise InputError("give exactly one of --n-decisions or --n-sessions")
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


# -- run -----------------------------------------------------------------------------------
def _say(args: argparse.Namespace) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[offrec] {msg}", file=sys.stderr, flush=True)

    return say


def cmd_run(args: argparse.Namespace) -> int:
    from offrec.pipeline import run_pipeline

    result = run_pipeline(args.file, args.out, seed=args.seed, progress=_say(args))
    cols = ["policy", "estimator", "value", "low", "high", "truth", "rel_error"]
    print(result.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    sel = ", ".join(
        f"{s['estimator']}: spearman {s['spearman']:.2f}" for s in result.metrics["selection"]
    )
    print(f"\noff-policy selection: {sel}")
    print(
        f"report: {result.out / 'report.html'} (and report.md, metrics.json) in {result.seconds:.0f}s"
    )
    return 0


# -- train ---------------------------------------------------------------------------------
def _parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=0.5", "n_steps=100"]`` -> {"alpha": 0.5, "n_steps": 100} (JSON values, else strings)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param must look like key=value; got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _parse_head(text: str) -> Any:
    """``greedy`` | ``epsilon_greedy:0.1`` | ``softmax:0.5`` (temperature)."""
    from offrec.core.policy import Head

    kind, _, arg = text.partition(":")
    try:
        if kind == "epsilon_greedy":
            return Head(kind, epsilon=float(arg or 0.1))
        if kind == "softmax":
            return Head(kind, temperature=float(arg or 1.0))
        return Head(kind)
    except ValueError as exc:
        raise InputError(f"--head {text!r}: {exc}") from None


def _world_of_log(data: Any) -> Any:
    from offrec.sim import World, WorldConfig

    cfg = data.metadata.get("world_config")
    if cfg is None:
        return None
    return World(WorldConfig.from_dict(cfg), seed=data.metadata.get("world_seed") or 0)


def cmd_train_bandit(args: argparse.Namespace) -> int:
    from offrec.logs.scan import open_log
    from offrec.models import save_model
    from offrec.pipeline_config import PolicySpec
    from offrec.recommend import write_world
    from offrec.training import train_policy

    data = open_log(args.logs)
    head = _parse_head(args.head)
    spec = PolicySpec(
        name=args.learner,
        learner=args.learner,
        params=_parse_params(args.param),
        head=head.to_dict(),
    )
    if spec.is_rl:
        raise InputError(f"--learner {args.learner!r} is an RL algorithm; use `offrec train rl`")
    world = _world_of_log(data)
    with _progress(args, data.n_rows, "train") as bar:
        done = [0]

        def tick(rows: int) -> None:
            bar.update(rows - done[0] if rows >= done[0] else rows)
            done[0] = rows

        policy, _ = train_policy(spec, data, world, args.seed, engine=args.engine, progress=tick)
    save_model(policy, args.out, overwrite=args.overwrite)
    if world is not None:
        write_world(args.out, world)
    print(f"trained {args.learner} on {data.n_rows:,} rows; saved to {args.out}")
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from offrec.logs import read_logs
    from offrec.recommend import write_world
    from offrec.rl.config import RLConfig
    from offrec.rl.train import train_rl

    data = read_logs(args.logs)
    cfg = RLConfig.from_dict({"seed": args.seed, **_parse_params(args.param), "algo": args.algo,
                              **({"n_steps": args.n_steps} if args.n_steps else {})})  # fmt: skip
    world = _world_of_log(data) if args.eval else None
    with _progress(args, cfg.n_steps, f"train {args.algo}") as bar:
        done = [0]

        def tick(step: int) -> None:
            bar.update(step - done[0])
            done[0] = step

        result = train_rl(data, cfg, world=world, progress=tick)
    from offrec.report.training import plot_training_curve

    # weights, config, training curve (data + PNG)
    result.save(args.out, overwrite=args.overwrite, plot=plot_training_curve)
    w = _world_of_log(data)
    if w is not None:
        write_world(args.out, w)
    print(
        f"trained {args.algo} for {cfg.n_steps:,} steps ({result.steps_per_second:,.0f} steps/s); saved to {args.out}"
    )
    return 0


def cmd_train_online(args: argparse.Namespace) -> int:
    from offrec.report.training import save_online_runs
    from offrec.rl.online_baseline import compare_online, online_references

    if args.out.exists() and not args.overwrite:  # fail before training, not after
        raise OutputExistsError(f"output {args.out} already exists; pass --overwrite to replace it")
    world = _world_from_args(args)
    shared: dict[str, Any] = {}  # --param KEY=VALUE: every learner; NAME.KEY=VALUE: one learner
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in _parse_params(args.param).items():
        name, dot, field = key.rpartition(".")
        (scoped.setdefault(name, {}) if dot else shared)[field] = value
    params = {n: {**shared, **scoped.pop(n, {})} for n in args.learner}
    if scoped:
        raise InputError(
            f"--param names {sorted(scoped)}, which are not among the --learner values"
        )
    say = _say(args)
    runs = compare_online(  # without SB3, PPO/DQN raise MissingDependencyError: one line, exit 2
        world, args.learner, args.n_steps, params=params, batch_size=args.batch_size,
        seed=args.seed, eval_every=args.eval_every, eval_sessions=args.eval_sessions,
        progress=lambda name, t: say(f"{name}: {t:,} interactions"),
    )  # fmt: skip
    refs = online_references(world, n_sessions=args.eval_sessions)
    save_online_runs(runs, args.out, references=refs, overwrite=args.overwrite)
    for name, run in runs.items():
        v, se = run.curve.final
        print(f"{name}: true {run.curve.metric} {v:.4f} ± {se:.4f} after "
              f"{run.curve.interactions[-1]:,} interactions ({run.curve.seconds:.1f}s)")  # fmt: skip
    print(", ".join(f"{k} {v:.4f}" for k, v in refs.items()))
    print(f"curves.json, value_curves.png and models/ written to {args.out}")
    return 0


# -- evaluate ------------------------------------------------------------------------------
def _target_from_args(
    args: argparse.Namespace, n_rows: int, n_actions: int, obs_dim: int
) -> tuple[str, Any]:
    import numpy as np

    if args.policy:
        from offrec.models import load_model

        return Path(args.policy).name, load_model(args.policy, n_actions=n_actions, obs_dim=obs_dim)
    from offrec.ope import FixedProbs

    path = Path(args.probs)
    if not path.is_file():
        raise MissingInputError(f"no such file: {path}")
    if path.suffix == ".npy":
        probs = np.load(path, allow_pickle=False, mmap_mode="r")  # streamed: rows read per batch
    else:
        import pyarrow.parquet as pq

        probs = np.asarray(pq.read_table(path).to_pandas().to_numpy(), dtype=np.float64)
    if probs.shape != (n_rows, n_actions):
        raise InputError(
            f"--probs must have one row per log row and one column per action, "
            f"shape ({n_rows}, {n_actions}); got {probs.shape}"
        )
    return path.stem, FixedProbs(probs)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from offrec.logs.scan import open_log
    from offrec.ope import evaluate
    from offrec.reward import RewardModel

    if (args.policy is None) == (args.probs is None):
        raise InputError("give exactly one of --policy MODEL_DIR or --probs FILE")
    source = open_log(args.logs)
    name, target = _target_from_args(args, source.n_rows, source.n_actions or 0, source.context_dim)
    estimators = (
        [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    )
    with _progress(args, source.n_rows, "evaluate") as bar:
        done = [0]

        def tick(rows: int) -> None:  # one bar per pass over the log
            bar.update(rows - done[0] if rows >= done[0] else rows)
            done[0] = rows

        result = evaluate(
            source.path, {name: target}, estimators=estimators,
            reward_model=RewardModel(kind=args.reward_model, seed=args.seed),
            interval=None if args.interval == "none" else args.interval,
            n_bootstrap=args.n_bootstrap, seed=args.seed, mode=args.mode, engine=args.engine,
            batch_size=args.batch_size, workers=args.workers, ray_address=args.ray_address,
            fit_rows=args.fit_rows, progress=tick,
        )  # fmt: skip
    table = result.table
    shown = table.drop(columns=["warnings"]).assign(
        recommended=(table["estimator"] == result.recommended).map({True: "*", False: ""})
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"recommended estimator for this {result.mode} log: {result.recommended}")
    for w in result.warnings():
        print(f"WARNING: {w}", file=sys.stderr)
    if args.json:
        from offrec.core.atomic import atomic_write_text

        out = {
            "mode": result.mode, "recommended": result.recommended,
            "estimates": json.loads(table.to_json(orient="records")),
            "warnings": result.warnings(),
        }  # fmt: skip
        atomic_write_text(args.json, json.dumps(out, indent=2))
    return 0


# -- ope-study -----------------------------------------------------------------------------
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


def cmd_ope_study(args: argparse.Namespace) -> int:
    from offrec.core.atomic import atomic_dir
    from offrec.ope.evaluation import evaluate_estimators
    from offrec.policies.loggers import logging_policy

    world = _world_from_args(args)
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
    with _progress(args, args.seeds, "seeds") as bar:
        ev = evaluate_estimators(world, logger, targets, estimators=estimators, n_rows=args.n_rows,
                                 seeds=range(args.seeds), interval=args.interval,
                                 n_bootstrap=args.n_bootstrap, progress=lambda k: bar.update(1))  # fmt: skip
    print(ev.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out is not None:
        with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
            ev.runs.to_csv(tmp / "runs.csv", index=False)
            ev.summary.to_csv(tmp / "summary.csv", index=False)
            ev.plot(tmp / "estimators.png")
        print(f"runs.csv, summary.csv and estimators.png written to {args.out}")
    return 0


# -- import --------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    from offrec.logs.importers import ColumnMap, import_logs, import_obd

    if args.flavour == "obd":
        res = import_obd(args.src, args.out, item_context_csv=args.item_context, categorical=args.categorical,
                         repair=args.repair, overwrite=args.overwrite)  # fmt: skip
    else:
        cmap = ColumnMap(
            action=args.action, reward=args.reward, pscore=args.pscore, session=args.session, step=args.step,
            position=args.position, user=args.user,
            context=tuple(c for c in args.context.split(",") if c) if args.context else None,
            context_prefix=args.context_prefix, categorical=args.categorical,
        )  # fmt: skip
        res = import_logs(args.src, args.out, cmap, repair=args.repair, claimed_policy=args.claimed_policy,
                          overwrite=args.overwrite)  # fmt: skip
    d = res.data
    dropped = res.n_source_rows - d.n_rows
    print(f"imported {d.n_rows:,} rows ({d.n_actions} actions, context width {d.context_dim}, "
          f"{d.n_positions} position(s)) to {args.out}" + (f"; dropped {dropped:,} problem rows" if dropped else ""))  # fmt: skip
    return 0


# -- recommend -----------------------------------------------------------------------------
def cmd_recommend(args: argparse.Namespace) -> int:
    from offrec.models import load_model
    from offrec.recommend import read_world, recommend

    custom = args.world or any(
        getattr(args, k) is not None for k in ("n_items", "n_topics", "n_users", "horizon")
    )
    world = _world_from_args(args) if custom else read_world(args.model)
    policy = load_model(args.model, n_actions=world.n_items, obs_dim=world.obs_dim)
    tables = recommend(policy, world, args.profile, k=args.k, steps=args.steps)
    for t, table in enumerate(tables):
        title = (
            "start of the session"
            if t == 0
            else f"after {t} step(s) showing the top item (no click)"
        )
        print(f"\n{title}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _world_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", type=Path, help="world config file (.json or .toml)")
    p.add_argument("--n-items", type=int, help="override the world's number of items")
    p.add_argument("--n-topics", type=int, help="override the world's number of topics")
    p.add_argument("--n-users", type=int, help="override the world's user population size")
    p.add_argument("--horizon", type=int, help="steps per session (1 = bandit mode)")
    p.add_argument("--world-seed", type=int, default=0, help="seed of items and users (default 0)")


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # choices come from the registries of the packages that own the names
    from offrec.policies.loggers import LOGGER_KINDS
    from offrec.policies.registry import BANDIT_LEARNERS, LEARNERS
    from offrec.reward import KINDS as REWARD_MODEL_KINDS
    from offrec.rl.algos import ALGOS

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
    s.add_argument("--policy", default="softmax", choices=LOGGER_KINDS,
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
    _world_options(s)
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

    r = sub.add_parser("run", help="run a pipeline file end to end (logs, training, OPE, truth, report)",
                       description="Run a pipeline (TOML): simulate logs, train policies, estimate their "
                       "value off-policy, run them online for the truth, and write a report.")  # fmt: skip
    r.add_argument("file", type=Path, help="pipeline file, e.g. pipelines/quickstart.toml")
    r.add_argument("--out", type=Path, help="output folder (default runs/<pipeline name>)")
    r.add_argument("--seed", type=int, help="override the pipeline's seed")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser(
        "train", help="train a policy: offline from logs (bandit, rl) or online in the world"
    )
    tsub = t.add_subparsers(dest="train_kind", metavar="KIND", parser_class=_Parser, required=True)
    tb = tsub.add_parser("bandit", help="fit a bandit / offline learner on a log",
                         description="Fit a learner on logged rows and save it as a model folder.")  # fmt: skip
    tb.add_argument("logs", type=Path, help="log directory")
    tb.add_argument("--learner", required=True,
                    choices=LEARNERS.names)  # fmt: skip
    tb.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="learner parameter (repeatable)"
    )
    tb.add_argument(
        "--head", default="greedy", help="greedy | epsilon_greedy:EPS | softmax:TEMPERATURE"
    )
    tb.add_argument("--out", type=Path, required=True, help="model folder to write")
    tb.add_argument("--seed", type=int, default=0)
    tb.add_argument("--overwrite", action="store_true")
    tb.add_argument("--engine", default="local", choices=["local", "ray"],
                    help="linucb/lints sum statistics over every batch on this engine (default %(default)s)")  # fmt: skip
    tb.set_defaults(func=cmd_train_bandit)

    tr = tsub.add_parser("rl", help="train DQN / CQL / ... offline on a session log (d3rlpy)")
    tr.add_argument("logs", type=Path, help="log directory")
    tr.add_argument("--algo", default="cql", choices=ALGOS.names)
    tr.add_argument("--n-steps", type=int, help="gradient steps (default from RLConfig)")
    tr.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="RLConfig field (repeatable)"
    )
    tr.add_argument(
        "--eval", action="store_true", help="measure the true online value during training"
    )
    tr.add_argument("--out", type=Path, required=True, help="model folder to write")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--overwrite", action="store_true")
    tr.set_defaults(func=cmd_train_rl)

    to = tsub.add_parser(
        "online", help="let bandit learners or SB3 PPO/DQN learn by interacting with the world",
        description="Train learners online in the simulated world (bandit learners, or PPO / DQN "
        "from stable-baselines3: pip install 'offrec[sb3]') and measure the true value of the "
        "policy each would deploy as it learns. Writes curves.json, value_curves.png (all "
        "learners against interactions, on one figure), learning_curves.png (bandits' windowed "
        "CTR and regret) and the trained models.",
    )  # fmt: skip
    to.add_argument("--learner", action="append", required=True,
                    help=f"learner (repeatable): {', '.join(BANDIT_LEARNERS)}, ppo, dqn")  # fmt: skip
    to.add_argument("--param", action="append", metavar="[LEARNER.]KEY=VALUE",
                    help="learner parameter (repeatable); 'ppo.n_envs=4' sets it for one learner")  # fmt: skip
    to.add_argument("--n-steps", type=int, default=100_000,
                    help="interactions (decisions) per learner (default 100k)")  # fmt: skip
    to.add_argument(
        "--batch-size", type=int, default=1000, help="bandits: decisions per update (default 1000)"
    )
    to.add_argument("--eval-every", type=int,
                    help="interactions between measurements of the true value (default n-steps/10)")  # fmt: skip
    to.add_argument("--eval-sessions", type=int, default=2000,
                    help="simulated sessions per measurement in session mode (default 2000)")  # fmt: skip
    to.add_argument(
        "--out", type=Path, required=True, help="folder for curves.json, the plots and models/"
    )
    to.add_argument("--seed", type=int, default=0)
    to.add_argument("--overwrite", action="store_true")
    _world_options(to)
    to.set_defaults(func=cmd_train_online)

    e = sub.add_parser("evaluate", help="estimate a policy's value from a log (off-policy)",
                       description="Estimate a target policy's value from a log. Bandit logs use the bandit "
                       "estimators, session logs the sequential ones (pdis, tis, wpdis, wtis, dr, fqe).")  # fmt: skip
    e.add_argument("logs", type=Path, help="log directory")
    e.add_argument("--policy", help="a saved model folder (offrec train ...)")
    e.add_argument(
        "--probs",
        help="target probabilities aligned with the log rows (.npy or .parquet, n x n_actions)",
    )
    e.add_argument(
        "--estimators", help="comma-separated (default ips,snips,dr; session logs pdis,wpdis,dr)"
    )
    e.add_argument("--reward-model", default="logistic", choices=REWARD_MODEL_KINDS,
                   help="reward model of the DM/DR-type bandit estimators (default %(default)s)")  # fmt: skip
    e.add_argument("--interval", default="bootstrap", choices=["bootstrap", "normal", "bernstein", "none"],
                   help="confidence interval method (default %(default)s)")  # fmt: skip
    e.add_argument(
        "--n-bootstrap", type=int, default=1000, help="bootstrap resamples (default %(default)s)"
    )
    e.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the bootstrap, folds and fitting sample (default %(default)s)",
    )
    e.add_argument("--mode", default="auto", choices=["auto", "bandit", "session"],
                   help="auto: session estimators on session logs; bandit: every decision as a bandit round (default %(default)s)")  # fmt: skip
    e.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: batches on this machine; ray: Ray Data, local or --ray-address (default %(default)s)")  # fmt: skip
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
        default=1,
        help="batches at once on the local engine (default %(default)s)",
    )
    e.add_argument(
        "--fit-rows",
        type=int,
        default=200_000,
        help="rows sampled to fit reward/Q models (default %(default)s)",
    )
    e.add_argument("--json", type=Path, help="also write the estimates and warnings as JSON")
    e.set_defaults(func=cmd_evaluate)

    st = sub.add_parser("ope-study", help="how accurate are the estimators? logs x seeds vs exact truth",
                        description="For several seeds: log a softmax logger in the world, estimate "
                        "target policies with each estimator, and compare with the truth (exact in "
                        "bandit mode, Monte-Carlo in session mode): relative error, bias, coverage.")  # fmt: skip
    st.add_argument("--target", action="append",
                    help="target policy (repeatable): myopic[:eps], best_item[:eps], softmax[:beta], "
                    "epsilon_greedy[:eps], uniform (default myopic:0.3 and softmax:1.0; session mode "
                    "softmax:1.0 and epsilon_greedy:0.3)")  # fmt: skip
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
    st.add_argument("--interval", default="bootstrap", choices=["bootstrap", "normal", "bernstein"])
    st.add_argument("--n-bootstrap", type=int, default=500)
    st.add_argument("--out", type=Path, help="folder for runs.csv, summary.csv and estimators.png")
    st.add_argument("--overwrite", action="store_true")
    _world_options(st)
    st.set_defaults(func=cmd_ope_study)

    i = sub.add_parser(
        "import", help="import your own logs (CSV/Parquet with a column map, or OBD)"
    )
    i.add_argument(
        "flavour",
        choices=["csv", "parquet", "obd"],
        help="generic file, or the Open Bandit Dataset",
    )
    i.add_argument("src", type=Path, help="source file (OBD: the campaign CSV)")
    i.add_argument("--out", type=Path, required=True, help="log directory to write")
    i.add_argument("--action", default="action", help="item column (any ids; mapped to 0..K-1)")
    i.add_argument("--reward", default="reward")
    i.add_argument("--pscore", default="pscore", help="propensity column")
    i.add_argument("--session", help="session column (default: each row its own session)")
    i.add_argument("--step", help="step column (default: order within the session)")
    i.add_argument("--position", help="position (slot) column")
    i.add_argument("--user", help="user column")
    i.add_argument("--context", help="comma-separated context columns")
    i.add_argument("--context-prefix", help="context = every column starting with this")
    i.add_argument(
        "--categorical", default="onehot", choices=["onehot", "hash"], help="text context columns"
    )
    i.add_argument(
        "--claimed-policy", choices=["uniform"], help="check propensities against this logger"
    )
    i.add_argument(
        "--repair", choices=["drop"], help="drop problem rows instead of failing (reported)"
    )
    i.add_argument("--item-context", type=Path, help="OBD item_context.csv")
    i.add_argument("--overwrite", action="store_true")
    i.set_defaults(func=cmd_import)

    rc = sub.add_parser(
        "recommend", help="the demo: top-k items for a user profile from a trained model"
    )
    rc.add_argument("model", type=Path, help="model folder")
    rc.add_argument(
        "--profile", required=True, help='topic preferences, e.g. "sports=0.9,news=0.1"'
    )
    rc.add_argument("--k", type=int, default=5, help="items to show (default 5)")
    rc.add_argument(
        "--steps", type=int, default=3, help="session mode: simulated steps to show (default 3)"
    )
    _world_options(rc)
    rc.set_defaults(func=cmd_recommend)
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
