"""Train a policy: the one entry point of ``offrec train``, the pipelines and the library.

:func:`train` takes what to learn (a learner name or a spec: ``learner``, ``params``,
``head``) and either a log (learned offline) or, without one, a simulated ``world``
(learned online by interacting with it), and saves the result to a model folder
(:mod:`offrec.models`) when ``out`` is given::

    train("linucb", "data/demo", "models/linucb")                 # bandit learner, offline
    train(LearnerSpec("cql", {"n_steps": 20_000}), "data/sessions", "models/cql")  # offline RL
    train(spec, world=world)  # an [[online_learners]] entry: learned in the simulator

How much of the log each offline learner reads:

- ``linucb`` and ``lints``: per-arm sufficient statistics
  :math:`A_a = \\lambda I + \\sum_{i: a_i = a} \\phi_i \\phi_i^\\top`,
  :math:`b_a = \\sum_{i: a_i = a} r_i \\phi_i` are sums over rows, so they are computed
  batch by batch (local or Ray engine) and merged: every row counts, memory is one batch.
- the other bandit and offline learners (logistic bandits, context-free bandits with
  their per-arm importance weights, reward-model greedy, IPW): fitted on a bounded,
  seeded sample of at most ``fit_rows`` rows (:mod:`offrec.engines.sample`); past that
  size a sample estimates their parameters about as well as the whole log.
- offline RL (DQN, CQL, ...): d3rlpy trains from a replay buffer in memory; a log larger
  than ``fit_rows`` rows is sampled by whole sessions. :func:`offrec.rl.q_learning.train_rl`
  refuses a Q-network that cannot fit in memory before allocating it.

Also here: :func:`run_online_study` (several online learners against each other, with
plots: ``offrec train online``) and :func:`split_sessions` (a log split by session).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from offrec.core.errors import InputError, OutputExistsError
from offrec.core.policy import Head
from offrec.engines import make_engine
from offrec.engines.sample import draw_sample
from offrec.logs.data import LoggedData
from offrec.logs.items import ItemMap
from offrec.logs.scan import Batch, LogSource, open_log
from offrec.models import world_of_metadata
from offrec.policies import registry as policy_registry
from offrec.rl.algos import ALGOS, learner_name

if TYPE_CHECKING:
    from offrec.policies.online import ValueCurve
    from offrec.rl.online_baseline import OnlineRun
    from offrec.rl.q_learning import TrainResult
    from offrec.sim import World

__all__ = [
    "LEARNERS",
    "LearnerSpec",
    "OFFLINE_TRAINABLE",
    "RL_LEARNERS",
    "STREAMED",
    "TrainSummary",
    "Trained",
    "check_params",
    "learner_params",
    "run_online_study",
    "split_sessions",
    "train",
    "train_policy",
    "world_of_log",
]

# every learner name derives from the registry of the package that owns it
BANDIT_LEARNERS = policy_registry.BANDIT_LEARNERS
OFFLINE_LEARNERS = policy_registry.OFFLINE_LEARNERS
RL_LEARNERS = ALGOS.names
LEARNERS = BANDIT_LEARNERS + OFFLINE_LEARNERS + RL_LEARNERS
OFFLINE_TRAINABLE = OFFLINE_LEARNERS + BANDIT_LEARNERS  # `offrec train bandit`

STREAMED = ("linucb", "lints")
"""Learners fitted from sums over every row (the others use a bounded sample)."""

Progress = Callable[[int], None]


def learner_params(learner: str) -> list[str]:
    """The parameter names ``learner`` accepts in ``params`` (``--param``)."""
    learner = learner_name(learner)
    if learner in RL_LEARNERS:  # the algorithm's config, then the runtime knobs
        from offrec.rl.config import algo_params

        return algo_params(learner)
    cls = policy_registry.LEARNERS[policy_registry.LEARNERS.resolve(learner)]
    skip = {"self", "n_actions", "context_dim", "head"}
    if learner in OFFLINE_LEARNERS:
        skip.add("seed")  # the training seed
    sig = inspect.signature(cls.__init__)
    return [n for n, p in sig.parameters.items() if n not in skip and p.kind != p.VAR_KEYWORD]


def check_params(learner: str, params: dict[str, Any], where: str = "params") -> None:
    """Raise ``InputError`` naming the unknown keys of ``params`` and listing the valid ones."""
    learner = learner_name(learner)
    if learner not in LEARNERS:
        raise InputError(f"learner must be one of {list(LEARNERS)}; got {learner!r}")
    valid = learner_params(learner)
    unknown = sorted(set(params) - set(valid))
    if unknown and learner in RL_LEARNERS:  # another algorithm's key (older files): ignored
        from offrec.rl.config import other_algo_params

        foreign = sorted(set(unknown) & set(other_algo_params(learner)))
        if foreign:
            warnings.warn(
                f"{where}: {foreign} do not apply to {learner!r} and are ignored",
                DeprecationWarning,
                stacklevel=2,
            )
            unknown = sorted(set(unknown) - set(foreign))
    if unknown:
        raise InputError(
            f"{where}: unknown parameter(s) {unknown} for learner {learner!r}; valid: "
            f"{', '.join(valid) or '(none)'}"
        )


# ------------------------------------------------------------------------------ specs
class OfflineSpec(Protocol):
    """What to learn from a log (``PolicySpec`` of a pipeline file, :class:`LearnerSpec`)."""

    @property
    def learner(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def head(self) -> dict[str, Any]: ...


class OnlineSpec(Protocol):
    """What to learn by interacting with the world: an ``[[online_learners]]`` entry
    (:class:`offrec.pipeline_config.OnlineLearnerSpec`)."""

    @property
    def learner(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def n_steps(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def eval_every(self) -> int | None: ...
    @property
    def eval_sessions(self) -> int: ...


@dataclass(frozen=True)
class LearnerSpec:
    """A learner to train from a log: its name, its parameters, and the head that turns
    its scores into the policy (default greedy)."""

    learner: str
    params: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=lambda: {"kind": "greedy"})


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train` did: rows read, RL steps and speed, the last true value measured
    during training (RL with ``evaluate``, online learners) and what the value is called."""

    n_rows: int
    n_steps: int = 0
    steps_per_second: float = 0.0
    eval_value: float | None = None
    eval_stderr: float = 0.0
    value_label: str = "CTR"


