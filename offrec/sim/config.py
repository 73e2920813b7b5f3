"""``WorldConfig``: every knob of the simulated recommendation platform."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError, InputTypeError, MissingInputError

DEFAULT_TOPICS = (
    "sports",
    "news",
    "movies",
    "music",
    "games",
    "food",
    "travel",
    "tech",
    "fashion",
    "science",
    "comedy",
    "health",
    "finance",
    "cars",
    "pets",
    "books",
)


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

    **Bernoulli world** (``click_probs`` set, best built with :meth:`bernoulli`): the
    click probabilities are written down instead of drawn. ``click_probs`` is a
    ``(n_types, n_items)`` table; user ``u`` is of type ``u % n_types`` and, with no
    fatigue and no repeat, clicks item ``i`` with probability ``click_probs[type][i]``
    exactly. Each item is its own topic (``n_topics == n_items``), the observed profile
    of a user is its type's row (so one type = a context-free bandit), and the session
    dynamics (boredom, repeat penalty, leaving) act on ``logit(click_probs)`` as they act
    on the latent logit above. The latent-model fields (``theta0``, ``theta1``,
    ``latent_dim``, the noises, ``quality_std``, ``profile_concentration``) play no part
    and must stay at their defaults.
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
    click_probs: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.topic_names is not None and not isinstance(self.topic_names, tuple):
            object.__setattr__(self, "topic_names", tuple(self.topic_names))
        if self.click_probs is not None:
            object.__setattr__(self, "click_probs", _as_prob_table(self.click_probs))
        self._validate()

    # -- validation ----------------------------------------------------------------------
    def _validate(self) -> None:
        ints = {
            "n_items": 2,
            "n_topics": 1,
            "n_users": 1,
            "latent_dim": 1,
            "horizon": 1,
            "repeat_window": 1,
        }
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputTypeError(f"WorldConfig.{name} must be an int; got {v!r}")
            if v < low:
                raise InputError(f"WorldConfig.{name} must be >= {low}; got {v}")
        for f in fields(self):
            if f.name in ints or f.name in ("topic_names", "click_probs"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InputTypeError(f"WorldConfig.{f.name} must be a number; got {v!r}")
            if not math.isfinite(v):
                raise InputError(f"WorldConfig.{f.name} must be finite; got {v!r}")
        positive = ("profile_concentration",)
        non_negative = (
            "user_noise",
            "item_noise",
            "quality_std",
            "obs_noise",
            "repeat_penalty",
            "boredom",
            "leave_fatigue",
            "leave_click",
        )
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
        if self.click_probs is not None:
            self._validate_bernoulli(self.click_probs)

    def _validate_bernoulli(self, table: tuple[tuple[float, ...], ...]) -> None:
        n_types, n_items = len(table), len(table[0])
        for t, row in enumerate(table):
            if len(row) != n_items:
                raise InputError(
                    f"WorldConfig.click_probs rows must all have {n_items} items (row 0); "
                    f"row {t} has {len(row)}"
                )
            for i, p in enumerate(row):
                if not 0.0 <= p <= 1.0:  # also rejects nan
                    raise InputError(
                        f"WorldConfig.click_probs[{t}][{i}] must be a probability in [0, 1]; "
                        f"got {p!r}"
                    )
        derived = {"n_items": n_items, "n_topics": n_items, "latent_dim": n_items}
        for name, want in derived.items():
            if getattr(self, name) != want:
                raise InputError(
                    f"WorldConfig.{name} must be {want} (the number of items in click_probs; "
                    f"WorldConfig.bernoulli sets it); got {getattr(self, name)}"
                )
        if self.n_users % n_types:
            raise InputError(
                f"WorldConfig.n_users must be a multiple of the {n_types} user types in "
                f"click_probs (types are equally common); got {self.n_users}"
            )
        defaults = {f.name: f.default for f in fields(WorldConfig)}
        for name in _LATENT_FIELDS:
            if getattr(self, name) != defaults[name]:
                raise InputError(
                    f"WorldConfig.{name} has no effect when click_probs is given (clicks come "
                    f"from click_probs); leave it at its default {defaults[name]!r}, "
                    f"got {getattr(self, name)!r}"
                )

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

    @property
    def n_user_types(self) -> int | None:
        """Number of user types of a Bernoulli world (``None`` for the latent world)."""
        return None if self.click_probs is None else len(self.click_probs)

    # -- the Bernoulli world ---------------------------------------------------------------
    @classmethod
    def bernoulli(
        cls,
        click_probs: Any,
        *,
        horizon: int = 1,
        n_users: int | None = None,
        item_names: Any = None,
        **dynamics: Any,
    ) -> WorldConfig:
        """A world whose click probabilities are given, e.g. ``bernoulli([0.2, 0.5, 0.7])``.

        Args:
            click_probs: ``(n_items,)`` probabilities (one user type: a context-free
                bandit) or a ``(n_types, n_items)`` table, one row per user type.
            horizon: steps per session (1 = bandit mode, exact truth).
            n_users: population size, a multiple of ``n_types`` (default ``n_types``);
                user ``u`` is of type ``u % n_types``.
            item_names: one name per item (default the first topic names, or
                ``item0, item1, ...`` beyond 16 items).
            **dynamics: session-dynamics fields (``boredom``, ``repeat_penalty``,
                ``repeat_window``, ``fatigue_decay``, ``leave_base``, ``leave_fatigue``,
                ``leave_click``).

        >>> cfg = WorldConfig.bernoulli([0.2, 0.5, 0.7])
        >>> cfg.n_items, cfg.n_users, cfg.click_probs
        (3, 1, ((0.2, 0.5, 0.7),))
        """
        data = {"click_probs": click_probs, "horizon": horizon, **dynamics}
        if n_users is not None:
            data["n_users"] = n_users
        if item_names is not None:
            data["topic_names"] = item_names
        return cls.from_dict(data)

    # -- serialisation (to_json / from_json / from_toml: ConfigCodec, through these two) ----
    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.click_probs is None:  # latent worlds serialise as before the Bernoulli world
            del d["click_probs"]
        return d

    @classmethod
    def from_dict(cls, data: Any, *, where: str | None = None) -> WorldConfig:
        """Build from a mapping (:class:`ConfigCodec`); with ``click_probs`` (a flat list is
        one user type), the fields the table determines default to what it says."""
        if isinstance(data, dict) and data.get("click_probs") is not None:
            data = dict(data)
            table = _as_prob_table(data["click_probs"])
            data["click_probs"] = table
            n_types, n_items = len(table), len(table[0])
            for name in ("n_items", "n_topics", "latent_dim"):
                data.setdefault(name, n_items)
            data.setdefault("n_users", n_types)
            if n_items > len(DEFAULT_TOPICS):
                data.setdefault("topic_names", [f"item{i}" for i in range(n_items)])
        return super().from_dict(data, where=where)

    @classmethod
    def from_file(cls, path: str | Path) -> WorldConfig:
        """Read a JSON (``.json``) or TOML (``.toml``) world config file."""
        from offrec.core.codec import read_text_file

        p = Path(path)
        if not p.exists():
            raise MissingInputError(f"world config file not found: {p}")
        text = read_text_file(p, "world config file")
        if p.suffix == ".toml":
            return cls.from_toml(text, table="world")
        return cls.from_json(text)

    def replace(self, **changes: Any) -> WorldConfig:
        """A copy with ``changes`` applied (validated; unknown keys rejected)."""
        return WorldConfig.from_dict({**self.to_dict(), **changes})


# latent-model fields a Bernoulli world does not use (they must keep their defaults)
_LATENT_FIELDS = (
    "theta0",
    "theta1",
    "profile_concentration",
    "user_noise",
    "item_noise",
    "quality_std",
    "obs_noise",
)


def _as_prob_table(value: Any) -> tuple[tuple[float, ...], ...]:
    """``click_probs`` as a tuple of rows of floats: a flat list is one user type.

    Raises ``InputTypeError`` (a ``TypeError``) naming the first entry that is not a real number.
    """
    rule = "a list of probabilities or a list of rows of them (one per user type)"
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) == 0:
        raise InputTypeError(f"WorldConfig.click_probs must be {rule}; got {value!r}")
    rows = list(value)
    if not any(hasattr(r, "__len__") and not isinstance(r, str | bytes) for r in rows):
        rows = [rows]
    table = []
    for t, row in enumerate(rows):
        if isinstance(row, str | bytes) or not hasattr(row, "__len__") or len(row) == 0:
            raise InputTypeError(f"WorldConfig.click_probs must be {rule}; row {t} is {row!r}")
        out = []
        for i, p in enumerate(row):
            if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating):
                raise InputTypeError(
                    f"WorldConfig.click_probs[{t}][{i}] must be a number; got {p!r}"
                )
            out.append(float(p))
        table.append(tuple(out))
    return tuple(table)
