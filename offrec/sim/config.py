"""``WorldConfig``: every knob of the simulated recommendation platform."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError, InputTypeError, MissingInputError

DEFAULT_TOPICS = (
    "sports", "news", "movies", "music", "games", "food", "travel", "tech",
    "fashion", "science", "comedy", "health", "finance", "cars", "pets", "books",
)  # fmt: skip


@dataclass(frozen=True)
class WorldConfig(ConfigCodec):
    """Configuration of a :class:`~offrec.sim.World` (see README "The world" for the model).

    Click probability of item ``i`` for user ``u`` in session state ``s``::

        q = sigmoid(theta0 + theta1 * <w_u, v_i> + b_i
                    - repeat_penalty * [i shown in the last repeat_window steps]
                    - boredom * f_{t_i})

    with per-topic fatigue ``f_t <- fatigue_decay * f_t + [topic shown == t]`` after each
    step. Before the horizon, the user leaves after a step with probability
    ``sigmoid(leave_base + leave_fatigue * f_{t_a} - leave_click * click)``.
    ``horizon == 1`` is bandit mode (one decision per user, exact ground truth).
    """

    CODEC_NAME = "world config"

    n_items: int = 100
    n_topics: int = 8
    n_users: int = 10_000
    latent_dim: int = 8
    horizon: int = 1
    topic_names: tuple[str, ...] | None = None
    profile_concentration: float = 0.3
    user_noise: float = 0.3
    item_noise: float = 0.4
    quality_std: float = 0.5
    obs_noise: float = 0.05
    theta0: float = -3.5
    theta1: float = 4.0
    repeat_penalty: float = 1.5
    repeat_window: int = 3
    boredom: float = 0.3
    fatigue_decay: float = 0.7
    leave_base: float = -4.5
    leave_fatigue: float = 2.0
    leave_click: float = 1.0

    def __post_init__(self) -> None:
        if self.topic_names is not None and not isinstance(self.topic_names, tuple):
            object.__setattr__(self, "topic_names", tuple(self.topic_names))
        self._validate()

    # -- validation ----------------------------------------------------------------------
    def _validate(self) -> None:
        ints = {
            "n_items": 2, "n_topics": 1, "n_users": 1, "latent_dim": 1,
            "horizon": 1, "repeat_window": 1,
        }  # fmt: skip
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputTypeError(f"WorldConfig.{name} must be an int; got {v!r}")
            if v < low:
                raise InputError(f"WorldConfig.{name} must be >= {low}; got {v}")
        for f in fields(self):
            if f.name in ints or f.name == "topic_names":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InputTypeError(f"WorldConfig.{f.name} must be a number; got {v!r}")
            if not math.isfinite(v):
                raise InputError(f"WorldConfig.{f.name} must be finite; got {v!r}")
        positive = ("profile_concentration",)
        non_negative = (
            "user_noise", "item_noise", "quality_std", "obs_noise",
            "repeat_penalty", "boredom", "leave_fatigue", "leave_click",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise InputError(f"WorldConfig.{name} must be > 0; got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise InputError(f"WorldConfig.{name} must be >= 0; got {getattr(self, name)}")
        if not 0.0 <= self.fatigue_decay <= 1.0:
            raise InputError(
                f"WorldConfig.fatigue_decay must be in [0, 1]; got {self.fatigue_decay}"
            )
        if self.topic_names is None and self.n_topics > len(DEFAULT_TOPICS):
            raise InputError(
                f"WorldConfig.topic_names must be given when n_topics > {len(DEFAULT_TOPICS)}; "
                f"got n_topics={self.n_topics}"
            )
        if self.topic_names is not None:
            if len(self.topic_names) != self.n_topics:
                raise InputError(
                    f"WorldConfig.topic_names must have n_topics={self.n_topics} names; "
                    f"got {len(self.topic_names)}"
                )
            if len(set(self.topic_names)) != len(self.topic_names):
                raise InputError(f"WorldConfig.topic_names must be unique; got {self.topic_names}")

    # -- derived -------------------------------------------------------------------------
    @property
    def topics(self) -> tuple[str, ...]:
        """Topic names (the first ``n_topics`` defaults unless ``topic_names`` is set)."""
        return self.topic_names or DEFAULT_TOPICS[: self.n_topics]

    @property
    def obs_dim(self) -> int:
        """Observation width: profile (n_topics) + fatigue (n_topics) + step fraction + last click."""
        return 2 * self.n_topics + 2

    @property
    def bandit(self) -> bool:
        return self.horizon == 1

    # -- serialisation (to_dict / to_json / from_dict / from_json / from_toml: ConfigCodec) --
    @classmethod
    def from_file(cls, path: str | Path) -> WorldConfig:
        """Read a JSON (``.json``) or TOML (``.toml``) world config file."""
        p = Path(path)
        if not p.is_file():
            raise MissingInputError(f"world config file not found: {p}")
        if p.suffix == ".toml":
            return cls.from_toml(p.read_text(), table="world")
        return cls.from_json(p.read_text())

    def replace(self, **changes: Any) -> WorldConfig:
        """A copy with ``changes`` applied (validated; unknown keys rejected)."""
        return WorldConfig.from_dict({**self.to_dict(), **changes})