@dataclass
class Trained:
    """A trained policy with its record: ``curve`` is the RL training curve (a dict,
    :meth:`offrec.rl.q_learning.TrainingCurve.to_dict`), the online learner's
    :class:`~offrec.policies.online.ValueCurve`, or None; ``out`` is where it was saved."""

    policy: Any
    curve: dict[str, Any] | ValueCurve | None
    summary: TrainSummary
    out: Path | None = None


# ------------------------------------------------------------------------------ the entry point
def train(
    spec: str | OfflineSpec | OnlineSpec,
    logs: LoggedData | LogSource | str | Path | None = None,
    out: str | Path | None = None,
    *,
    world: World | None = None,
    seed: int = 0,
    evaluate: bool = False,
    engine: str = "local",
    repair: str | None = None,
    overwrite: bool = False,
    batch_size: int = 65_536,
    fit_rows: int = 1_000_000,
    progress: Progress | None = None,
) -> Trained:
    """Train ``spec`` (a learner name or spec) and save it to the model folder ``out``.

    With ``logs`` (a log in memory or on disk, streamed: module docstring) the learner is
    trained offline; without, ``spec`` must be an :class:`OnlineSpec` and the learner
    interacts with ``world`` (:func:`offrec.rl.online_baseline.learn_online`).

    Args:
        world: the simulated world of the log (default: from the log's metadata; None
            for an imported log). Bandit learners may read it (the hybrid learner's item
            features); it is saved as ``world.json`` beside the model.
        evaluate: RL learners measure their true online value in ``world`` during
            training (``RLConfig.eval_every``, and at the end).
        repair: ``"drop"`` reads the log into memory without its duplicated rows (else
            duplicates are an error, the reader's rule).
        overwrite: replace an existing ``out`` that offrec wrote (checked before training).
        progress: called with rows read (bandit learners) or gradient steps done (RL).

    Returns:
        :class:`Trained`: the policy (its ``item_map`` set from the log), its curve and a
        :class:`TrainSummary`.
    """
    if isinstance(spec, str):
        spec = LearnerSpec(spec)
    if out is not None and Path(out).exists() and not overwrite:  # before training
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    if logs is None:
        return _train_online(spec, world, seed, out, overwrite)
    if not hasattr(spec, "head"):
        raise InputError(
            f"{spec.learner!r} is an online learner spec: train it without logs, in a world"
        )
    spec = cast(OfflineSpec, spec)
    learner = learner_name(spec.learner)
    check_params(learner, dict(spec.params))
    is_rl = learner in RL_LEARNERS
    source: LoggedData | LogSource
    if isinstance(logs, LoggedData | LogSource):
        source = logs
    elif repair is not None:
        from offrec.logs import read_logs

        source = read_logs(logs, repair=repair)
    else:
        source = open_log(logs)
    if world is None:
        world = world_of_metadata(source.metadata)
    if evaluate and world is None:
        raise InputError(
            "evaluate=True needs a simulated log (its world config is in the metadata)"
        )
    policy, result = _fit(
        learner,
        dict(spec.params),
        Head(**spec.head),
        source,
        world if (evaluate or not is_rl) else None,
        seed,
        engine,
        batch_size,
        fit_rows,
        progress,
    )
    policy.item_map = ItemMap.of_metadata(
        source.metadata, int(source.n_actions or policy.n_actions)
    )
    binary = (source.metadata.get("reward_domain") or {}).get("kind", "binary") == "binary"
    label = "CTR" if binary else "mean reward"
    if result is None:
        summary = TrainSummary(n_rows=source.n_rows, value_label=label)
    else:
        ev = result.curve
        last = (float(ev.eval_value[-1]), float(ev.eval_stderr[-1])) if len(ev.eval_value) else None
        session = world is not None and world.config.horizon > 1
        summary = TrainSummary(
            n_rows=source.n_rows,
            n_steps=result.config.n_steps,
            steps_per_second=result.steps_per_second,
            eval_value=None if last is None else last[0],
            eval_stderr=0.0 if last is None else last[1],
            value_label="clicks per session" if session else label,
        )
    curve = None if result is None else result.curve.to_dict()
    trained = Trained(policy, curve, summary)
    if out is not None:
        trained.out = _save(policy, result, Path(out), world, overwrite)
    return trained


