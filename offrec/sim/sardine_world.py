r"""SARDINE's slate environments (``sardine-rec`` on PyPI; Deffayet et al., "SARDINE: a
simulator for automated recommendation in dynamic and interactive environments", 2023) as
worlds for offrec's slate estimators (:mod:`offrec.ope.slate`).

Optional: needs ``pip install sardine-rec==1.0.8 --no-deps`` (its only declared
dependency is ``gymnasium>=0.28``; its replay buffers, which offrec does not use, import
``torch`` and ``cloudpickle``, both already offrec dependencies). offrec does not install it.

A SARDINE env (e.g. ``sardine/SlateTopK-Bored-v0``: 1,000 items, slates of 10, a
position-based click model whose attractiveness is divided when too many items of one
topic share a slate, and users who get bored) is sequential; offrec's slate estimators
score one slate per context. Here each episode contributes its **first recommended
slate**: ``reset(seed=)`` draws a user (and SARDINE's own random first slate), the
policy's slate is shown once, and its per-slot clicks are the slot rewards. The value of a
slate policy :math:`\pi` is then

.. math:: V(\pi) = E_{u}\, E_{s \sim \pi}\, \sum_{k=1}^{K} c_k(u, s),

the expected clicks on that slate, and :func:`slate_mc_value` is its Monte-Carlo truth
(mean and standard error over episodes). Policies are **factored** over slots
(:class:`FactoredSlatePolicy`: slot :math:`k` draws its item from :math:`p_k`
independently, the assumption of the per-slot estimators' propensities), context-free,
so the logged propensities are exact:

.. math:: \pi(s) = \prod_k p_k(a_k), \qquad \pi(a_k \text{ at } k) = p_k(a_k), \qquad
          \pi(a_{\le k}) = \prod_{j \le k} p_j(a_j).

Randomness: episode ``e`` resets with the ``e``-th word of ``SeedSequence(seed)`` and the
slates are drawn up front from ``default_rng(SeedSequence([seed, 1]))``, so the same seed
gives the same log. The env loop is Python (``env.step`` is the env's API).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import check_scalar
from offrec.sim.adapter import MCValue


def _require_sardine() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sardine
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            "the SARDINE worlds need sardine-rec: pip install sardine-rec==1.0.8 --no-deps"
        ) from exc
    return sardine


def sardine_env(env_id: str = "sardine/SlateTopK-Bored-v0", **kwargs: Any) -> Any:
    """A SARDINE gymnasium env (``gymnasium.make(env_id, **kwargs)``), unwrapped of
    gymnasium's checkers (a slate policy's ``MultiDiscrete`` actions are the env's own)."""
    import gymnasium as gym

    _require_sardine()
    if not env_id.startswith("sardine/"):
        raise InputError(f"env_id must be a SARDINE env id ('sardine/...'); got {env_id!r}")
    return gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped


@dataclass(frozen=True)
class FactoredSlatePolicy:
    """A context-free slate policy: slot ``k`` shows item ``a`` with probability
    ``probs[k, a]``, slots drawn independently. Shape: ``probs`` (K, n_items), rows
    summing to 1."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, np.float64)
        if p.ndim != 2 or not np.all(p >= 0) or not np.allclose(p.sum(axis=1), 1.0):
            raise InputError(
                "probs must be (slate_size, n_items) with non-negative rows summing to 1; "
                f"got shape {p.shape}"
            )
        object.__setattr__(self, "probs", p)

    @classmethod
    def softmax(cls, scores: np.ndarray, beta: float, slate_size: int) -> FactoredSlatePolicy:
        """Every slot draws from ``softmax(beta * scores)`` (scores (n_items,))."""
        check_scalar(beta, "beta", float, min=0.0)
        z = beta * np.asarray(scores, np.float64)
        p = np.exp(z - z.max())
        return cls(np.tile(p / p.sum(), (slate_size, 1)))

    @property
    def slate_size(self) -> int:
        return int(self.probs.shape[0])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` slates (n, K) of item indices, slot by slot (vectorized over slates)."""
        cum = np.cumsum(self.probs, axis=1)
        u = rng.random((n, self.slate_size))
        out = np.empty((n, self.slate_size), np.int64)
        for k in range(self.slate_size):  # K slots; each a vectorized search over n slates
            out[:, k] = np.minimum(np.searchsorted(cum[k], u[:, k] * cum[k, -1]), cum.shape[1] - 1)
        return out

    def slot_probs(self, slates: np.ndarray) -> np.ndarray:
        """``p_k(a_k)`` of every slot of ``slates`` (n, K)."""
        return self.probs[np.arange(self.slate_size)[None, :], slates]


