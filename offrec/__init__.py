"""offrec: simulate logged recommendation data, train policies offline, evaluate them off-policy."""

__version__ = "0.1.0"

from offrec import sim  # noqa: E402  (registers the gymnasium env "offrec/Recommender-v0")

__all__ = ["__version__", "sim"]
