"""Pipeline files (TOML) mapped onto config dataclasses; unknown keys are errors.

A pipeline file reads top to bottom like a recipe::

    name = "quickstart"
    seed = 0

    [world]                     # WorldConfig fields, plus its seed
    seed = 0
    horizon = 1

    [logging]                   # the policy that logged the data, and how much
    policy = "softmax"
    beta = 1.0
    n_decisions = 50_000

    [[policies]]                # trained offline from the log
    name = "linucb"
    learner = "linucb"
    params = { alpha = 1.0 }

    [[references]]              # hand-made targets to compare against
    name = "myopic oracle"
    policy = "myopic"

    [[online_learners]]         # optional: learned by interacting with the world
    name = "PPO"
    learner = "ppo"
    n_steps = 200_000

    [ope]                       # how to estimate their values from the log
    estimators = ["ips", "snips", "dr"]

    [online]                    # ground truth in the simulator
    n_sessions = 20_000
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError, InputTypeError, MissingInputError
from offrec.core.policy import BasePolicy
from offrec.policies.loggers import LOGGER_KINDS, logging_policy, logging_policy_kwargs
from offrec.policies.references import REFERENCES as REFERENCE_KINDS
from offrec.policies.references import make_reference
from offrec.rl.algos import learner_name
from offrec.sim.config import WorldConfig

if TYPE_CHECKING:
    from offrec.sim import World
from offrec.training import (
    BANDIT_LEARNERS,
    LEARNERS,
    OFFLINE_LEARNERS,
    OFFLINE_TRAINABLE,
    RL_LEARNERS,
    check_params,
    learner_params,
)

# every name below is derived from the registry of the package that owns the concept
LOGGERS = LOGGER_KINDS
#: hand-made targets: the logger itself, a logging policy of its own, or an oracle
REFERENCES = REFERENCE_KINDS.names
__all__ = [
    "BANDIT_LEARNERS",
    "LEARNERS",
    "LOGGERS",
    "OFFLINE_LEARNERS",
    "OFFLINE_TRAINABLE",
    "REFERENCES",
    "RL_LEARNERS",
    "PipelineConfig",
    "PolicySpec",
    "OnlineLearnerSpec",
    "ReferenceSpec",
    "check_head",
    "check_params",
    "learner_params",
]


def check_head(head: dict[str, Any], where: str) -> None:
    """Raise ``InputError`` when ``head`` does not build a :class:`~offrec.core.policy.Head`."""
    from offrec.core.policy import Head

    try:
        Head(**head)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} head {head!r}: {str(exc).splitlines()[0]}") from None


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise InputTypeError(f"{where} must be {names}; got {value!r}")
    return value


@dataclass(frozen=True)
class LoggingSpec(ConfigCodec):
    """The logging policy (see :func:`offrec.policies.loggers.logging_policy`) and the log size."""

    policy: str = "softmax"
    beta: float = 1.0
    epsilon: float = 0.1
    noise: float = 0.5
    model_seed: int = 0
    support: tuple[int, ...] | None = None
    n_decisions: int | None = None
    n_sessions: int | None = None
    candidates: int | None = None  # large catalogs: a two-stage logger over its top M
    floor: float | None = None  # ... with this mass spread uniformly over the catalog

    def __post_init__(self) -> None:
        if (self.n_decisions is None) == (self.n_sessions is None):
            raise InputError("[logging] needs exactly one of n_decisions or n_sessions")
        for name in ("n_decisions", "n_sessions"):
            v = getattr(self, name)
            if v is not None and (_typed(v, int, f"[logging] {name}") < 1):
                raise InputError(f"[logging] {name} must be >= 1; got {v}")
        if self.policy not in LOGGERS:
            raise InputError(
                f"[logging] policy must be one of {list(LOGGERS)}; got {self.policy!r}"
            )

    def create(self, world: World) -> BasePolicy:
        """The logging policy in ``world`` (:func:`offrec.policies.loggers.logging_policy`)."""
        kw = logging_policy_kwargs(
            self.policy,
            strict=False,
            beta=self.beta,
            epsilon=self.epsilon,
            noise=self.noise,
            model_seed=self.model_seed,
            support=None if self.support is None else list(self.support),
        )
        if self.candidates is not None:  # a large catalog: the two-stage logger
            kw.update(candidates=self.candidates, floor=self.floor or 0.0)
        return logging_policy(world, self.policy, **kw)


@dataclass(frozen=True)
class PolicySpec(ConfigCodec):
    """A policy trained from the log: ``learner`` and its ``params``; ``head`` turns its
    scores into the evaluated policy (default greedy)."""

    name: str
    learner: str
    params: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=lambda: {"kind": "greedy"})

    def __post_init__(self) -> None:
        _typed(self.name, str, "[[policies]] name")
        # a deprecated name (``thompson``, ``double_dqn``): warn, rename
        object.__setattr__(self, "learner", learner_name(self.learner))
        if self.learner not in LEARNERS:
            raise InputError(
                f"[[policies]] '{self.name}': learner must be one of {list(LEARNERS)}; got {self.learner!r}"
            )
        _typed(self.params, dict, f"[[policies]] '{self.name}' params")
        _typed(self.head, dict, f"[[policies]] '{self.name}' head")

    @property
    def is_rl(self) -> bool:
        return self.learner in RL_LEARNERS


@dataclass(frozen=True)
class OnlineLearnerSpec(ConfigCodec):
    """A policy learned by interacting with the world for ``n_steps`` decisions, not from
    the log: a bandit learner or ``"ppo"`` / ``"dqn"`` (stable-baselines3), run by
    :func:`offrec.rl.online_baseline.learn_online` with these arguments."""

    name: str
    learner: str
    n_steps: int
    params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1000
    eval_every: int | None = None
    eval_sessions: int = 2000

    def __post_init__(self) -> None:
        from offrec.rl.online_baseline import ONLINE_LEARNERS  # torch: only when used

        where = f"[[online_learners]] '{self.name}'"
        _typed(self.name, str, "[[online_learners]] name")
        object.__setattr__(self, "learner", learner_name(self.learner))  # old names warn
        if self.learner not in ONLINE_LEARNERS:
            raise InputError(
                f"{where}: learner must be one of {list(ONLINE_LEARNERS)}; got {self.learner!r}"
            )
        _typed(self.params, dict, f"{where} params")
        for key, low in (("n_steps", 1), ("batch_size", 1), ("eval_sessions", 2)):
            if _typed(getattr(self, key), int, f"{where} {key}") < low:
                raise InputError(f"{where} {key} must be >= {low}; got {getattr(self, key)}")
        if self.eval_every is not None and _typed(self.eval_every, int, f"{where} eval_every") < 1:
            raise InputError(f"{where} eval_every must be >= 1; got {self.eval_every}")


@dataclass(frozen=True)
class ReferenceSpec(ConfigCodec):
    """A hand-made target: the logger itself, uniform, another logging policy, or an oracle."""

    name: str
    policy: str
    epsilon: float = 0.0
    beta: float = 1.0
    noise: float = 0.5
    gamma: float = 0.25

    def __post_init__(self) -> None:
        _typed(self.name, str, "[[references]] name")
        if self.policy not in REFERENCES:
            raise InputError(
                f"[[references]] '{self.name}': policy must be one of {list(REFERENCES)}; got {self.policy!r}"
            )

    @property
    def role(self) -> str:
        """``logger``, ``oracle`` or ``hand-made`` (:data:`offrec.policies.references.REFERENCES`)."""
        return REFERENCE_KINDS[self.policy].role

    def create(self, world: World, logger: BasePolicy, model_seed: int = 0) -> BasePolicy:
        """The reference in ``world``: ``logger`` itself for ``policy = "logger"``, else
        :func:`offrec.policies.references.make_reference` with this entry's options."""
        if self.policy == "logger":
            return logger
        return make_reference(
            self.policy,
            world,
            epsilon=self.epsilon,
            beta=self.beta,
            noise=self.noise,
            gamma=self.gamma,
            model_seed=model_seed,
        )


