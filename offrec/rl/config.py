"""Offline RL configuration: :class:`RLConfig` (hyper-parameters, JSON round trip) and the
d3rlpy algorithm it builds. Kept apart from the training loop so a saved Q-policy can be
rebuilt without importing the loop."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError
from offrec.core.threads import torch_threads
from offrec.core.validation import check_scalar
from offrec.rl.algos import ALGOS

__all__ = [
    "ALGOS",
    "ALGO_CONFIGS",
    "BCQConfig",
    "CQLConfig",
    "DQNConfig",
    "DoubleDQNConfig",
    "MATMUL_PRECISIONS",
    "QLearningConfig",
    "RLConfig",
    "RuntimeConfig",
    "SAMPLERS",
    "algo_params",
    "build_algo",
    "deterministic",
    "fused_adam_factory_class",
    "matmul_precision",
    "other_algo_params",
    "seeded",
    "threads",
]

SAMPLERS = ("vectorized", "default")
MATMUL_PRECISIONS = ("highest", "high", "medium")


# -- per-algorithm configs (as d3rlpy: a config class per algorithm) ----------------------
_RUNTIME_FIELDS = (
    "seed",
    "n_threads",
    "matmul_precision",
    "fused_adam",
    "lean_q_function",
    "sampler",
    "log_every",
    "eval_every",
    "eval_sessions",
    "eval_seed",
)


@dataclass(frozen=True)
class QLearningConfig(ConfigCodec):
    """Hyper-parameters every discrete Q-learning algorithm has (the fields of the same
    name in :class:`RLConfig`); a subclass per algorithm adds its own and names it in
    ``ALGO``. Validated by the one set of rules, :class:`RLConfig`'s.

    >>> CQLConfig(n_steps=500, alpha=0.1).to_rl_config(RuntimeConfig(seed=3)).seed
    3
    """

    CODEC_NAME = "Q-learning config"
    ALGO: ClassVar[str] = ""

    n_steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    gamma: float = 0.9
    target_update_interval: int = 1_000
    hidden_units: tuple[int, ...] = (128, 128)
    n_critics: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        self.to_rl_config()  # the one set of checks: RLConfig's (errors name its fields)

    def to_rl_config(self, runtime: RuntimeConfig | None = None) -> RLConfig:
        """The flat :class:`RLConfig` (what a saved Q-policy stores) of this algorithm's
        hyper-parameters and the ``runtime`` knobs (defaults when None)."""
        rt = runtime or RuntimeConfig()
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        knobs = {k: getattr(rt, k) for k in _RUNTIME_FIELDS}
        return RLConfig(algo=self.ALGO, **fields, **knobs)


@dataclass(frozen=True)
class DQNConfig(QLearningConfig):
    """DQN (d3rlpy ``DQNConfig``): the shared hyper-parameters only."""

    CODEC_NAME = "DQN config"
    ALGO: ClassVar[str] = "dqn"


@dataclass(frozen=True)
class DoubleDQNConfig(QLearningConfig):
    """Double DQN (d3rlpy ``DoubleDQNConfig``): the shared hyper-parameters only."""

    CODEC_NAME = "Double DQN config"
    ALGO: ClassVar[str] = "double-dqn"


@dataclass(frozen=True)
class CQLConfig(QLearningConfig):
    """Discrete CQL: ``alpha`` weighs the conservative term
    ``alpha * (logsumexp_a Q(s,a) - Q(s,a_logged))``."""

    CODEC_NAME = "CQL config"
    ALGO: ClassVar[str] = "cql"
    alpha: float = 0.05


@dataclass(frozen=True)
class BCQConfig(QLearningConfig):
    """Discrete BCQ: actions whose imitation probability is below ``bcq_threshold`` times
    the best one's are never taken (d3rlpy's ``action_flexibility``)."""

    CODEC_NAME = "BCQ config"
    ALGO: ClassVar[str] = "bcq"
    bcq_threshold: float = 0.3


@dataclass(frozen=True)
class RuntimeConfig(ConfigCodec):
    """How a run executes, apart from what it learns: the seed, torch threads and matmul
    precision, the fused Adam and lean Q-function switches, the sampler, and how often
    the loss is logged and the policy evaluated (the fields of the same name in
    :class:`RLConfig`, where they are documented)."""

    CODEC_NAME = "RL runtime config"

    seed: int = 0
    n_threads: int = 1
    matmul_precision: str = "highest"
    fused_adam: bool = True
    lean_q_function: bool = True
    sampler: str = "vectorized"
    log_every: int = 500
    eval_every: int = 0
    eval_sessions: int = 4_000
    eval_seed: int = 2024


@dataclass(frozen=True)
class RLConfig(ConfigCodec):
    """Hyper-parameters of an offline RL run (JSON round-trip; unknown keys rejected).

    Attributes:
        algo: ``"dqn"``, ``"double-dqn"``, ``"cql"`` (DiscreteCQL) or ``"bcq"``
            (DiscreteBCQ).
        n_steps: gradient steps. batch_size: transitions per step.
        learning_rate: Adam step size. gamma: discount of the TD target.
        target_update_interval: steps between target-network copies.
        alpha: CQL's conservative weight (``alpha * (logsumexp_a Q(s,a) - Q(s,a_logged))``).
        bcq_threshold: DiscreteBCQ's ``action_flexibility`` (actions whose imitation
            probability is below this fraction of the best one's are never taken).
        hidden_units: widths of the Q-network's MLP encoder.
        n_critics: Q-functions in the ensemble (their mean is the Q-value).
        seed: seeds ``d3rlpy.seed`` and the sampler.
        n_threads: torch intra-op threads during training (see module doc).
        matmul_precision: torch's float32 matmul precision during training
            (``torch.set_float32_matmul_precision``): ``"highest"`` (default) is plain
            float32, and gives the same weights on any CPU; ``"medium"`` lets the CPU's
            bfloat16 units multiply (float32 accumulation), about 2x faster per matmul
            on AVX-512-BF16 / AMX CPUs, but only there: elsewhere it is float32, so the
            learned policy depends on the machine. Measured on the README's
            ``online_vs_offline`` log (seed 0, 7.5k steps, true clicks per session over
            10,000 sessions): ``"highest"`` gave byte-identical weights with all CPU
            features (AMX) and with oneDNN and ATen limited to AVX2
            (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``), DQN 1.054, CQL 1.314;
            ``"medium"`` gave DQN 1.025 and CQL 1.316 on the AMX CPU and the float32
            numbers when limited to AVX2. Inference (the policy's Q-values) always runs
            at ``"highest"``.
        fused_adam: Adam as one fused kernel over all parameters
            (``torch.optim.Adam(fused=True)``) instead of a Python loop over tensors.
        lean_q_function: d3rlpy's default Q-network and loss computed with less work
            (:mod:`offrec.rl.qfunction`, through d3rlpy's ``q_func_factory``): a
            Q-network called twice on the same batch in one step computes once (CQL's
            ``Q(s, .)`` for its two losses: one backward pass instead of two; DQN's
            target on ``s'``), ``Q(s, a)`` is read with ``gather`` instead of a one-hot
            product, the Huber loss is one op. Same parameters and initialisation, so
            saved models load either way; the learned values are those of d3rlpy's
            Q-function up to float rounding (tested). Measured (``benchmarks/bench_rl.py``,
            batch 256, bf16 matmul and fused Adam in both, load ~2): median update 1.28
            -> 1.02 ms (DQN), 1.91 -> 1.42 ms (CQL). d3rlpy's own speed switch,
            ``compile_graph``, is CUDA-only, and ``torch.compile`` of the Q-networks was
            slower on this CPU (see ``benchmarks/bench_rl.py``).
        sampler: ``"vectorized"`` (offrec's) or ``"default"`` (d3rlpy's per-transition).
        log_every: steps per point of the loss curve (mean loss over the chunk).
        eval_every: steps between online evaluations in the world (0: only at the end);
            used only when ``train_rl`` gets a ``world``.
        eval_sessions, eval_seed: Monte-Carlo sessions and seed of each evaluation.
    """

    CODEC_NAME = "RL config"

    # the defaults are those of the per-algorithm configs and RuntimeConfig (one source)
    algo: str = "cql"
    n_steps: int = QLearningConfig.n_steps
    batch_size: int = QLearningConfig.batch_size
    learning_rate: float = QLearningConfig.learning_rate
    gamma: float = QLearningConfig.gamma
    target_update_interval: int = QLearningConfig.target_update_interval
    alpha: float = CQLConfig.alpha
    bcq_threshold: float = BCQConfig.bcq_threshold
    hidden_units: tuple[int, ...] = QLearningConfig.hidden_units
    n_critics: int = QLearningConfig.n_critics
    seed: int = RuntimeConfig.seed
    n_threads: int = RuntimeConfig.n_threads
    matmul_precision: str = RuntimeConfig.matmul_precision
    fused_adam: bool = RuntimeConfig.fused_adam
    lean_q_function: bool = RuntimeConfig.lean_q_function
    sampler: str = RuntimeConfig.sampler
    log_every: int = RuntimeConfig.log_every
    eval_every: int = RuntimeConfig.eval_every
    eval_sessions: int = RuntimeConfig.eval_sessions
    eval_seed: int = RuntimeConfig.eval_seed

    def __post_init__(self) -> None:
        if self.algo in ALGOS.aliases:  # an old spelling (``double_dqn``): warn, rename
            object.__setattr__(self, "algo", ALGOS.resolve(self.algo, "RLConfig.algo"))
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        self._validate()

    @property
    def algo_config(self) -> QLearningConfig:
        """This run's algorithm config (:class:`DQNConfig`, :class:`CQLConfig`, ...)."""
        cls = ALGO_CONFIGS[ALGOS.resolve(self.algo)]
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})

    @property
    def runtime(self) -> RuntimeConfig:
        """This run's runtime knobs (:class:`RuntimeConfig`)."""
        return RuntimeConfig(**{k: getattr(self, k) for k in _RUNTIME_FIELDS})

    def _validate(self) -> None:
        ALGOS.resolve(self.algo, "RLConfig.algo")
        if self.sampler not in SAMPLERS:
            raise InputError(
                f"RLConfig.sampler must be one of {list(SAMPLERS)}; got {self.sampler!r}"
            )
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise InputError(
                f"RLConfig.matmul_precision must be one of {list(MATMUL_PRECISIONS)}; "
                f"got {self.matmul_precision!r}"
            )
        for name in ("fused_adam", "lean_q_function"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"RLConfig.{name} must be true or false; got {getattr(self, name)!r}"
                )
        ints = {
            "n_steps": 1,
            "batch_size": 1,
            "target_update_interval": 1,
            "n_critics": 1,
            "seed": 0,
            "n_threads": 1,
            "log_every": 1,
            "eval_every": 0,
            "eval_sessions": 2,
            "eval_seed": 0,
        }
        for name, low in ints.items():
            check_scalar(getattr(self, name), f"RLConfig.{name}", int, min=low)
        check_scalar(
            self.learning_rate, "RLConfig.learning_rate", float, min=0.0, min_inclusive=False
        )
        check_scalar(self.gamma, "RLConfig.gamma", float, min=0.0, max=1.0)
        check_scalar(self.alpha, "RLConfig.alpha", float, min=0.0)
        check_scalar(
            self.bcq_threshold,
            "RLConfig.bcq_threshold",
            float,
            min=0.0,
            max=1.0,
            min_inclusive=False,
        )
        if not isinstance(self.hidden_units, tuple) or not self.hidden_units:
            raise InputError(
                f"RLConfig.hidden_units must be a non-empty list of ints; got {self.hidden_units!r}"
            )
        for i, h in enumerate(self.hidden_units):
            check_scalar(h, f"RLConfig.hidden_units[{i}]", int, min=1)


threads = torch_threads
"""Run a block with ``torch.set_num_threads(n)``, restoring the previous count
(:func:`offrec.core.threads.torch_threads`)."""


#: algorithm name (:data:`offrec.rl.algos.ALGOS`) -> its config class
ALGO_CONFIGS: dict[str, type[QLearningConfig]] = {
    c.ALGO: c for c in (DQNConfig, DoubleDQNConfig, CQLConfig, BCQConfig)
}


def algo_params(algo: str) -> list[str]:
    """The keys a pipeline's or ``--param``'s RL ``params`` take for ``algo``: its
    config's fields, then the runtime knobs."""
    cls = ALGO_CONFIGS[ALGOS.resolve(algo, "algo")]
    return [f.name for f in dataclasses.fields(cls)] + list(_RUNTIME_FIELDS)


def other_algo_params(algo: str) -> list[str]:
    """Keys of :class:`RLConfig` that another algorithm takes but ``algo`` does not (e.g.
    ``alpha`` for DQN): read from older files and ignored."""
    own = set(algo_params(algo))
    return [f.name for f in dataclasses.fields(RLConfig) if f.name not in own | {"algo"}]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under ``d3rlpy.seed(seed)``, then put the global generators back.

    d3rlpy draws from the global ``random``, ``numpy.random`` and ``torch`` generators
    (network initialisation, its default sampler), and ``d3rlpy.seed`` seeds all three.
    Their states are saved before and restored after the block, so training is
    reproducible and the caller's global random state is left as it was.
    """
    import random

    from offrec.rl._d3rlpy import d3rlpy_module

    # the legacy global numpy state is exactly what d3rlpy.seed touches: save it to restore it
    saved = random.getstate(), np.random.get_state(), torch.random.get_rng_state()  # noqa: NPY002
    try:
        d3rlpy_module().seed(seed)
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])  # noqa: NPY002
        torch.random.set_rng_state(saved[2])


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Run a block with ``torch.use_deterministic_algorithms(True)``, then restore the
    caller's setting (and its ``warn_only``).

    Torch then uses its deterministic kernels where it has a choice and raises on an op
    that has none, so the same data, config and machine give the same weights run after
    run. It does not make different CPUs agree: matrix kernels differ by instruction set
    (AVX2, AVX-512, AMX), and ``matmul_precision="medium"`` multiplies in bfloat16 only on
    CPUs with bfloat16 units (README, "Same seed, same numbers").
    """
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Run a block with ``torch.set_float32_matmul_precision(precision)``, then restore."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@functools.cache
def fused_adam_factory_class() -> type:
    """A d3rlpy ``OptimizerFactory`` (its public extension point) making a fused torch
    Adam; registered with d3rlpy under ``"offrec_fused_adam"``. Made on first use, as
    d3rlpy is imported lazily."""
    from offrec.rl._d3rlpy import d3rlpy_module

    optimizers = d3rlpy_module().optimizers

    @dataclasses.dataclass()
    class FusedAdamFactory(optimizers.OptimizerFactory):  # type: ignore[name-defined]
        """Adam with ``fused=True``: one kernel updates every parameter."""

        betas: tuple[float, float] = (0.9, 0.999)
        eps: float = 1e-8

        def create_optimizer(self, named_modules: Any, lr: float) -> torch.optim.Adam:
            params = {id(p): p for _, m in named_modules for p in m.parameters()}
            return torch.optim.Adam(
                list(params.values()), lr=lr, betas=self.betas, eps=self.eps, fused=True
            )

        @staticmethod
        def get_type() -> str:
            return "offrec_fused_adam"

    optimizers.register_optimizer_factory(FusedAdamFactory)
    return FusedAdamFactory


def build_algo(config: RLConfig) -> Any:
    """The (untrained, CPU) d3rlpy algorithm ``config`` describes."""
    from offrec.rl._d3rlpy import d3rlpy_module

    d3rlpy = d3rlpy_module()

    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "gamma": config.gamma,
        "n_critics": config.n_critics,
        "target_update_interval": config.target_update_interval,
        "encoder_factory": d3rlpy.models.VectorEncoderFactory(
            hidden_units=list(config.hidden_units)
        ),
    }
    if config.fused_adam:
        common["optim_factory"] = fused_adam_factory_class()()
    if config.lean_q_function:
        from offrec.rl.qfunction import lean_q_func_factory_class

        common["q_func_factory"] = lean_q_func_factory_class()()
    if config.algo == "cql":
        common["alpha"] = config.alpha
    elif config.algo == "bcq":
        common["action_flexibility"] = config.bcq_threshold
    cfg: Any = getattr(d3rlpy.algos, ALGOS[config.algo])(**common)
    return cfg.create(device="cpu:0")