@dataclass(frozen=True)
class SlateLogArrays:
    """First slates of SARDINE episodes, one row per slot (OBP's slate layout).

    Shapes: ``slate_id``, ``position``, ``action``, ``reward`` (n * K,) (reward = the slot's
    click); ``slates`` (n, K), ``clicks`` (n, K); ``logger`` the policy that chose them.
    """

    slates: np.ndarray
    clicks: np.ndarray
    logger: FactoredSlatePolicy

    @property
    def n_slates(self) -> int:
        return int(self.slates.shape[0])

    def arrays(self, target: FactoredSlatePolicy) -> dict[str, Any]:
        """The keyword arrays of :mod:`offrec.ope.slate`'s estimators for ``target``: the
        joint, item-position and cascade propensities of the logger and the target."""
        n, K = self.slates.shape
        out: dict[str, Any] = {
            "slate_id": np.repeat(np.arange(n), K),
            "position": np.tile(np.arange(K), n),
            "action": self.slates.ravel(),
            "reward": self.clicks.ravel().astype(np.float64),
        }
        for prefix, pol in (("", self.logger), ("evaluation_policy_", target)):
            p = pol.slot_probs(self.slates)
            out[f"{prefix}pscore_item_position"] = p.ravel()
            out[f"{prefix}pscore_cascade"] = np.cumprod(p, axis=1).ravel()
            out[f"{prefix}pscore"] = np.repeat(np.prod(p, axis=1), K)
        return out


def _episodes(
    env: Any, slates: np.ndarray, seed: int
) -> np.ndarray:  # (n, K) clicks of each slate, shown as the first recommendation
    seeds = np.random.SeedSequence(seed).generate_state(slates.shape[0])
    clicks = np.empty(slates.shape, np.int64)
    for e in range(slates.shape[0]):
        env.reset(seed=int(seeds[e]))
        _, _, _, _, info = env.step(slates[e])
        clicks[e] = info["clicks"]
    return clicks


def log_first_slates(
    env: Any, logger: FactoredSlatePolicy, n_slates: int, seed: int
) -> SlateLogArrays:
    """``n_slates`` episodes of ``env``, each logging ``logger``'s first slate and its
    clicks (module docstring)."""
    check_scalar(n_slates, "n_slates", int, min=1)
    if logger.probs.shape != (env.slate_size, env.num_items):
        raise InputError(
            f"logger.probs must have shape ({env.slate_size}, {env.num_items}) for this env; "
            f"got {logger.probs.shape}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    slates = logger.sample(n_slates, rng)
    return SlateLogArrays(slates, _episodes(env, slates, seed), logger)


def slate_mc_value(env: Any, policy: FactoredSlatePolicy, n_slates: int, seed: int) -> MCValue:
    """Monte-Carlo truth of ``policy``: mean clicks on its first slate over ``n_slates``
    episodes, with the standard error ``sd / sqrt(n)``."""
    g = log_first_slates(env, policy, n_slates, seed).clicks.sum(axis=1).astype(np.float64)
    return MCValue(float(g.mean()), float(g.std(ddof=1) / np.sqrt(g.size)), int(g.size))