def _save(
    policy: Any, result: TrainResult | None, out: Path, world: World | None, overwrite: bool
) -> Path:
    """The model folder: the policy (:func:`offrec.models.save_model`), ``world.json``
    when simulated, and for RL ``training.json`` + ``training_curve.png``."""
    if result is None:
        from offrec.models import save_model

        save_model(policy, out, overwrite=overwrite, world=world)
        return out
    from offrec.models import write_world
    from offrec.report.learning_curves import plot_training_curve

    dataclasses.replace(result, policy=policy).save(
        out, overwrite=overwrite, plot=plot_training_curve
    )
    if world is not None:
        write_world(out, world)
    return out


def _train_online(
    spec: OfflineSpec | OnlineSpec,
    world: World | None,
    seed: int,
    out: str | Path | None,
    overwrite: bool,
) -> Trained:
    """An online learner (module docstring): ``value_curve.json`` and the model in ``out``."""
    if world is None:
        raise InputError("train without logs learns online: pass the world to interact with")
    if not hasattr(spec, "n_steps"):
        raise InputError(
            f"train without logs learns online: {spec.learner!r} needs an online spec "
            "(n_steps, batch_size, eval_every, eval_sessions: an [[online_learners]] entry)"
        )
    from offrec.rl.online_baseline import learn_online

    online = cast(OnlineSpec, spec)
    run = learn_online(
        world,
        online.learner,
        online.n_steps,
        params=dict(online.params),
        batch_size=online.batch_size,
        seed=seed,
        eval_every=online.eval_every,
        eval_sessions=online.eval_sessions,
    )
    value, stderr = run.curve.final
    summary = TrainSummary(
        n_rows=0,
        n_steps=int(run.curve.interactions[-1]),
        eval_value=float(value),
        eval_stderr=float(stderr),
        value_label=run.curve.metric,
    )
    trained = Trained(run.policy, run.curve, summary)
    if out is not None:
        from offrec.core.atomic import atomic_write_text
        from offrec.models import save_model

        out = Path(out)
        save_model(run.policy, out, overwrite=overwrite, world=world)
        atomic_write_text(out / "value_curve.json", json.dumps(run.curve.to_dict()))
        trained.out = out
    return trained


