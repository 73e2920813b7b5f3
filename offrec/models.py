"""Load any saved offrec model folder: a bandit/offline learner or an RL Q-policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offrec.core.errors import MissingInputError


def load_model(
    folder: str | Path, *, n_actions: int | None = None, obs_dim: int | None = None
) -> Any:
    """Load the policy saved in ``folder`` (``policy.json`` from
    :func:`offrec.policies.persist.save_policy`, or ``qpolicy.json`` from
    :meth:`offrec.rl.QPolicy.save`). Sizes, when given, are checked."""
    folder = Path(folder)
    if (folder / "policy.json").is_file():
        from offrec.policies.persist import load_policy

        return load_policy(folder, n_actions=n_actions, context_dim=obs_dim)
    if (folder / "qpolicy.json").is_file():
        from offrec.rl.policy import load_q_policy

        return load_q_policy(folder, n_actions=n_actions, obs_dim=obs_dim)
    if not folder.exists():
        raise MissingInputError(f"no model at {folder}")
    raise MissingInputError(f"no saved model in {folder}: expected policy.json or qpolicy.json")


def save_model(policy: Any, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Save a learner or a Q-policy to ``folder`` (atomic)."""
    if hasattr(policy, "write_to"):  # offrec.rl.QPolicy
        return Path(policy.save(folder, overwrite=overwrite))
    from offrec.policies.persist import save_policy

    return save_policy(policy, folder, overwrite=overwrite)
