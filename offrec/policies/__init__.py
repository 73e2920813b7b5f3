"""Policies: the protocol, heads, logging policies and learners."""

from offrec.policies.base import (
    BasePolicy,
    Head,
    Policy,
    ScorePolicy,
    UniformPolicy,
    sample_from_dist,
)

__all__ = ["BasePolicy", "Head", "Policy", "ScorePolicy", "UniformPolicy", "sample_from_dist"]
