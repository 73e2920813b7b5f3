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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from offrec.core.atomic import (
    atomic_dir,
    atomic_write_text,
    owned_dir,
    read_manifest,
    record_in_manifest,
    verify_manifest,
    write_manifest,
)
from offrec.core.errors import InputError, OutputExistsError
from offrec.core.policy import Head
from offrec.logs import collect, read_logs
from offrec.logs.data import LoggedData
from offrec.pipeline_config import RL_LEARNERS as RL_ALGOS
from offrec.pipeline_config import PipelineConfig, PolicySpec, ReferenceSpec
from offrec.policies.loggers import LOGGER_KINDS, logging_policy, logging_policy_kwargs
from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle, World
from offrec.training import train_policy

if TYPE_CHECKING:
    from offrec.ope import OPEResult

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


# ------------------------------------------------------------------------------ cache
def _cached(path: Path, key_config: Any, say: Progress, what: str, fresh: bool) -> bool:
    """True when the cached stage at ``path`` can be served: it exists, was made from
    ``key_config``, and every file matches its manifest checksum. A corrupt or swapped
    stage is reported (a logged warning, shown by the CLI) and removed to be recomputed."""
    if not path.exists():
        return False
    problems = [] if not fresh else ["--fresh: cache ignored"]
    if not problems:
        problems = verify_manifest(path)
    if not problems:
        stored = read_manifest(path).get("config")
        if stored != json.loads(json.dumps(key_config, sort_keys=True, default=str)):
            problems = [f"{path.name}: made from another configuration"]
    if not problems:
        return True
    if not fresh:
        log.warning(
            "%s: cached stage is corrupt or swapped (%s); recomputing",
            what,
            "; ".join(problems[:3]),
        )
    _discard(path)
    return False


def _discard(path: Path) -> None:
    import shutil
    import uuid

    trash = path.parent / f".{path.name}.stale-{uuid.uuid4().hex[:8]}"
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _seal(path: Path, key_config: Any, kind: str) -> None:
    """Rewrite the stage's manifest with SHA-256 checksums of its files and its config."""
    write_manifest(
        path,
        kind=kind,
        checksums=True,
        extra={"config": json.loads(json.dumps(key_config, sort_keys=True, default=str))},
    )


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
    cfg: PipelineConfig, world: World, cache: Path, say: Progress, fresh: bool = False
) -> tuple[LoggedData, str, bool]:
    spec = asdict(cfg.logging)
    key_config = ["logs", cfg.world.to_dict(), cfg.world_seed, spec, cfg.seed]
    key = _key(*key_config)
    path = cache / f"logs-{key}"
    hit = _cached(path, key_config, say, "logs", fresh)
    if not hit:
        say(f"simulating logs ({cfg.logging.policy} logger)")
        collect(
            world,
            _logger(cfg, world),
            out=path,
            n_decisions=cfg.logging.n_decisions,
            n_sessions=cfg.logging.n_sessions,
            seed=cfg.seed,
        )
        _seal(path, key_config, "dataset")
    else:
        say(f"logs: cached ({path.name})")
    return read_logs(path), key, hit


def _logger(cfg: PipelineConfig, world: World) -> Any:
    lg = cfg.logging
    kw = logging_policy_kwargs(
        lg.policy,
        strict=False,
        beta=lg.beta,
        epsilon=lg.epsilon,
        noise=lg.noise,
        model_seed=lg.model_seed,
        support=None if lg.support is None else list(lg.support),
    )
    if lg.candidates is not None:  # a large catalog: the two-stage logger
        kw.update(candidates=lg.candidates, floor=lg.floor or 0.0)
    return logging_policy(world, lg.policy, **kw)


