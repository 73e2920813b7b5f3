"""Offline RL configuration: :class:`RLConfig` (hyper-parameters, JSON round trip) and the
d3rlpy algorithm it builds. Kept apart from the training loop so a saved Q-policy can be
rebuilt without importing the loop."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from offrec.core.errors import InputError
from offrec.core.validation import check_known_keys, check_scalar

__all__ = ["ALGOS", "SAMPLERS", "RLConfig", "build_algo", "threads"]

ALGOS = ("dqn", "double_dqn", "cql", "bcq")
SAMPLERS = ("vectorized", "default")


@dataclass(frozen=True)
class RLConfig:
    """Hyper-parameters of an offline RL run (JSON round-trip; unknown keys rejected).

    Attributes:
        algo: ``"dqn"``, ``"double_dqn"``, ``"cql"`` (DiscreteCQL) or ``"bcq"``
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
        sampler: ``"vectorized"`` (offrec's) or ``"default"`` (d3rlpy's per-transition).
        log_every: steps per point of the loss curve (mean loss over the chunk).
        eval_every: steps between online evaluations in the world (0: only at the end);
            used only when ``train_rl`` gets a ``world``.
        eval_sessions, eval_seed: Monte-Carlo sessions and seed of each evaluation.
    """

    algo: str = "cql"
    n_steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    gamma: float = 0.9
    target_update_interval: int = 1_000
    alpha: float = 0.05
    bcq_threshold: float = 0.3
    hidden_units: tuple[int, ...] = (128, 128)
    n_critics: int = 1
    seed: int = 0
    n_threads: int = 1
    sampler: str = "vectorized"
    log_every: int = 500
    eval_every: int = 0
    eval_sessions: int = 4_000
    eval_seed: int = 2024

    def __post_init__(self) -> None:
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        self._validate()

    def _validate(self) -> None:
        if self.algo not in ALGOS:
            raise InputError(f"RLConfig.algo must be one of {list(ALGOS)}; got {self.algo!r}")
        if self.sampler not in SAMPLERS:
            raise InputError(
                f"RLConfig.sampler must be one of {list(SAMPLERS)}; got {self.sampler!r}"
            )
        ints = {
            "n_steps": 1, "batch_size": 1, "target_update_interval": 1, "n_critics": 1,
            "seed": 0, "n_threads": 1, "log_every": 1, "eval_every": 0, "eval_sessions": 2,
            "eval_seed": 0,
        }  # fmt: skip
        for name, low in ints.items():
            check_scalar(getattr(self, name), f"RLConfig.{name}", int, min=low)
        check_scalar(
            self.learning_rate, "RLConfig.learning_rate", float, min=0.0, min_inclusive=False
        )
        check_scalar(self.gamma, "RLConfig.gamma", float, min=0.0, max=1.0)
        check_scalar(self.alpha, "RLConfig.alpha", float, min=0.0)
        check_scalar(
            self.bcq_threshold, "RLConfig.bcq_threshold", float, min=0.0, max=1.0,
            min_inclusive=False,
        )  # fmt: skip
        if not isinstance(self.hidden_units, tuple) or not self.hidden_units:
            raise InputError(
                f"RLConfig.hidden_units must be a non-empty list of ints; got {self.hidden_units!r}"
            )
        for i, h in enumerate(self.hidden_units):
            check_scalar(h, f"RLConfig.hidden_units[{i}]", int, min=1)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """Build from a mapping; unknown keys are an error that lists the valid ones."""
        check_known_keys(data, cls, "RL config")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RLConfig:
        return cls.from_dict(json.loads(text))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_algo(config: RLConfig) -> Any:
    """The (untrained, CPU) d3rlpy algorithm ``config`` describes."""
    import d3rlpy

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
    algos = d3rlpy.algos
    if config.algo == "dqn":
        cfg: Any = algos.DQNConfig(**common)
    elif config.algo == "double_dqn":
        cfg = algos.DoubleDQNConfig(**common)
    elif config.algo == "cql":
        cfg = algos.DiscreteCQLConfig(alpha=config.alpha, **common)
    else:
        cfg = algos.DiscreteBCQConfig(action_flexibility=config.bcq_threshold, **common)
    return cfg.create(device="cpu:0")
