"""offrec: simulate logged recommendation data, train policies offline, evaluate them off-policy."""

from offrec import sim  # noqa: E402  (registers the gymnasium env "offrec/Recommender-v0")
from offrec.core.version import __version__

__all__ = ["__version__", "sim"]