def _models_stage(
    cfg: PipelineConfig,
    data: LoggedData,
    logs_key: str,
    world: World,
    cache: Path,
    say: Progress,
    fresh: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    from offrec.models import load_model, save_model
    from offrec.recommend import write_world

    policies: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.policies:
        key_config = ["model", logs_key, asdict(spec), cfg.seed]
        key = _key(*key_config)
        path = cache / f"model-{_slug(spec.name)}-{key}"
        curve_path = path / "training_curve.json"
        if _cached(path, key_config, say, f"model '{spec.name}'", fresh):
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
        if spec.is_rl:  # a clear error before d3rlpy allocates an absurd network
            from offrec.rl.config import RLConfig

            rl_cfg = RLConfig.from_dict({"seed": cfg.seed, **spec.params, "algo": spec.learner})
            check_network_size(rl_cfg, data.context_dim, data.n_actions)
        policy, curve = train_policy(spec, data, world, cfg.seed)
        log.info("trained %s in %.1fs", spec.name, time.perf_counter() - t)
        save_model(policy, path)
        write_world(path, world)
        if curve is not None:
            atomic_write_text(curve_path, json.dumps(curve))
            curves[spec.name] = curve
        _seal(path, key_config, "model")
        policies[spec.name] = policy
        hits[spec.name] = False
    return policies, curves, hits


def _online_learners_stage(
    cfg: PipelineConfig, world: World, cache: Path, say: Progress, fresh: bool = False
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """Learn each ``[[online_learners]]`` entry by interacting with ``world``, cached like
    every other stage (:func:`_cached`: manifest checksums and configuration; ``fresh``
    recomputes).

    Returns policies, their :class:`~offrec.policies.online.ValueCurve` and cache hits.
    """
    if not cfg.online_learners:
        return {}, {}, {}
    from offrec.models import load_model, save_model
    from offrec.policies.online import ValueCurve
    from offrec.rl.online_baseline import SB3Policy, learn_online, load_sb3_policy

    policies: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for spec in cfg.online_learners:
        key_config = ["online", cfg.world.to_dict(), cfg.world_seed, asdict(spec), cfg.seed]
        path = cache / f"online-{_slug(spec.name)}-{_key(*key_config)}"
        hits[spec.name] = _cached(path, key_config, say, f"online learner '{spec.name}'", fresh)
        if not hits[spec.name]:
            say(f"learning '{spec.name}' online ({spec.learner}, {spec.n_steps:,} interactions)")
            run = learn_online(
                world,
                spec.learner,
                spec.n_steps,
                params=spec.params,
                batch_size=spec.batch_size,
                seed=cfg.seed,
                eval_every=spec.eval_every,
                eval_sessions=spec.eval_sessions,
            )
            with atomic_dir(path) as tmp:
                (tmp / "value_curve.json").write_text(json.dumps(run.curve.to_dict()))
                if isinstance(run.policy, SB3Policy):
                    run.policy.save(tmp / "model.zip")
                else:
                    save_model(run.policy, tmp / "model")
            _seal(path, key_config, "model")
        else:
            say(f"online learner '{spec.name}': cached")
        curves[spec.name] = ValueCurve.from_dict(
            json.loads((path / "value_curve.json").read_text())
        )
        if (path / "model.zip").is_file():
            policies[spec.name] = load_sb3_policy(path / "model.zip", world.n_items)
        else:
            policies[spec.name] = load_model(
                path / "model", n_actions=world.n_items, obs_dim=world.obs_dim
            )
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
        rows.append(
            {
                "policy": name,
                "approach": approach,
                "live interactions": live,
                "logged interactions": logged,
                **{k: v for k, v in st.items() if k != "exact"},
            }
        )
    table = pd.DataFrame(rows)
    metric = "clicks_per_session" if cfg.world.horizon > 1 else "ctr"
    label = "clicks per session" if cfg.world.horizon > 1 else "CTR"
    refs = table[table["approach"] == "reference"]
    best_ref = refs.loc[refs[metric].idxmax()] if len(refs) else None
    lines = []
    for d in table[table["approach"] != "reference"].to_dict("records"):
        cost = (
            f"{d['live interactions']:,} live interactions with users"
            if d["approach"] == "online"
            else f"no live interaction: trained on {d['logged interactions']:,} logged decisions"
        )
        share = (
            f", {d[metric] / best_ref[metric]:.0%} of the {best_ref['policy']}"
            if best_ref is not None and best_ref[metric] > 0
            else ""
        )
        lines.append(
            f"- **{d['policy']}**: costs {cost}; earns "
            f"{d[metric]:.3f} ± {d[metric + '_se']:.3f} {label}{share}."
        )
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
        online_curves,
        plot_path,
        points=points,
        references=references,
        title=f"{cfg.name}: true {label} against interactions with users",
    )
    return table, note, path


def _online_vs_offline_section(note: str, plot: Path, table: pd.DataFrame) -> tuple[str, Any]:
    """The report section of :func:`_online_vs_offline`: the note, the plot, the table."""
    from offrec.report.render import Plot, Table

    return (
        "Online vs offline: what each approach costs and earns",
        [
            note,
            Plot(
                plot,
                "True value against interactions with users",
                "Online learners: the policy each would deploy after that many live interactions "
                "(band: ±2 standard errors). Offline learners: one point at the number of logged "
                "decisions they were trained on. Lines: the logger and the oracles.",
            ),
            Table(table, caption="True values from the simulator (± one standard error)."),
        ],
    )


# ------------------------------------------------------------------------------ one-off training
@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train_and_save` / :func:`train_rl_and_save` did."""

    n_rows: int
    n_steps: int = 0
    steps_per_second: float = 0.0
    eval_value: float | None = None
    eval_stderr: float = 0.0
    value_label: str = "CTR"


def _read_for_training(logs: str | Path, repair: str | None) -> LoggedData:
    return read_logs(logs, repair=repair)


def _training_source(logs: str | Path, repair: str | None) -> Any:
    """The log to train on: streamed (:func:`~offrec.logs.scan.open_log`: the rules every
    reader applies, then every batch validated); with ``repair="drop"`` the log is read
    into memory without its duplicated rows."""
    from offrec.logs.scan import open_log

    if repair is not None:
        return _read_for_training(logs, repair)
    return open_log(logs)


def train_and_save(
    logs: str | Path,
    learner: str,
    out: str | Path,
    *,
    params: dict[str, Any] | None = None,
    head: Head | None = None,
    seed: int = 0,
    repair: str | None = None,
    overwrite: bool = False,
    engine: str = "local",
    progress: Callable[[int], None] | None = None,
) -> TrainSummary:
    """Train a bandit or offline ``learner`` on the log at ``logs`` (through
    :func:`offrec.training.train_policy`: streamed on ``engine``) and save it, with the
    log's world when simulated, to the model folder ``out``.

    ``params`` are checked against the learner's parameters first (an unknown key lists
    the valid ones); RL algorithms go through :func:`train_rl_and_save`. Duplicated log
    rows are an error unless ``repair="drop"`` (the reader's rule)."""
    from offrec.models import save_model
    from offrec.pipeline_config import OFFLINE_TRAINABLE, check_params
    from offrec.recommend import write_world

    if learner not in OFFLINE_TRAINABLE:
        hint = "; RL algorithms train with train_rl_and_save" if learner in RL_ALGOS else ""
        raise InputError(f"learner must be one of {list(OFFLINE_TRAINABLE)}; got {learner!r}{hint}")
    params = dict(params or {})
    check_params(learner, params)
    source = _training_source(logs, repair)
    spec = PolicySpec(name=learner, learner=learner, params=params, head=(head or Head()).to_dict())
    world = world_of_metadata(source.metadata)
    policy, _ = train_policy(spec, source, world, seed, engine=engine, progress=progress)
    save_model(policy, out, overwrite=overwrite)
    if world is not None:
        write_world(out, world)
    label = (
        "CTR"
        if (source.metadata.get("reward_domain") or {}).get("kind", "binary") == "binary"
        else "mean reward"
    )
    return TrainSummary(n_rows=source.n_rows, value_label=label)


def train_rl_and_save(
    logs: str | Path,
    algo: str,
    out: str | Path,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    evaluate: bool = False,
    repair: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TrainSummary:
    """Train an offline RL ``algo`` on a session log and save it to ``out``; with
    ``evaluate`` the true online value is measured during training (the log must be
    simulated) and the last measurement returned."""
    from offrec.pipeline_config import check_params
    from offrec.recommend import write_world
    from offrec.rl.config import RLConfig
    from offrec.rl.train import train_rl

    params = dict(params or {})
    check_params(algo, params)
    cfg = RLConfig.from_dict({"seed": seed, **params, "algo": algo})
    data = _read_for_training(logs, repair)
    check_network_size(cfg, data.context_dim, data.n_actions)
    world = world_of_log(data)
    if evaluate and world is None:
        raise InputError(
            "evaluate=True needs a simulated log (its world config is in the metadata)"
        )
    result = train_rl(data, cfg, world=world if evaluate else None, progress=progress)
    result.policy.item_map = data.item_map  # saved with the model (offrec.logs.items)
    from offrec.report.training import plot_training_curve

    result.save(out, overwrite=overwrite, plot=plot_training_curve)  # weights, config, curve
    if world is not None:
        write_world(out, world)
    curve = result.curve
    last = (
        (float(curve.eval_value[-1]), float(curve.eval_stderr[-1]))
        if len(curve.eval_value)
        else None
    )
    label = data.value_label if world is None or world.config.horizon == 1 else "clicks per session"
    return TrainSummary(
        n_rows=data.n_rows,
        n_steps=cfg.n_steps,
        steps_per_second=result.steps_per_second,
        eval_value=None if last is None else last[0],
        eval_stderr=0.0 if last is None else last[1],
        value_label=label,
    )


def check_network_size(cfg: Any, obs_dim: int, n_actions: int, limit: int | None = None) -> None:
    """Raise ``InputError`` before d3rlpy allocates a Q-network that cannot fit: the MLP
    ``obs_dim -> hidden_units... -> n_actions`` has ``sum(w_i * w_(i+1))`` weights, held
    as float32 four times per critic (weights, target copy, two Adam moments), plus one
    batch of activations. ``limit`` defaults to half the physical memory."""
    from offrec.core.atomic import format_bytes
    from offrec.sim.limits import MEMORY_SHARE, physical_memory

    widths = [int(obs_dim), *map(int, cfg.hidden_units), int(n_actions)]
    weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    need = 4 * (4 * weights * int(cfg.n_critics) + int(cfg.batch_size) * sum(widths))
    limit = int(MEMORY_SHARE * physical_memory()) if limit is None else limit
    if need > limit:
        raise InputError(
            f"hidden_units={list(cfg.hidden_units)} is too large: the Q-network would need about "
            f"{format_bytes(need)} of memory (limit {format_bytes(limit)})"
        )


def world_of_log(data: LoggedData) -> World | None:
    """The simulated world a log was collected in (from its metadata), or None."""
    return world_of_metadata(data.metadata)


def world_of_metadata(meta: dict[str, Any]) -> World | None:
    """The simulated world of a log's metadata (``world_config``, ``world_seed``), or None."""
    from offrec.sim import WorldConfig

    cfg = meta.get("world_config")
    if cfg is None:
        return None
    return World(WorldConfig.from_dict(cfg), seed=meta.get("world_seed") or 0)


def run_online_study(
    world: World,
    learners: list[str],
    out: str | Path,
    *,
    params: dict[str, Any] | None = None,
    n_steps: int = 100_000,
    batch_size: int = 1000,
    seed: int = 0,
    eval_every: int | None = None,
    eval_sessions: int = 2000,
    overwrite: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Let each learner (bandit learners, or SB3 ``ppo`` / ``dqn``) learn by interacting
    with ``world``, measuring the true value of the policy it would deploy, and write
    ``curves.json``, the plots and the models to ``out`` (atomically).

    ``params``: ``KEY`` applies to every learner, ``LEARNER.KEY`` to one. The output is
    checked (exists without ``overwrite``) before any training. Returns the runs by name
    and the reference values (logger, oracles)."""
    from offrec.core.atomic import check_output_path
    from offrec.report.training import save_online_runs
    from offrec.rl.online_baseline import compare_online, online_references

    if Path(out).exists() and not overwrite:  # fail before training, not after
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    check_output_path(out)
    shared: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in (params or {}).items():
        name, dot, field = key.rpartition(".")
        (scoped.setdefault(name, {}) if dot else shared)[field] = value
    per_learner = {n: {**shared, **scoped.pop(n, {})} for n in learners}
    if scoped:
        raise InputError(
            f"params name {sorted(scoped)}, which are not among the learners {learners}"
        )
    runs = compare_online(
        world,
        learners,
        n_steps,
        params=per_learner,
        batch_size=batch_size,
        seed=seed,
        eval_every=eval_every,
        eval_sessions=eval_sessions,
        progress=progress,
    )
    refs = online_references(world, n_sessions=eval_sessions)
    save_online_runs(runs, out, references=refs, overwrite=overwrite)
    return runs, refs


def _reference(spec: ReferenceSpec, cfg: PipelineConfig, world: World) -> Any:
    head = Head("epsilon_greedy", epsilon=spec.epsilon) if spec.epsilon > 0 else Head()
    if spec.policy == "logger":
        return _logger(cfg, world)
    if spec.policy in LOGGER_KINDS:
        kw = logging_policy_kwargs(
            spec.policy,
            strict=False,
            noise=spec.noise,
            model_seed=cfg.logging.model_seed,
            beta=spec.beta,
            epsilon=spec.epsilon,
        )
        return logging_policy(world, spec.policy, **kw)
    if spec.policy == "best_item":
        return BestItemOracle(world, head)
    if spec.policy == "myopic":
        return MyopicOracle(world, head)
    return LookaheadOracle(world, head, gamma=spec.gamma)


def ope_stage(
    cfg: PipelineConfig, data: LoggedData, targets: dict[str, Any], say: Progress
) -> tuple[pd.DataFrame, OPEResult]:
    """Every estimable target x every estimator through the one OPE entry point: the
    table, and the :class:`~offrec.ope.OPEResult` (for paired comparisons in the report)."""
    from offrec.ope import evaluate
    from offrec.ope.embedding import pair_reward_model
    from offrec.reward import RewardModel

    o = cfg.ope
    estimable = targets
    if cfg.world.horizon > 1:  # oracles need the hidden session state
        estimable = {n: p for n, p in targets.items() if not hasattr(p, "action_dist_state")}
        for name in set(targets) - set(estimable):
            log.info("skipping OPE of %s: an oracle needs the hidden session state", name)
    say(f"off-policy evaluation: {len(estimable)} policies x {len(o.estimators)} estimators")
    result = evaluate(
        data,
        estimable,
        estimators=list(o.estimators),
        reward_model=pair_reward_model(o.reward_model, targets)
        or RewardModel(kind=o.reward_model, n_folds=o.n_folds, seed=cfg.seed),
        interval=o.interval,
        n_bootstrap=o.n_bootstrap,
        alpha=o.alpha,
        seed=cfg.seed,
        mode="session" if cfg.world.horizon > 1 else "bandit",
    )
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

    mode = "bandit" if cfg.world.horizon == 1 else "session"
    value_label = "CTR" if mode == "bandit" else "clicks per session"

    def paired(a: str, b: str, estimator: str) -> tuple[float, float, float]:
        iv = result.compare(a, b, estimator)
        return iv.value, iv.low, iv.high

    decision = decide(
        ope,
        roles(cfg),
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
            roles=roles(cfg),
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
    cache = out / "cache"
    if not cache.is_dir():
        cache.mkdir()
        record_in_manifest(cache)
    atomic_write_text(out / "pipeline.resolved.json", cfg.to_json())

    world = World(cfg.world, seed=cfg.world_seed)
    data, logs_key, logs_hit = _logs_stage(cfg, world, cache, say, fresh)
    train_data, eval_data = split_sessions(data, cfg.ope.holdout, seed=cfg.seed)
    split_key = _key(logs_key, cfg.ope.holdout, cfg.seed)
    policies, curves, hits = _models_stage(cfg, train_data, split_key, world, cache, say, fresh)
    online_policies, online_curves, online_hits = _online_learners_stage(
        cfg, world, cache, say, fresh
    )
    hits.update(online_hits)
    policies.update(online_policies)
    targets = {**policies, **{r.name: _reference(r, cfg, world) for r in cfg.references}}
    ope, ope_result = ope_stage(cfg, eval_data, targets, say)
    truth = _truth_stage(cfg, world, targets, say)

    extra: list[tuple[str, Any]] = []
    comparison = None
    if online_curves:
        comparison, note, path = _online_vs_offline(
            cfg,
            world,
            targets,
            online_curves,
            train_data.n_rows,
            out / "plots" / "online_vs_offline.png",
            say,
        )
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
