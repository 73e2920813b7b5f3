"""Deprecated name of :mod:`offrec.report.learning_curves` (plots of offline RL training
curves and online learning curves); kept so scripts that import it keep working."""

import warnings

from offrec.report.learning_curves import (
    plot_learning_curves,
    plot_training_curve,
    plot_value_curves,
    save_online_runs,
)

__all__ = ["plot_learning_curves", "plot_training_curve", "plot_value_curves", "save_online_runs"]

warnings.warn(
    "offrec.report.training is deprecated; import from offrec.report.learning_curves",
    DeprecationWarning,
    stacklevel=2,
)
