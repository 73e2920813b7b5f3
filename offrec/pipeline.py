"""Run a pipeline end to end: logs -> train -> off-policy estimates -> ground truth -> report.

This module only runs stages; each one calls the library that owns the job:

==============  ======================================================================
stage           owner
==============  ======================================================================
logs            :func:`offrec.logs.collect` with the ``[logging]`` policy
models          :func:`offrec.training.train` (``[[policies]]``, from the training split)
online          :func:`offrec.training.train` without a log (``[[online_learners]]``)
references      :func:`offrec.policies.references.make_reference` (``[[references]]``)
OPE             :func:`offrec.ope.evaluate` (on the held-out split)
truth           :meth:`offrec.sim.World.true_value`
report          :func:`offrec.ope.gate.decide` and :func:`offrec.report.build.build_report`
==============  ======================================================================

The logs, models and online stages are cached under ``<out>/cache`` by
:class:`offrec.core.cache.StageCache`, keyed by the configuration each depends on: re-running
after changing only the estimators reuses the logs and the trained models; ``fresh``
recomputes every cached stage. Every file is published atomically.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from offrec.core.atomic import atomic_write_text, owned_dir, record_in_manifest
from offrec.core.cache import StageCache, cache_key
from offrec.core.policy import BasePolicy, Head
from offrec.logs import collect, read_logs
from offrec.logs.data import LoggedData
from offrec.models import load_model
from offrec.pipeline_config import PipelineConfig
from offrec.report.learning_curves import online_vs_offline, online_vs_offline_section
from offrec.sim import World
from offrec.training import split_sessions, train

if TYPE_CHECKING:
    from offrec.ope import OPEResult
    from offrec.policies.online import ValueCurve

__all__ = ["PipelineResult", "ope_stage", "roles", "run_pipeline"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "policy"


@dataclass
class PipelineResult:
    out: Path
    metrics: dict[str, Any]
    table: pd.DataFrame
    cache_hits: dict[str, bool]
    seconds: float

    def text(self) -> str:
        """The main table, the selection line and where the report is (what ``offrec run`` prints)."""
        cols = ["policy", "estimator", "value", "low", "high", "truth", "rel_error"]
        table = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
        sel = ", ".join(
            f"{s['estimator']}: spearman {s['spearman']:.2f}" for s in self.metrics["selection"]
        )
        decision = self.metrics.get("decision") or {}
        headline = "\n".join(decision.get("sentences") or [])
        return (
            f"{table}\n\noff-policy selection: {sel}\n"
            + (f"\ndecision: {headline}\n" if headline else "")
            + f"report: {self.out / 'report.html'} (and report.md, metrics.json) in "
            f"{self.seconds:.0f}s"
        )


# ------------------------------------------------------------------------------ stages
def logs_stage(
    cfg: PipelineConfig, world: World, logger: BasePolicy, cache: StageCache, say: Progress
) -> tuple[LoggedData, str, bool]:
    """The log of ``logger`` (the ``[logging]`` policy) in ``world``: ``(data, cache key,
    served from the cache)``."""
    entry = cache.lookup(
        "logs", ["logs", cfg.world.to_dict(), cfg.world_seed, asdict(cfg.logging), cfg.seed], "logs"
    )
    if not entry.hit:
        say(f"simulating logs ({cfg.logging.policy} logger)")
        collect(
            world,
            logger,
            out=entry.path,
            n_decisions=cfg.logging.n_decisions,
            n_sessions=cfg.logging.n_sessions,
            seed=cfg.seed,
        )
        cache.seal(entry, "dataset")
    else:
        say(f"logs: cached ({entry.path.name})")
    return read_logs(entry.path), entry.key, entry.hit


def models_stage(
    cfg: PipelineConfig,
    data: LoggedData,
    data_key: str,
    world: World,
    cache: StageCache,
    say: Progress,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """Train every ``[[policies]]`` entry on ``data`` (:func:`offrec.training.train`; RL
    learners measure their true value in ``world`` at the end). Returns policies, RL
    training curves and cache hits by name."""
    policies: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.policies:
        entry = cache.lookup(
            f"model-{_slug(spec.name)}",
            ["model", data_key, asdict(spec), cfg.seed],
            f"model '{spec.name}'",
        )
        hits[spec.name] = entry.hit
        if entry.hit:
            say(f"model '{spec.name}': cached")
            policy = load_model(entry.path, n_actions=data.n_actions, context_dim=data.context_dim)
            policies[spec.name] = policy.with_head(Head(**spec.head)) if spec.is_rl else policy
            curve = _training_curve(entry.path)
            if curve is not None:
                curves[spec.name] = curve
            continue
        say(f"training '{spec.name}' ({spec.learner})")
        t = time.perf_counter()
        trained = train(spec, data, entry.path, world=world, seed=cfg.seed, evaluate=True)
        log.info("trained %s in %.1fs", spec.name, time.perf_counter() - t)
        cache.seal(entry, "model")
        policies[spec.name] = trained.policy
        if isinstance(trained.curve, dict):
            curves[spec.name] = trained.curve
    return policies, curves, hits


def _training_curve(folder: Path) -> dict[str, Any] | None:
    """The RL training curve saved in a model folder (``training.json``; caches made
    before :func:`offrec.training.train` saved models hold ``training_curve.json``)."""
    if (folder / "training.json").is_file():
        return dict(json.loads((folder / "training.json").read_text())["curve"])
    if (folder / "training_curve.json").is_file():
        return dict(json.loads((folder / "training_curve.json").read_text()))
    return None


def online_learners_stage(
    cfg: PipelineConfig, world: World, cache: StageCache, say: Progress
) -> tuple[dict[str, Any], dict[str, ValueCurve], dict[str, bool]]:
    """Learn each ``[[online_learners]]`` entry by interacting with ``world``
    (:func:`offrec.training.train` without a log). Returns policies, their
    :class:`~offrec.policies.online.ValueCurve` and cache hits by name."""
    from offrec.policies.online import ValueCurve

    policies: dict[str, Any] = {}
    curves: dict[str, ValueCurve] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.online_learners:
        entry = cache.lookup(
            f"online-{_slug(spec.name)}",
            ["online", cfg.world.to_dict(), cfg.world_seed, asdict(spec), cfg.seed],
            f"online learner '{spec.name}'",
        )
        hits[spec.name] = entry.hit
        if not entry.hit:
            say(f"learning '{spec.name}' online ({spec.learner}, {spec.n_steps:,} interactions)")
            policies[spec.name] = train(spec, None, entry.path, world=world, seed=cfg.seed).policy
            cache.seal(entry, "model")
        else:
            say(f"online learner '{spec.name}': cached")
            # caches made before train() saved online learners keep a bandit model in model/
            old = entry.path / "model"
            policies[spec.name] = load_model(
                old if old.is_dir() else entry.path,
                n_actions=world.n_actions,
                context_dim=world.context_dim,
            )
        curves[spec.name] = ValueCurve.from_dict(
            json.loads((entry.path / "value_curve.json").read_text())
        )
    return policies, curves, hits


def ope_stage(
    cfg: PipelineConfig,
    data: LoggedData,
    targets: dict[str, Any],
    say: Progress,
    world: World | None = None,
) -> tuple[pd.DataFrame, OPEResult]:
    """Every estimable target x every estimator through the one OPE entry point: the
    table, and the :class:`~offrec.ope.OPEResult` (for paired comparisons in the report).
    ``[ope] reward_model = "bilinear"``: :class:`~offrec.reward.bilinear.BilinearLogistic`
    on ``world``'s item table, cross-fitted on ``data`` by :func:`~offrec.ope.evaluate`."""
    from offrec.ope import evaluate
    from offrec.ope.embedding import pair_reward_model
    from offrec.reward import RewardModel
    from offrec.reward.bilinear import BILINEAR

    o = cfg.ope
    pair_model: Any = pair_reward_model(o.reward_model, targets)
    if o.reward_model == BILINEAR and world is not None:  # evaluate cross-fits it
        from offrec.policies.bandits.hybrid import catalog_features
        from offrec.reward.bilinear import BilinearLogistic

        pair_model = BilinearLogistic(catalog_features(world), n_folds=o.n_folds, seed=cfg.seed)
    estimable = targets
    if cfg.mode == "session":  # oracles need the hidden session state
        estimable = {n: p for n, p in targets.items() if not hasattr(p, "action_dist_state")}
        for name in set(targets) - set(estimable):
            log.info("skipping OPE of %s: an oracle needs the hidden session state", name)
    say(f"off-policy evaluation: {len(estimable)} policies x {len(o.estimators)} estimators")
    result = evaluate(
        data,
        estimable,
        estimators=list(o.estimators),
        reward_model=pair_model
        or RewardModel(kind=o.reward_model, n_folds=o.n_folds, seed=cfg.seed),
        interval=o.interval,
        n_bootstrap=o.n_bootstrap,
        alpha=o.alpha,
        seed=cfg.seed,
        mode=cfg.mode,
    )
    logger = [n for n, r in roles(cfg).items() if r == "logger" and n in estimable]
    if cfg.world.horizon > 1 and logger and o.interval is not None:  # issue 26's checks
        from offrec.ope.held_out import held_out_checks
        from offrec.ope.selection import rechoose

        say("held-out checks: each estimator against values the log reveals on-policy")
        checks = held_out_checks(
            data,
            estimable[logger[0]],
            list(o.estimators),
            seed=cfg.seed,
            alpha=o.alpha,
            interval=o.interval,
            mode="session",
        )
        result = rechoose(result, checks)
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
    """``{policy: role}`` (:attr:`PipelineConfig.roles`; kept for scripts)."""
    return cfg.roles


