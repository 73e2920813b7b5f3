r"""The slate pipeline (``pipelines/slate_ope.toml``, ``offrec run``): slate estimators
against the truth under each click model, and the gate's decision for a learned ranker.

For each click model of ``[slate] click_models``: log ``n_slates`` slates of a
Plackett-Luce logger over the softmax production model (``logger_beta``)
(:func:`offrec.logs.slate.collect_slates`); estimate a Plackett-Luce target
(``target_beta``) with every slate estimator the logger admits
(:func:`offrec.ope.slate_log.evaluate_slates`) and compare each with the target's true
value (:meth:`offrec.sim.slate.SlateWorld.true_value`: exact, or Monte-Carlo with its
standard error); train ``learner`` on the log (:func:`offrec.training.train_policy`, as
``offrec train bandit`` does) and let the one gate (:func:`offrec.ope.slate_decision.slate_decision`)
decide between its top-``K`` ranker (with ``epsilon`` exploration) and the logger, then
give both rankers' true values. The report states, from the numbers, whether each
estimator's interval holds the truth, so the point of the study reads off it: IIPS is
right under independent and position-based clicks and wrong under cascade, RIPS right
under all three, SIPS unbiased with the widest intervals.

The file::

    name = "slate_ope"
    seed = 0
    [world]
    n_items = 20
    n_users = 500
    [slate]
    size = 4
    n_slates = 20000
    click_models = ["independent", "pbm", "cascade"]
    logger_beta = 0.5
    target_beta = 1.0
    learner = "reward-model"
    epsilon = 0.1
    n_bootstrap = 300
"""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError
from offrec.core.validation import check_scalar

SLATE_KEYS = (
    "size",
    "n_slates",
    "click_models",
    "logger_beta",
    "target_beta",
    "learner",
    "epsilon",
    "n_bootstrap",
)
WORLD_KEYS = ("n_items", "n_users", "seed")


