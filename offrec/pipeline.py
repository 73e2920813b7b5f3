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
        curves=curves, paired=paired,
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
    targets = {**policies, **{r.name: _reference(r, cfg, world) for r in cfg.references}}
    ope, ope_result = _ope_stage(cfg, eval_data, targets, say)
    truth = _truth_stage(cfg, world, targets, say)

    report = _report_stage(cfg, out, ope, ope_result, truth, data, train_data, eval_data, curves)
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
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    table = report.table
    seconds = time.perf_counter() - start
    say(f"report written to {out / 'report.html'} ({seconds:.1f}s)")
    return PipelineResult(out, metrics, table, {"logs": logs_hit, **hits}, seconds)
