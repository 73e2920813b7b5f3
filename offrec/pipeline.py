"""Run a pipeline end to end: logs -> train -> off-policy estimates -> ground truth -> report.

Each stage's output is cached under ``<out>/cache`` by a hash of the configuration it
depends on, so re-running after changing only the estimators reuses the logs and the
trained models. Every file is published atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offrec.core.atomic import atomic_write_text
from offrec.core.errors import InputError
from offrec.core.policy import Head
from offrec.logs import collect, read_logs
from offrec.logs.data import LoggedData
from offrec.pipeline_config import PipelineConfig, ReferenceSpec
from offrec.policies.loggers import LOGGER_KINDS, logging_policy
from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle, World
from offrec.training import train_policy

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "policy"


@dataclass
class PipelineResult:
    out: Path
    metrics: dict[str, Any]
    table: pd.DataFrame
    cache_hits: dict[str, bool]
    seconds: float


def split_sessions(data: LoggedData, holdout: float, seed: int) -> tuple[LoggedData, LoggedData]:
    """Split a log by session: ``(train, eval)`` with about ``holdout`` of the sessions in
    ``eval`` (chosen at random with ``seed``). ``holdout == 0`` returns the log twice."""
    if holdout == 0:
        return data, data
    sessions = np.unique(data.session_id)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    held = sessions[rng.random(sessions.size) < holdout]
    in_eval = np.isin(data.session_id, held)
    if in_eval.all() or not in_eval.any():
        raise InputError(f"holdout={holdout} leaves no session for training or for evaluation")
    return data.subset(~in_eval), data.subset(in_eval)


# ------------------------------------------------------------------------------ stages
def _logs_stage(
    cfg: PipelineConfig, world: World, cache: Path, say: Progress
) -> tuple[LoggedData, str, bool]:
    spec = asdict(cfg.logging)
    key = _key("logs", cfg.world.to_dict(), cfg.world_seed, spec, cfg.seed)
    path = cache / f"logs-{key}"
    hit = path.exists()
    if not hit:
        say(f"simulating logs ({cfg.logging.policy} logger)")
        collect(
            world, _logger(cfg, world), out=path, n_decisions=cfg.logging.n_decisions,
            n_sessions=cfg.logging.n_sessions, seed=cfg.seed,
        )  # fmt: skip
    else:
        say(f"logs: cached ({path.name})")
    return read_logs(path), key, hit


def _logger(cfg: PipelineConfig, world: World) -> Any:
    lg = cfg.logging
    kw: dict[str, Any] = {"support": None if lg.support is None else list(lg.support)}
    if lg.policy != "uniform":
        kw.update(noise=lg.noise, model_seed=lg.model_seed)
        kw.update({"beta": lg.beta} if lg.policy == "softmax" else {"epsilon": lg.epsilon})
    return logging_policy(world, lg.policy, **kw)


def _models_stage(
    cfg: PipelineConfig, data: LoggedData, logs_key: str, world: World, cache: Path, say: Progress
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    from offrec.models import load_model, save_model
    from offrec.recommend import write_world

    policies: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.policies:
        key = _key("model", logs_key, asdict(spec), cfg.seed)
        path = cache / f"model-{_slug(spec.name)}-{key}"
        curve_path = path / "training_curve.json"
        if path.exists():
            say(f"model '{spec.name}': cached")
            policies[spec.name] = load_model(
                path, n_actions=data.n_actions, obs_dim=data.context_dim
            )
            if spec.is_rl:
                policies[spec.name] = policies[spec.name].with_head(Head(**spec.head))
            if curve_path.is_file():
                curves[spec.name] = json.loads(curve_path.read_text())
            hits[spec.name] = True
            continue
        say(f"training '{spec.name}' ({spec.learner})")
        t = time.perf_counter()
        policy, curve = train_policy(spec, data, world, cfg.seed)
        log.info("trained %s in %.1fs", spec.name, time.perf_counter() - t)
        save_model(policy, path)
        write_world(path, world)
        if curve is not None:
            atomic_write_text(curve_path, json.dumps(curve))
            curves[spec.name] = curve
        policies[spec.name] = policy
        hits[spec.name] = False
    return policies, curves, hits


def _online_learners_stage(
    cfg: PipelineConfig, world: World, cache: Path, say: Progress
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """Learn each ``[[online_learners]]`` entry by interacting with ``world`` (cached).

    Returns policies, their :class:`~offrec.policies.online.ValueCurve` and cache hits.
    """
    if not cfg.online_learners:
        return {}, {}, {}
    from offrec.core.atomic import atomic_dir
    from offrec.models import load_model, save_model
    from offrec.policies.online import ValueCurve
    from offrec.rl.online_baseline import SB3Policy, learn_online, load_sb3_policy

    policies: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.online_learners:
        key = _key("online", cfg.world.to_dict(), cfg.world_seed, asdict(spec), cfg.seed)
        path = cache / f"online-{_slug(spec.name)}-{key}"
        hits[spec.name] = path.exists()
        if not hits[spec.name]:
            say(f"learning '{spec.name}' online ({spec.learner}, {spec.n_steps:,} interactions)")
            run = learn_online(
                world, spec.learner, spec.n_steps, params=spec.params, batch_size=spec.batch_size,
                seed=cfg.seed, eval_every=spec.eval_every, eval_sessions=spec.eval_sessions,
            )  # fmt: skip
            with atomic_dir(path) as tmp:
                (tmp / "value_curve.json").write_text(json.dumps(run.curve.to_dict()))
                if isinstance(run.policy, SB3Policy):
                    run.policy.save(tmp / "model.zip")
                else:
                    save_model(run.policy, tmp / "model")
        else:
            say(f"online learner '{spec.name}': cached")
        curves[spec.name] = ValueCurve.from_dict(
            json.loads((path / "value_curve.json").read_text())
        )
        if (path / "model.zip").is_file():
            policies[spec.name] = load_sb3_policy(path / "model.zip", world.n_items)
        else:
            policies[spec.name] = load_model(path / "model", n_actions=world.n_items,
                                             obs_dim=world.obs_dim)  # fmt: skip
    return policies, curves, hits


def _online_vs_offline(
    cfg: PipelineConfig,
    world: World,
    targets: dict[str, Any],
    online_curves: dict[str, Any],
    train_rows: int,
    plot_path: Path,
    say: Progress,
) -> tuple[pd.DataFrame, str, Path]:
    """What each approach costs in live interaction and what it earns: a table (CTR, clicks
    per session, session length, with standard errors), a note, and one learning-curve plot
    (online learners against their interactions; offline ones at the logged rows they used;
    references as lines)."""
    from offrec.policies.online import session_stats
    from offrec.report.training import plot_value_curves

    say("online vs offline: CTR, clicks per session and session length of every policy")
    offline = {p.name for p in cfg.policies}
    rows = []
    for name, policy in targets.items():
        st = session_stats(world, policy, n_sessions=cfg.online.n_sessions, seed=cfg.online.seed)
        if name in online_curves:
            approach, live, logged = "online", int(online_curves[name].interactions[-1]), 0
        elif name in offline:
            approach, live, logged = "offline", 0, train_rows
        else:
            approach, live, logged = "reference", 0, 0
        rows.append({"policy": name, "approach": approach, "live interactions": live,
                     "logged interactions": logged, **{k: v for k, v in st.items() if k != "exact"}})  # fmt: skip
    table = pd.DataFrame(rows)
    metric = "clicks_per_session" if cfg.world.horizon > 1 else "ctr"
    label = "clicks per session" if cfg.world.horizon > 1 else "CTR"
    refs = table[table["approach"] == "reference"]
    best_ref = refs.loc[refs[metric].idxmax()] if len(refs) else None
    lines = []
    for d in table[table["approach"] != "reference"].to_dict("records"):
        cost = (f"{d['live interactions']:,} live interactions with users"
                if d["approach"] == "online"
                else f"no live interaction: trained on {d['logged interactions']:,} logged decisions")  # fmt: skip
        share = (f", {d[metric] / best_ref[metric]:.0%} of the {best_ref['policy']}"
                 if best_ref is not None and best_ref[metric] > 0 else "")  # fmt: skip
        lines.append(f"- **{d['policy']}**: costs {cost}; earns "
                     f"{d[metric]:.3f} ± {d[metric + '_se']:.3f} {label}{share}.")  # fmt: skip
    note = (
        "Online learners pay for what they learn with live traffic (their curve shows the "
        "policy they would deploy after each number of interactions); offline learners use "
        "only the logger's decisions and pay nothing more before deployment. Values are the "
        f"simulator's truth over {cfg.online.n_sessions:,} sessions (± one standard error).\n\n"
        + "\n".join(lines)
    )
    points = {
        str(n): (float(train_rows), float(r[metric]), float(r[metric + "_se"]))
        for n, r in table.set_index("policy").iterrows()
        if r["approach"] == "offline"
    }
    references = {str(r["policy"]): float(r[metric]) for r in refs.to_dict("records")}
    path = plot_value_curves(
        online_curves, plot_path, points=points, references=references,
        title=f"{cfg.name}: true {label} against interactions with users",
    )  # fmt: skip
    return table, note, path


def _online_vs_offline_section(note: str, plot: Path, table: pd.DataFrame) -> tuple[str, Any]:
    """The report section of :func:`_online_vs_offline`: the note, the plot, the table."""
    from offrec.report.render import Plot, Table

    return ("Online vs offline: what each approach costs and earns", [
        note,
        Plot(plot, "True value against interactions with users",
             "Online learners: the policy each would deploy after that many live interactions "
             "(band: ±2 standard errors). Offline learners: one point at the number of logged "
             "decisions they were trained on. Lines: the logger and the oracles."),
        Table(table, caption="True values from the simulator (± one standard error)."),
    ])  # fmt: skip


def _reference(spec: ReferenceSpec, cfg: PipelineConfig, world: World) -> Any:
    head = Head("epsilon_greedy", epsilon=spec.epsilon) if spec.epsilon > 0 else Head()
    if spec.policy == "logger":
        return _logger(cfg, world)
    if spec.policy in LOGGER_KINDS:
        kw: dict[str, Any] = {}
        if spec.policy != "uniform":
            kw = {"noise": spec.noise, "model_seed": cfg.logging.model_seed}
            kw.update(
                {"beta": spec.beta} if spec.policy == "softmax" else {"epsilon": spec.epsilon}
            )
        return logging_policy(world, spec.policy, **kw)
    if spec.policy == "best_item":
        return BestItemOracle(world, head)
    if spec.policy == "myopic":
        return MyopicOracle(world, head)
    return LookaheadOracle(world, head, gamma=spec.gamma)


def _ope_stage(
    cfg: PipelineConfig, data: LoggedData, targets: dict[str, Any], say: Progress
) -> tuple[pd.DataFrame, Any]:
    """Every estimable target x every estimator through the one OPE entry point: the
    table, and the :class:`~offrec.ope.OPEResult` (for paired comparisons in the report)."""
    from offrec.ope import evaluate
    from offrec.reward import RewardModel

    o = cfg.ope
    estimable = targets
    if cfg.world.horizon > 1:  # oracles need the hidden session state
        estimable = {n: p for n, p in targets.items() if not hasattr(p, "action_dist_state")}
        for name in set(targets) - set(estimable):
            log.info("skipping OPE of %s: an oracle needs the hidden session state", name)
    say(f"off-policy evaluation: {len(estimable)} policies x {len(o.estimators)} estimators")
    result = evaluate(
        data, estimable, estimators=list(o.estimators),
        reward_model=RewardModel(kind=o.reward_model, n_folds=o.n_folds, seed=cfg.seed),
        interval=o.interval, n_bootstrap=o.n_bootstrap, alpha=o.alpha, seed=cfg.seed,
        mode="session" if cfg.world.horizon > 1 else "bandit",
    )  # fmt: skip
    table = result.table
    table["recommended"] = table["estimator"] == result.recommended
    return table, result


def _truth_stage(
    cfg: PipelineConfig, world: World, targets: dict[str, Any], say: Progress
) -> dict[str, Any]:
    say("ground truth: running every policy online in the simulator")
    out = {}
    for name, policy in targets.items():
        v = world.true_value(policy, n_sessions=cfg.online.n_sessions, seed=cfg.online.seed)
        out[name] = v.to_dict()
    return out


def roles(cfg: PipelineConfig) -> dict[str, str]:
    """``{policy: role}``: trained policies are ``learned``; references are the ``logger``,
    ``oracle``s (best_item, myopic, lookahead: they know the true click model) or
    ``hand-made`` rules (uniform, softmax, epsilon_greedy)."""
    out = {p.name: "learned" for p in cfg.policies}
    out.update({o.name: "learned" for o in cfg.online_learners})
    for r in cfg.references:
        kind = {
            "logger": "logger",
            "best_item": "oracle",
            "myopic": "oracle",
            "lookahead": "oracle",
        }
        out[r.name] = kind.get(r.policy, "hand-made")
    return out


def _report_stage(
    cfg: PipelineConfig, out: Path, ope: pd.DataFrame, result: Any, truth: dict[str, Any],
    data: LoggedData, train_data: LoggedData, eval_data: LoggedData, curves: dict[str, Any],
    extra_sections: list[tuple[str, Any]] | None = None,
) -> Any:  # fmt: skip
    from offrec.report.build import ReportInput, build_report

    mode = "bandit" if cfg.world.horizon == 1 else "session"

    def paired(a: str, b: str, estimator: str) -> tuple[float, float, float]:
        iv = result.compare(a, b, estimator)
        return iv.value, iv.low, iv.high

    return build_report(out, ReportInput(
        name=cfg.name, description=cfg.description, mode=mode,
        value_label="CTR" if mode == "bandit" else "clicks per session", ope=ope, truth=truth,
        roles=roles(cfg), data=data, train_rows=train_data.n_rows, eval_rows=eval_data.n_rows,
        seed=cfg.seed, alpha=cfg.ope.alpha, interval=cfg.ope.interval, holdout=cfg.ope.holdout,
        curves=curves, paired=paired, extra_sections=tuple(extra_sections or ()),
    ))  # fmt: skip


# ------------------------------------------------------------------------------ runner
def run_pipeline(
    config: PipelineConfig | str | Path,
    out: str | Path | None = None,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
) -> PipelineResult:
    """Run ``config`` (a :class:`PipelineConfig` or a TOML path) and write its report to
    ``out`` (default ``runs/<name>``). ``seed`` overrides the pipeline's seed."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.from_file(config)
    if seed is not None:
        cfg = PipelineConfig(**{**cfg.__dict__, "seed": seed})
    out = Path(out) if out is not None else Path("runs") / _slug(cfg.name)
    say = progress or (lambda msg: log.info(msg))
    start = time.perf_counter()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pipeline.resolved.json", cfg.to_json())

    world = World(cfg.world, seed=cfg.world_seed)
    data, logs_key, logs_hit = _logs_stage(cfg, world, cache, say)
    train_data, eval_data = split_sessions(data, cfg.ope.holdout, seed=cfg.seed)
    split_key = _key(logs_key, cfg.ope.holdout, cfg.seed)
    policies, curves, hits = _models_stage(cfg, train_data, split_key, world, cache, say)
    online_policies, online_curves, online_hits = _online_learners_stage(cfg, world, cache, say)
    hits.update(online_hits)
    policies.update(online_policies)
    targets = {**policies, **{r.name: _reference(r, cfg, world) for r in cfg.references}}
    ope, ope_result = _ope_stage(cfg, eval_data, targets, say)
    truth = _truth_stage(cfg, world, targets, say)

    extra: list[tuple[str, Any]] = []
    comparison = None
    if online_curves:
        comparison, note, path = _online_vs_offline(
            cfg, world, targets, online_curves, train_data.n_rows, out / "plots" / "online_vs_offline.png", say
        )  # fmt: skip
        extra = [_online_vs_offline_section(note, path, comparison)]
    report = _report_stage(
        cfg, out, ope, ope_result, truth, data, train_data, eval_data, curves, extra
    )
    metrics = {
        "pipeline": cfg.name,
        "mode": "bandit" if cfg.world.horizon == 1 else "session",
        "value": "CTR" if cfg.world.horizon == 1 else "clicks per session",
        "seed": cfg.seed,
        "truth": truth,
        **report.metrics(),
        "training_curves": curves,
        "cache": {"logs": logs_hit, "models": hits},
    }
    if comparison is not None:
        metrics["online_learners"] = {k: c.to_dict() for k, c in online_curves.items()}
        metrics["online_vs_offline"] = comparison.to_dict("records")  # exact floats
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    table = report.table
    seconds = time.perf_counter() - start
    say(f"report written to {out / 'report.html'} ({seconds:.1f}s)")
    return PipelineResult(out, metrics, table, {"logs": logs_hit, **hits}, seconds)