@dataclass(frozen=True)
class OPESpec(ConfigCodec):
    """Estimators and intervals. Bandit estimators apply in bandit mode (horizon 1),
    sequential ones (pdis, tis, wpdis, wtis, dr, fqe) in session mode.

    ``holdout`` is the fraction of sessions kept out of training and used for the
    estimates: a policy scored on the rows it was trained on looks better than it is
    (it has fitted their noise). 0 trains and evaluates on the whole log.
    """

    estimators: tuple[str, ...] = ("ips", "snips", "dm", "dr")
    holdout: float = 0.5
    # "logistic" / "gbm" (dense), "bilinear" (offrec.reward.bilinear: large catalogs,
    # cross-fitted on the evaluated rows), or the name of a trained (context, item) policy
    reward_model: str = "logistic"
    n_folds: int = 3
    interval: str = "bootstrap"
    n_bootstrap: int = 500
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.estimators, tuple):
            object.__setattr__(
                self, "estimators", tuple(_typed(self.estimators, list, "[ope] estimators"))
            )
        if not self.estimators:
            raise InputError("[ope] estimators must name at least one estimator")
        h = _typed(self.holdout, float, "[ope] holdout")
        if not 0.0 <= h < 1.0:
            raise InputError(f"[ope] holdout must be in [0, 1); got {h}")