def train_policy(
    spec: OfflineSpec,
    logs: LoggedData | LogSource | str | Path,
    world: World | None,
    seed: int,
    *,
    engine: str = "local",
    batch_size: int = 65_536,
    fit_rows: int = 1_000_000,
    progress: Progress | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """``(policy, RL training curve or None)`` of :func:`train` without saving; an RL
    learner is evaluated in ``world`` when one is given. Kept for scripts written
    before :func:`train`."""
    t = train(
        spec,
        logs,
        world=world,
        seed=seed,
        evaluate=world is not None,
        engine=engine,
        batch_size=batch_size,
        fit_rows=fit_rows,
        progress=progress,
    )
    curve = t.curve if isinstance(t.curve, dict) or t.curve is None else t.curve.to_dict()
    return t.policy, curve


def _fit(
    learner: str,
    params: dict[str, Any],
    head: Head,
    source: LoggedData | LogSource,
    world: World | None,
    seed: int,
    engine: str,
    batch_size: int,
    fit_rows: int,
    progress: Progress | None,
) -> tuple[Any, TrainResult | None]:
    """Fit ``learner`` on ``source`` (module docstring: streamed sums, or a bounded
    sample); RL returns its :class:`~offrec.rl.q_learning.TrainResult` too."""
    eng = make_engine(engine, batch_size=batch_size)
    if learner in STREAMED:
        return _streamed_ridge(learner, params, source, eng, progress).exploit(head), None
    is_rl = learner in RL_LEARNERS
    data = source if isinstance(source, LoggedData) else None
    if data is None or data.n_rows > fit_rows:
        rows = None if is_rl else progress  # RL reports gradient steps, not rows read
        sample = draw_sample(source, eng, fit_rows, seed, sessions=is_rl, progress=rows)
        if sample.data is None:
            raise InputError(f"log {getattr(source, 'path', '')} has no rows to train on")
        data = sample.data
        if is_rl:  # d3rlpy wants each session's rows together, in step order
            data = data.subset(np.lexsort((data.step, data.session_id)))
    if is_rl:
        from offrec.rl.config import RLConfig
        from offrec.rl.q_learning import train_rl

        rl_cfg = RLConfig.from_dict({"seed": seed, **params, "algo": learner})
        result = train_rl(data, rl_cfg, world=world, progress=progress)
        return result.policy.with_head(head), result
    from offrec.policies.logged import fit_logged

    if learner in OFFLINE_LEARNERS:
        cls = policy_registry.LEARNERS[learner]
        if "seed" in inspect.signature(cls).parameters:
            params.setdefault("seed", seed)
        # sized by the log, not by the actions its training rows happen to contain
        params.setdefault("n_actions", data.n_actions)
        params.setdefault("context_dim", data.context_dim)
        return cls(head=head, **params).fit(data), None
    if learner == "hybrid" and world is None and params.get("item_features") is None:
        params.update(_catalog_features(source))
    bandit = policy_registry.make_learner(
        learner, data.n_actions, data.context_dim, world=world, **params
    )
    fit_logged(bandit, data)
    return bandit.exploit(head), None


def _catalog_features(source: LoggedData | LogSource) -> dict[str, Any]:
    """``{"item_features": ...}`` from the log's item table (an imported log that brought
    its catalog, :mod:`offrec.logs.catalog`), or nothing when it has none."""
    from offrec.logs.catalog import catalog_path, read_catalog

    path = getattr(source, "path", None)
    if path is None or catalog_path(path) is None or not Path(path).is_dir():
        return {}
    return {"item_features": read_catalog(path).features()}


@dataclass
class _Sums:
    """Per-arm ridge statistics of some rows (without the prior): mergeable."""

    A: np.ndarray
    b: np.ndarray
    n: int

    def merge(self, other: _Sums) -> _Sums:
        return _Sums(self.A + other.A, self.b + other.b, self.n + other.n)


def _streamed_ridge(name: str, params: dict[str, Any], source: Any, eng: Any, progress: Any) -> Any:
    from offrec.policies.registry import make_learner

    n_actions = source.n_actions
    dim = source.context_dim
    learner = make_learner(name, n_actions, dim, **params)
    prior = learner._state()  # the prior's A = reg * I, b = 0
    prior_A, prior_b = prior["A"], prior["b"]

    def kernel(batch: Batch) -> _Sums:
        fresh = make_learner(name, n_actions, dim, **params)
        data = batch.data
        fresh.partial_fit(data.context, data.action, data.reward)
        state = fresh._state()
        return _Sums(state["A"] - prior_A, state["b"] - prior_b, data.n_rows)

    sums = eng.map_reduce(source, kernel, progress=progress)
    learner._set_state({"A": prior_A + sums.A, "b": prior_b + sums.b})
    learner.n_updates = 1
    return learner


# ------------------------------------------------------------------------------ studies and data
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
) -> tuple[dict[str, OnlineRun], dict[str, float]]:
    """Let each learner (bandit learners, or SB3 ``ppo`` / ``dqn``) learn by interacting
    with ``world``, measuring the true value of the policy it would deploy, and write
    ``curves.json``, the plots and the models to ``out`` (atomically).

    ``params``: ``KEY`` applies to every learner, ``LEARNER.KEY`` to one. The output is
    checked (exists without ``overwrite``) before any training. Returns the runs by name
    and the reference values (logger, oracles)."""
    from offrec.core.atomic import check_output_path
    from offrec.report.learning_curves import save_online_runs
    from offrec.rl.online_baseline import compare_online, online_references

    if Path(out).exists() and not overwrite:  # fail before training, not after
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    check_output_path(out)
    learners = [learner_name(n) for n in learners]  # old spellings warn
    shared: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in (params or {}).items():
        name, dot, fld = key.rpartition(".")
        (scoped.setdefault(learner_name(name), {}) if dot else shared)[fld] = value
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