def _report_stage(
    cfg: PipelineConfig,
    out: Path,
    ope: pd.DataFrame,
    result: OPEResult,
    truth: dict[str, Any],
    data: LoggedData,
    train_data: LoggedData,
    eval_data: LoggedData,
    curves: dict[str, Any],
    extra_sections: list[tuple[str, Any]] | None = None,
) -> Any:
    from offrec.ope.gate import decide
    from offrec.report.build import ReportInput, build_report

    mode, value_label, roles = cfg.mode, cfg.value_label, cfg.roles

    def paired(a: str, b: str, estimator: str) -> tuple[float, float, float]:
        iv = result.compare(a, b, estimator)
        return iv.value, iv.low, iv.high

    decision = decide(
        ope,
        roles,
        mode=mode,
        alpha=cfg.ope.alpha,
        paired=paired,
        value_label=value_label,
        choice=result.choice,
    )
    return build_report(
        out,
        ReportInput(
            name=cfg.name,
            description=cfg.description,
            mode=mode,
            value_label=value_label,
            ope=ope,
            truth=truth,
            roles=roles,
            data=data,
            train_rows=train_data.n_rows,
            eval_rows=eval_data.n_rows,
            seed=cfg.seed,
            alpha=cfg.ope.alpha,
            interval=cfg.ope.interval,
            holdout=cfg.ope.holdout,
            curves=curves,
            paired=paired,
            extra_sections=tuple(extra_sections or ()),
            choice=result.choice,
            decision=decision,
        ),
    )