@dataclass(frozen=True)
class OnlineSpec(ConfigCodec):
    """Ground truth: exact in bandit mode; Monte-Carlo over ``n_sessions`` in session mode."""

    n_sessions: int = 20_000
    seed: int = 1


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    world: WorldConfig
    logging: LoggingSpec
    world_seed: int = 0
    seed: int = 0
    description: str = ""
    policies: tuple[PolicySpec, ...] = ()
    references: tuple[ReferenceSpec, ...] = ()
    online_learners: tuple[OnlineLearnerSpec, ...] = ()
    ope: OPESpec = field(default_factory=OPESpec)
    online: OnlineSpec = field(default_factory=OnlineSpec)

    @property
    def mode(self) -> str:
        """``"session"`` when the world's sessions last more than one step (``horizon > 1``),
        else ``"bandit"``: the one place the pipeline's log mode is decided (the mode
        :func:`offrec.ope.evaluate` would detect on its log)."""
        return "session" if self.world.horizon > 1 else "bandit"

    @property
    def roles(self) -> dict[str, str]:
        """``{policy: role}``: trained policies (offline and online) are ``learned``;
        references take their kind's role: the ``logger``, ``oracle``s (best_item, myopic,
        lookahead: they know the true click model) or ``hand-made`` rules (uniform,
        softmax, epsilon_greedy)."""
        out = {p.name: "learned" for p in self.policies}
        out.update({o.name: "learned" for o in self.online_learners})
        out.update({r.name: r.role for r in self.references})
        return out

    @property
    def value_label(self) -> str:
        """What a policy's value is called: ``"clicks per session"`` or ``"CTR"``."""
        return "clicks per session" if self.mode == "session" else "CTR"

    def __post_init__(self) -> None:
        names = [p.name for p in self.policies] + [r.name for r in self.references]
        names += [o.name for o in self.online_learners]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(
                "policy names must be unique across [[policies]], [[references]] and "
                f"[[online_learners]]; repeated: {dup}"
            )
        if not names:
            raise InputError(
                "a pipeline needs at least one [[policies]], [[references]] or [[online_learners]] entry"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PipelineConfig:
        top = (
            "name",
            "seed",
            "description",
            "world",
            "logging",
            "policies",
            "references",
            "online_learners",
            "ope",
            "online",
        )
        unknown = sorted(set(raw) - set(top))
        if unknown:
            raise InputError(
                f"unknown key(s) {unknown} at the top of the pipeline; valid keys: {', '.join(top)}"
            )
        if "logging" not in raw:
            raise InputError(
                "the pipeline needs a [logging] table (policy and n_decisions or n_sessions)"
            )
        world = dict(raw.get("world", {}))
        world_seed = _typed(world.pop("seed", 0), int, "[world] seed")

        problems: list[str] = []

        def build(cls_: type[ConfigCodec], data: Any, where: str) -> Any:
            try:
                return cls_.from_dict(data, where=where)
            except InputError as exc:
                problems.append(str(exc))
                return None

        def attempt(fn: Any, *a: Any) -> Any:
            try:
                return fn(*a)
            except InputError as exc:
                problems.append(str(exc))
                return None

        name = attempt(_typed, raw.get("name", "pipeline"), str, "name")
        seed = attempt(_typed, raw.get("seed", 0), int, "seed")
        description = attempt(_typed, raw.get("description", ""), str, "description")
        world_cfg = attempt(WorldConfig.from_dict, world)
        logging_spec = build(LoggingSpec, raw["logging"], "[logging]")
        policies = [
            build(PolicySpec, p, "[[policies]]")
            for p in attempt(_typed, raw.get("policies", []), list, "policies") or []
        ]
        references = [
            build(ReferenceSpec, r, "[[references]]")
            for r in attempt(_typed, raw.get("references", []), list, "references") or []
        ]
        online_learners = [
            build(OnlineLearnerSpec, o, "[[online_learners]]")
            for o in attempt(_typed, raw.get("online_learners", []), list, "online_learners") or []
        ]
        ope = build(OPESpec, raw.get("ope", {}), "[ope]")
        online = build(OnlineSpec, raw.get("online", {}), "[online]")
        if world_cfg is not None:
            problems += _name_problems(world_cfg, [p for p in policies if p], ope)
        if problems:
            raise InputError(_joined(problems))
        cfg = attempt(
            lambda: cls(
                name=name,
                seed=seed,
                description=description,
                world=world_cfg,
                world_seed=world_seed,
                logging=logging_spec,
                policies=tuple(policies),
                references=tuple(references),
                online_learners=tuple(online_learners),
                ope=ope,
                online=online,
            )
        )
        if problems:
            raise InputError(_joined(problems))
        return cfg

    def validate(self) -> None:
        """Check every name (estimators, interval, reward model, learners and their params,
        heads) against the registries; raise one ``InputError`` listing all problems."""
        problems = _name_problems(self.world, list(self.policies), self.ope)
        if problems:
            raise InputError(_joined(problems))

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        from offrec.core.codec import read_text_file

        p = Path(path)
        if not p.exists():
            raise MissingInputError(f"pipeline file not found: {p}")
        try:
            raw = tomllib.loads(read_text_file(p, "pipeline file"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{p}: invalid TOML: {exc}") from None
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["world"] = {"seed": self.world_seed, **self.world.to_dict()}
        del d["world_seed"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=list)


def _joined(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the pipeline: " + " | ".join(problems)


def _name_problems(
    world: WorldConfig, policies: list[PolicySpec], ope: OPESpec | None
) -> list[str]:
    """Every unknown name in a pipeline, checked against the owning package's registry."""
    problems: list[str] = []
    for spec in policies:
        where = f"[[policies]] '{spec.name}'"
        try:
            check_params(spec.learner, spec.params, f"{where} params")
        except InputError as exc:
            problems.append(str(exc))
        try:
            check_head(spec.head, where)
        except InputError as exc:
            problems.append(str(exc))
    if ope is None:
        return problems
    from offrec.ope.estimators import ESTIMATORS
    from offrec.ope.evaluate import SESSION_ESTIMATORS
    from offrec.ope.intervals import METHODS
    from offrec.reward import ALL_KINDS

    session = world.horizon > 1
    valid = list(SESSION_ESTIMATORS if session else ESTIMATORS)
    mode = "session mode (horizon > 1)" if session else "bandit mode (horizon 1)"
    bad = [e for e in ope.estimators if e not in valid]
    if bad:
        problems.append(f"[ope] estimators {bad} do not apply in {mode}; valid: {', '.join(valid)}")
    if ope.interval not in METHODS:
        problems.append(f"[ope] interval must be one of {list(METHODS)}; got {ope.interval!r}")
    else:
        from offrec.ope.intervals import check_interval_options

        try:  # the one rule for n_bootstrap and alpha (e.g. enough resamples for an interval)
            check_interval_options(ope.interval, ope.n_bootstrap, ope.alpha)
        except InputError as exc:
            problems.append(f"[ope] {exc}")
    pair_models = [q.name for q in policies if q.learner == "hybrid"]  # (context, item) models
    if ope.reward_model not in ALL_KINDS and ope.reward_model not in pair_models:
        problems.append(
            f"[ope] reward_model must be one of {list(ALL_KINDS)} or a hybrid policy's name "
            f"{pair_models}; got {ope.reward_model!r}"
        )
    return problems