def split_sessions(data: LoggedData, holdout: float, seed: int) -> tuple[LoggedData, LoggedData]:
    """Split a log by session: ``(train, eval)`` with about ``holdout`` of the sessions in
    ``eval`` (each kept with probability ``holdout``, seeded by ``seed``).
    ``holdout == 0`` returns the log twice."""
    if holdout == 0:
        return data, data
    sessions = np.unique(data.session_id)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    held = sessions[rng.random(sessions.size) < holdout]
    in_eval = np.isin(data.session_id, held)
    if in_eval.all() or not in_eval.any():
        raise InputError(f"holdout={holdout} leaves no session for training or for evaluation")
    return data.subset(~in_eval), data.subset(in_eval)


def world_of_log(data: LoggedData | LogSource) -> World | None:
    """The simulated world a log was collected in (from its metadata), or None."""
    return world_of_metadata(data.metadata)


# ------------------------------------------------------------------------------ deprecated
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
    progress: Progress | None = None,
) -> TrainSummary:
    """Deprecated: ``train(LearnerSpec(learner, params, head), logs, out, ...).summary``."""
    warnings.warn("train_and_save is deprecated; use offrec.training.train", DeprecationWarning, 2)
    if learner not in OFFLINE_TRAINABLE and learner not in policy_registry.LEARNERS.aliases:
        hint = "; RL algorithms train with train(...) too" if learner in RL_LEARNERS else ""
        raise InputError(f"learner must be one of {list(OFFLINE_TRAINABLE)}; got {learner!r}{hint}")
    spec = LearnerSpec(learner, dict(params or {}), (head or Head()).to_dict())
    return train(
        spec,
        logs,
        out,
        seed=seed,
        repair=repair,
        overwrite=overwrite,
        engine=engine,
        progress=progress,
    ).summary


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
    progress: Progress | None = None,
) -> TrainSummary:
    """Deprecated: ``train(LearnerSpec(algo, params), logs, out, evaluate=...).summary``."""
    warnings.warn(
        "train_rl_and_save is deprecated; use offrec.training.train", DeprecationWarning, 2
    )
    return train(
        LearnerSpec(algo, dict(params or {})),
        logs,
        out,
        seed=seed,
        evaluate=evaluate,
        repair=repair,
        overwrite=overwrite,
        progress=progress,
    ).summary