# ------------------------------------------------------------------------------ runner
def run_pipeline(
    config: PipelineConfig | str | Path,
    out: str | Path | None = None,
    *,
    seed: int | None = None,
    progress: Progress | None = None,
    fresh: bool = False,
) -> PipelineResult:
    """Run ``config`` (a :class:`PipelineConfig` or a TOML path) and write its report to
    ``out`` (default ``runs/<name>``). ``seed`` overrides the pipeline's seed.

    The whole configuration is validated before any stage runs (every name; all
    problems in one error). ``out`` is locked for the run and must be a folder offrec
    made (or new). Cached stages are served only when their manifest's checksums and
    configuration match; ``fresh`` recomputes every stage."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.from_file(config)
    cfg.validate()
    if seed is not None:
        cfg = PipelineConfig(**{**cfg.__dict__, "seed": seed})
    out = Path(out) if out is not None else Path("runs") / _slug(cfg.name)
    with owned_dir(out, kind="run"):
        return _run(cfg, out, progress, fresh)


def _run(cfg: PipelineConfig, out: Path, progress: Progress | None, fresh: bool) -> PipelineResult:
    say = progress or (lambda msg: log.info(msg))
    start = time.perf_counter()
    root = out / "cache"
    if not root.is_dir():
        root.mkdir()
        record_in_manifest(root)
    cache = StageCache(root, fresh=fresh)
    atomic_write_text(out / "pipeline.resolved.json", cfg.to_json())

    world = World(cfg.world, seed=cfg.world_seed)
    logger = cfg.logging.create(world)
    data, logs_key, logs_hit = logs_stage(cfg, world, logger, cache, say)
    train_data, eval_data = split_sessions(data, cfg.ope.holdout, seed=cfg.seed)
    split_key = cache_key(logs_key, cfg.ope.holdout, cfg.seed)
    policies, curves, hits = models_stage(cfg, train_data, split_key, world, cache, say)
    online_policies, online_curves, online_hits = online_learners_stage(cfg, world, cache, say)
    hits.update(online_hits)
    policies.update(online_policies)
    model_seed = cfg.logging.model_seed
    references = {r.name: r.create(world, logger, model_seed) for r in cfg.references}
    targets = {**policies, **references}
    ope, ope_result = ope_stage(cfg, eval_data, targets, say, world)
    truth = _truth_stage(cfg, world, targets, say)

    extra: list[tuple[str, Any]] = []
    comparison = None
    if online_curves:
        say("online vs offline: CTR, clicks per session and session length of every policy")
        comparison, note, path = online_vs_offline(
            world,
            targets,
            cfg.roles,
            online_curves,
            train_data.n_rows,
            out / "plots" / "online_vs_offline.png",
            mode=cfg.mode,
            n_sessions=cfg.online.n_sessions,
            seed=cfg.online.seed,
            title=cfg.name,
        )
        extra = [online_vs_offline_section(note, path, comparison)]
    report = _report_stage(
        cfg, out, ope, ope_result, truth, data, train_data, eval_data, curves, extra
    )
    metrics = {
        "pipeline": cfg.name,
        "mode": cfg.mode,
        "value": cfg.value_label,
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


_MOVED = {
    "split_sessions": "offrec.training",
    "train_and_save": "offrec.training",
    "train_rl_and_save": "offrec.training",
    "run_online_study": "offrec.training",
    "TrainSummary": "offrec.training",
    "world_of_log": "offrec.training",
    "world_of_metadata": "offrec.models",
    "check_network_size": "offrec.rl.q_learning",
}


def __getattr__(name: str) -> Any:
    """Names that moved out of the pipeline stay importable from here, with a warning."""
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"offrec.pipeline.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, 2
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'offrec.pipeline' has no attribute {name!r}")