@dataclass(frozen=True)
class SlatePipelineConfig:
    """A slate pipeline file (module docstring); every field checked on load."""

    name: str = "slate_ope"
    seed: int = 0
    n_items: int = 20
    n_users: int = 500
    world_seed: int = 0
    size: int = 4
    n_slates: int = 20_000
    click_models: tuple[str, ...] = ("independent", "pbm", "cascade")
    logger_beta: float = 0.5
    target_beta: float = 1.0
    learner: str = "reward-model"
    epsilon: float = 0.1
    n_bootstrap: int = 300

    def __post_init__(self) -> None:
        from offrec.sim.slate import CLICK_MODELS

        for name in ("n_items", "n_users", "size", "n_slates"):
            check_scalar(getattr(self, name), name, int, min=1)
        check_scalar(self.n_bootstrap, "n_bootstrap", int, min=40)
        check_scalar(self.epsilon, "epsilon", float, min=0.0, max=1.0, min_inclusive=False)
        for name in ("logger_beta", "target_beta"):
            check_scalar(getattr(self, name), name, float, min=0.0)
        bad = [c for c in self.click_models if c not in CLICK_MODELS]
        if bad or not self.click_models:
            raise InputError(
                f"slate click_models must be a non-empty list of {list(CLICK_MODELS)}; got "
                f"{list(self.click_models)}"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SlatePipelineConfig:
        slate = raw.get("slate")
        if not isinstance(slate, dict):
            raise InputError("a slate pipeline needs a [slate] table")
        world = raw.get("world", {})
        for table, keys, got in (("slate", SLATE_KEYS, slate), ("world", WORLD_KEYS, world)):
            unknown = sorted(set(got) - set(keys))
            if unknown:
                raise InputError(f"unknown [{table}] key {unknown[0]!r}; valid: {list(keys)}")
        kw: dict[str, Any] = {k: slate[k] for k in SLATE_KEYS if k in slate}
        if "click_models" in kw:
            kw["click_models"] = tuple(kw["click_models"])
        for k in ("n_items", "n_users"):
            if k in world:
                kw[k] = world[k]
        if "seed" in world:
            kw["world_seed"] = world["seed"]
        for k in ("name", "seed"):
            if k in raw:
                kw[k] = raw[k]
        return cls(**kw)


def is_slate_pipeline(raw: dict[str, Any]) -> bool:
    """Whether a parsed pipeline file is a slate pipeline (it has a ``[slate]`` table)."""
    return isinstance(raw.get("slate"), dict)


@dataclass
class SlatePipelineResult:
    out: Path
    metrics: dict[str, Any]
    report: str = field(repr=False)

    def text(self) -> str:
        return self.report


def run_slate_pipeline(
    cfg: SlatePipelineConfig | str | Path, out: str | Path, *, overwrite: bool = True
) -> SlatePipelineResult:
    """Run the slate pipeline ``cfg`` (a config or a TOML file) into the folder ``out``
    (``report.md``, ``metrics.json``; written atomically). Returns the metrics and report."""
    from offrec.logs.slate import collect_slates
    from offrec.ope.slate_decision import slate_decision
    from offrec.ope.slate_log import evaluate_slates
    from offrec.pipeline_config import PolicySpec
    from offrec.policies.loggers import logging_policy
    from offrec.sim.config import WorldConfig
    from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld, TopKEpsilon
    from offrec.sim.world import World
    from offrec.training import train_policy

    if not isinstance(cfg, SlatePipelineConfig):
        cfg = SlatePipelineConfig.from_dict(tomllib.loads(Path(cfg).read_text()))
    t0 = time.perf_counter()
    world = World(WorldConfig(n_items=cfg.n_items, n_users=cfg.n_users), seed=cfg.world_seed)
    K = cfg.size
    logger = PlackettLuce(logging_policy(world, "softmax", beta=cfg.logger_beta), K)
    target = PlackettLuce(logging_policy(world, "softmax", beta=cfg.target_beta), K)
    metrics: dict[str, Any] = {
        "config": cfg.__dict__ | {"click_models": list(cfg.click_models)},
        "click_models": {},
    }
    lines = [
        f"# {cfg.name}",
        "",
        f"Slates of {K} out of {cfg.n_items} items, {cfg.n_slates:,} logged slates per "
        f"click model; logger: Plackett-Luce over the softmax model (beta "
        f"{cfg.logger_beta}); target: Plackett-Luce (beta {cfg.target_beta}). Intervals: "
        f"95% bootstrap over whole slates ({cfg.n_bootstrap} resamples).",
        "",
    ]
    with atomic_dir(out, overwrite=overwrite, kind="run") as tmp:
        for i, kind in enumerate(cfg.click_models):
            sw = SlateWorld(world, K, ClickModel(kind))
            log = tmp / f"log-{kind}"
            collect_slates(sw, logger, out=log, n_slates=cfg.n_slates, seed=cfg.seed + i)
            truth = sw.true_value(target, n_samples=300, seed=cfg.seed)
            res = evaluate_slates(log, target, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)
            spec = PolicySpec(name=cfg.learner, learner=cfg.learner)
            model, _ = train_policy(spec, log, world, cfg.seed)
            ranker = TopKEpsilon(model, K, epsilon=cfg.epsilon)
            dec, _ = slate_decision(
                log, {"learned top-k": ranker}, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed
            )
            v_logger = sw.true_value(logger, n_samples=300, seed=cfg.seed)
            v_ranker = sw.true_value(ranker, n_samples=300, seed=cfg.seed)
            rows = [
                {
                    "estimator": r.estimator,
                    "value": r.value,
                    "low": r.low,
                    "high": r.high,
                    "ess": r.ess,
                    "rel_error": abs(r.value - truth.value) / truth.value,
                    "covers": bool(r.low <= truth.value <= r.high),
                }
                for r in res
            ]
            metrics["click_models"][kind] = {
                "truth": _value(truth),
                "estimates": rows,
                "decision": {
                    "verdict": dec.verdict,
                    "pick": dec.pick,
                    "estimator": dec.estimator,
                    "sentences": list(dec.sentences),
                },
                "truth_logger": _value(v_logger),
                "truth_learned": _value(v_ranker),
            }
            lines += _section(kind, truth, rows, dec, v_logger, v_ranker)
            _remove_log(log)
        metrics["seconds"] = time.perf_counter() - t0
        report = "\n".join(lines) + "\n"
        (tmp / "report.md").write_text(report)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    return SlatePipelineResult(Path(out), metrics, report)


def _value(v: Any) -> dict[str, Any]:
    return {"value": v.value, "stderr": v.stderr, "exact": v.exact}


def _remove_log(log: Path) -> None:
    import shutil

    shutil.rmtree(log)


def _section(
    kind: str, truth: Any, rows: list[dict[str, Any]], dec: Any, v_logger: Any, v_ranker: Any
) -> list[str]:
    how = "exact" if truth.exact else f"Monte-Carlo, standard error {truth.stderr:.4f}"
    out = [
        f"## {kind} clicks",
        "",
        f"Target's true value: {truth.value:.4f} ({how}).",
        "",
        "| estimator | estimate | 95% interval | relative error | interval holds the truth |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['estimator']} | {r['value']:.4f} | {r['low']:.4f} to {r['high']:.4f} | "
            f"{100 * r['rel_error']:.1f}% | {'yes' if r['covers'] else 'no'} |"
        )
    width = {r["estimator"]: r["high"] - r["low"] for r in rows}
    widest = max(width, key=lambda e: width[e])
    out += [
        "",
        f"Widest interval: {widest}. "
        + " ".join(
            f"{e.upper()} {'holds' if r['covers'] else 'misses'} the truth."
            for e in ("iips", "rips", "sips")
            for r in rows
            if r["estimator"] == e
        ),
        "",
        f"**Decision** (headline {dec.estimator}): {' '.join(dec.sentences)}",
        "",
        f"True values: learned top-k ranker {v_ranker.value:.4f}, logger {v_logger.value:.4f} "
        f"({(v_ranker.value / v_logger.value - 1):+.1%}).",
        "",
    ]
    return out


__all__ = ["SlatePipelineConfig", "is_slate_pipeline", "run_slate_pipeline"]
