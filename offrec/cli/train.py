"""``offrec train bandit|rl|online``: train a policy offline from a log, or online in the world."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offrec.cli._common import (
    LazyChoices,
    Parser,
    add_global_options,
    parse_head,
    parse_params,
    progress,
    world_from_args,
    world_options,
)

if TYPE_CHECKING:
    from offrec.training import LearnerSpec, TrainSummary

# names from the registries of the packages that own them, loaded on first use
OFFLINE_TRAINABLE = LazyChoices("offrec.training", "OFFLINE_TRAINABLE")
RL_ALGOS = LazyChoices("offrec.rl.algos", "ALGOS.names")


def canonical_learner(name: str) -> str:
    """``--learner`` / ``--algo``: an old spelling (``double_dqn``, ``thompson``) becomes
    the registered name, with a ``DeprecationWarning``; ``choices=`` then checks it."""
    from offrec.rl.algos import learner_name

    return learner_name(name)


def add_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train", help="train a policy: offline from logs (bandit, rl) or online in the world"
    )
    add_global_options(t)
    tsub = t.add_subparsers(dest="train_kind", metavar="KIND", parser_class=Parser, required=True)
    tb = tsub.add_parser(
        "bandit",
        help="fit a bandit / offline learner on a log",
        description="Fit a learner on logged rows and save it as a model folder.",
    )
    tb.add_argument("logs", type=Path, help="log directory")
    tb.add_argument(
        "--learner",
        required=True,
        type=canonical_learner,
        choices=OFFLINE_TRAINABLE,
        metavar="LEARNER",
        help="bandit or offline learner: %(choices)s",
    )
    tb.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="learner parameter (repeatable; a wrong key lists the valid ones)",
    )
    tb.add_argument(
        "--head", default="greedy", help="greedy | epsilon_greedy:EPS | softmax:TEMPERATURE"
    )
    tb.add_argument("--out", type=Path, required=True, help="model folder to write")
    tb.add_argument("--seed", type=int, default=0, help="seed of the learner's randomness")
    tb.add_argument(
        "--repair",
        choices=["drop"],
        help="drop duplicated log rows instead of failing (reads the log into memory)",
    )
    tb.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="linucb/lints sum statistics over every batch on this engine",
    )
    tb.add_argument("--overwrite", action="store_true", help="replace a model folder offrec wrote")
    add_global_options(tb)
    tb.set_defaults(func=run_bandit)

    tr = tsub.add_parser("rl", help="train DQN / CQL / ... offline on a session log (d3rlpy)")
    tr.add_argument("logs", type=Path, help="log directory")
    tr.add_argument(
        "--algo",
        default="cql",
        type=canonical_learner,
        choices=RL_ALGOS,
        metavar="ALGO",
        help="offline RL algorithm: %(choices)s",
    )
    tr.add_argument("--n-steps", type=int, help="gradient steps (RLConfig's default when unset)")
    tr.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="the algorithm's config field (DQNConfig, CQLConfig, ...) or a RuntimeConfig knob "
        "(repeatable; a wrong key lists the valid ones)",
    )
    tr.add_argument(
        "--eval",
        action="store_true",
        help="measure the true online value during training and print the last one",
    )
    tr.add_argument("--out", type=Path, required=True, help="model folder to write")
    tr.add_argument("--seed", type=int, default=0, help="seed of training")
    tr.add_argument(
        "--repair", choices=["drop"], help="drop duplicated log rows instead of failing"
    )
    tr.add_argument("--overwrite", action="store_true", help="replace a model folder offrec wrote")
    add_global_options(tr)
    tr.set_defaults(func=run_rl)

    to = tsub.add_parser(
        "online",
        help="let bandit learners or SB3 PPO/DQN learn by interacting with the world",
        description="Train learners online in the simulated world (bandit learners, or PPO / DQN "
        "from stable-baselines3: pip install 'offrec[sb3]') and measure the true value of the "
        "policy each would deploy as it learns. Writes curves.json, value_curves.png (all "
        "learners against interactions, on one figure), learning_curves.png (bandits' windowed "
        "CTR and regret) and the trained models.",
    )
    to.add_argument(
        "--learner",
        action="append",
        required=True,
        metavar="LEARNER",
        help="learner (repeatable): a bandit learner (see `offrec train bandit --help`), "
        "ppo or dqn",
    )
    to.add_argument(
        "--param",
        action="append",
        metavar="[LEARNER.]KEY=VALUE",
        help="learner parameter (repeatable); 'ppo.n_envs=4' sets it for one learner",
    )
    to.add_argument(
        "--n-steps", type=int, default=100_000, help="interactions (decisions) per learner"
    )
    to.add_argument("--batch-size", type=int, default=1000, help="bandits: decisions per update")
    to.add_argument(
        "--eval-every",
        type=int,
        help="interactions between measurements of the true value (n-steps/10 when unset)",
    )
    to.add_argument(
        "--eval-sessions",
        type=int,
        default=2000,
        help="simulated sessions per measurement in session mode",
    )
    to.add_argument(
        "--out", type=Path, required=True, help="folder for curves.json, the plots and models/"
    )
    to.add_argument("--seed", type=int, default=0, help="seed of the sessions and learners")
    to.add_argument("--overwrite", action="store_true", help="replace a folder offrec wrote")
    world_options(to)
    add_global_options(to)
    to.set_defaults(func=run_online)


def _train(args: argparse.Namespace, spec: LearnerSpec, title: str, **kw: Any) -> TrainSummary:
    """:func:`offrec.training.train` on ``args.logs`` into ``args.out``, with a progress bar
    over its running count (rows read, gradient steps done)."""
    from offrec.training import train

    with progress(args, None, title) as bar:
        done = [0]

        def tick(count: int) -> None:
            bar.update(count - done[0] if count >= done[0] else count)
            done[0] = count

        return train(
            spec,
            args.logs,
            args.out,
            seed=args.seed,
            repair=args.repair,
            overwrite=args.overwrite,
            progress=tick,
            **kw,
        ).summary


def run_bandit(args: argparse.Namespace) -> int:
    from offrec.training import LearnerSpec

    spec = LearnerSpec(args.learner, parse_params(args.param), parse_head(args.head).to_dict())
    res = _train(args, spec, "train", engine=args.engine)
    print(f"trained {args.learner} on {res.n_rows:,} rows; saved to {args.out}")
    return 0


def run_rl(args: argparse.Namespace) -> int:
    from offrec.training import LearnerSpec

    params = parse_params(args.param)
    if args.n_steps is not None:
        params["n_steps"] = args.n_steps
    res = _train(args, LearnerSpec(args.algo, params), f"train {args.algo}", evaluate=args.eval)
    print(
        f"trained {args.algo} for {res.n_steps:,} steps ({res.steps_per_second:,.0f} steps/s); "
        f"saved to {args.out}"
    )
    if res.eval_value is not None:
        print(
            f"true online value of the trained policy: {res.eval_value:.4f} ± "
            f"{1.96 * res.eval_stderr:.4f} {res.value_label} (95%, last evaluation)"
        )
    return 0


def run_online(args: argparse.Namespace) -> int:
    from offrec.cli.run import say
    from offrec.training import run_online_study

    world = world_from_args(args)
    tell = say(args)
    runs, refs = run_online_study(
        world,
        args.learner,
        args.out,
        params=parse_params(args.param),
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_sessions=args.eval_sessions,
        overwrite=args.overwrite,
        progress=lambda name, t: tell(f"{name}: {t:,} interactions"),
    )
    for name, run in runs.items():
        v, se = run.curve.final
        print(
            f"{name}: true {run.curve.metric} {v:.4f} ± {se:.4f} after "
            f"{run.curve.interactions[-1]:,} interactions ({run.curve.seconds:.1f}s)"
        )
    print(", ".join(f"{k} {v:.4f}" for k, v in refs.items()))
    print(f"curves.json, value_curves.png and models/ written to {args.out}")
    return 0
