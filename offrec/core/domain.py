r"""The declared reward domain as the contract between a log and everything that reads it.

A log declares its reward domain (``offrec.logs.schema.reward_domain``): ``{"kind":
"binary"}`` (clicks in {0, 1}, the default) or ``{"kind": "continuous", "low": a,
"high": b}``. Every learner and estimator reads it and does one of three things:

- **takes any reward** (the mean-reward and ridge learners, IPS/SNIPS): nothing to do;
- **takes a bounded reward on the unit scale** (UCB1's confidence width, the logistic
  and reward-model learners, the IPW learner's non-negative weights, the reward models
  of DM/DR): it learns from :math:`r' = (r - a) / (b - a) \in [0, 1]` (:func:`to_unit`)
  and maps values back with :func:`from_unit`; for clicks :math:`r' = r`;
- **needs clicks** (the Beta-Bernoulli posterior, the model-based session estimator's
  logistic click model): :func:`require_binary` refuses any other domain with a message
  that names what fits instead.

>>> cont = {"kind": "continuous", "low": -1.0, "high": 1.0}
>>> to_unit(np.array([-1.0, 0.0, 1.0]), cont).tolist()
[0.0, 0.5, 1.0]
>>> from_unit(np.array([0.25]), cont).tolist()
[-0.5]
>>> require_binary(cont, "bernoulli-ts", "ucb1 or epsilon-greedy")
Traceback (most recent call last):
...
offrec.core.errors.InputError: bernoulli-ts needs a binary (0/1 click) reward; this log's reward is continuous in [-1.0, 1.0]; use ucb1 or epsilon-greedy
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.errors import InputError

__all__ = ["bounds", "describe", "from_unit", "is_binary", "require_binary", "to_unit"]

Domain = dict[str, Any] | None


def is_binary(domain: Domain) -> bool:
    """Whether the domain is clicks (``None`` counts as the binary default)."""
    return (domain or {}).get("kind", "binary") == "binary"


def bounds(domain: Domain) -> tuple[float, float]:
    """``(low, high)`` of one reward: ``(0, 1)`` for clicks, the declared bounds otherwise."""
    if is_binary(domain):
        return (0.0, 1.0)
    assert domain is not None
    return (float(domain["low"]), float(domain["high"]))


def describe(domain: Domain) -> str:
    """``"binary (0/1 clicks)"`` or ``"continuous in [a, b]"``."""
    if is_binary(domain):
        return "binary (0/1 clicks)"
    low, high = bounds(domain)
    return f"continuous in [{low}, {high}]"


def require_binary(domain: Domain, who: str, fits: str) -> None:
    """Raise ``InputError`` unless the domain is clicks; the message names ``who`` needs
    clicks and ``fits``, the learners or estimators that take this log's reward."""
    if not is_binary(domain):
        raise InputError(
            f"{who} needs a binary (0/1 click) reward; this log's reward is "
            f"{describe(domain)}; use {fits}"
        )


def to_unit(reward: Any, domain: Domain) -> np.ndarray:
    r"""Rewards on the unit scale, :math:`(r - a) / (b - a)` clipped to [0, 1] (the clip
    only absorbs float32 rounding at the bounds); clicks unchanged. Shape kept."""
    r = np.asarray(reward, dtype=np.float64)
    if is_binary(domain):
        return r
    low, high = bounds(domain)
    return np.clip((r - low) / (high - low), 0.0, 1.0)


def from_unit(value: Any, domain: Domain) -> np.ndarray:
    r"""Inverse of :func:`to_unit`: :math:`a + (b - a) v`; clicks unchanged."""
    v = np.asarray(value, dtype=np.float64)
    if is_binary(domain):
        return v
    low, high = bounds(domain)
    return low + (high - low) * v
