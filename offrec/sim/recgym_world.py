"""SCOPE-RL's ``RECEnv`` (package ``recgym``, shipped in the ``scope-rl`` wheel) as a world.

Optional: needs ``recgym`` (``pip install scope-rl==0.2.1 --no-deps``) and ``gym==0.26``;
offrec does not install it. ``RECEnv`` (Kiyohara et al., SCOPE-RL, 2023; dynamics after
Dean & Morgenstern, "Preference dynamics under personalized recommendations", 2022): a
user ``u`` drawn uniformly from ``n_users`` has a unit state ``s_0 = x_u``; showing item
``a`` (feature ``v_a``) gives reward ``<s_t, v_a>`` (continuous, plus
``N(0, reward_std^2)``) or a click with probability ``sigmoid(<s_t, v_a>)`` (binary), then
``s_{t+1} = normalize(s_t + <s_t, v_a> v_a)``; the observation is ``clip(s_t + N(0,
obs_std^2), -1, 1)``. Episodes last ``step_per_episode`` steps.

Three things :func:`recgym_world` fixes so the env fits :class:`~offrec.sim.adapter.GymWorld`:

- the end of an episode is a horizon, which ``RECEnv`` reports as ``done`` (terminated);
  here it is ``truncated``, as offrec's schema means it;
- ``reset(seed=)`` reseeds only the env's stream, not the user model's (reward noise,
  clicks); here both are seeded from the reset seed, so an episode is a function of it;
- the binary mode calls ``RandomState.binominal`` (a typo in 0.2.1) and crashes; here the
  click is drawn with ``binomial``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.sim.adapter import GymWorld


def _require_recgym() -> Any:
    try:
        import recgym
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            "the RECEnv world needs recgym: pip install scope-rl==0.2.1 --no-deps gym==0.26.2"
        ) from exc
    return recgym


class _RecEnvAsWorld:
    """``RECEnv`` with the horizon as truncation and per-episode seeding (module docstring)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.action_space = env.action_space
        self.observation_space = env.observation_space
        self.spec = None
        self.unwrapped = env

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, Any]:
        if seed is not None:
            user_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
            self.env.user_model.random_ = np.random.RandomState(user_seed)
        return self.env.reset(seed=seed)

    def step(self, action: int) -> tuple[Any, float, bool, bool, Any]:
        obs, reward, done, truncated, info = self.env.step(action)
        return obs, float(reward), False, bool(done or truncated), info

    def close(self) -> None:
        self.env.close()


def recgym_world(
    *,
    step_per_episode: int = 10,
    n_items: int = 100,
    n_users: int = 100,
    reward_type: str = "continuous",
    reward_std: float = 0.0,
    obs_std: float = 0.0,
    reward_bounds: tuple[float, float] | None = None,
    world_seed: int = 12345,
    n_envs: int = 16,
) -> GymWorld:
    """A :class:`GymWorld` of ``RECEnv`` (arguments as in ``recgym.RECEnv``).

    ``world_seed`` fixes the users' and items' feature vectors (the same in every env
    copy). The reward domain is binary for ``reward_type="binary"``; for ``"continuous"``
    it is ``[-1, 1]`` when ``reward_std == 0`` (a unit state times an item vector of norm
    <= 1) and must be given as ``reward_bounds`` otherwise (a log with a reward outside
    it is rejected, naming the row).
    """
    recgym = _require_recgym()
    from recgym.envs.simulator.function import UserModel

    class FixedUserModel(UserModel):
        """recgym's user model with the binary click drawn by ``binomial``."""

        def reward_function(
            self, state: np.ndarray, action: Any, item_feature_vector: np.ndarray
        ) -> float:
            if self.reward_type != "binary":
                return float(super().reward_function(state, action, item_feature_vector))
            logit = float(state @ item_feature_vector[action])
            return float(self.random_.binomial(1, p=1.0 / (1.0 + np.exp(-logit))))

    if reward_type == "binary":
        domain: dict[str, Any] = {"kind": "binary"}
    elif reward_bounds is not None:
        domain = {"kind": "continuous", "low": reward_bounds[0], "high": reward_bounds[1]}
    elif reward_std == 0.0:
        domain = {"kind": "continuous", "low": -1.0, "high": 1.0}
    else:
        raise InputError(
            f"reward_bounds must be given for a continuous reward with noise; "
            f"got reward_std={reward_std} and no bounds"
        )

    def make_env() -> _RecEnvAsWorld:
        with warnings.catch_warnings():  # gym's Box warns that int bounds become float64
            warnings.filterwarnings("ignore", ".*Box bound precision", UserWarning)
            env = recgym.RECEnv(
                step_per_episode=step_per_episode,
                n_items=n_items,
                n_users=n_users,
                reward_type=reward_type,
                reward_std=float(reward_std),
                obs_std=float(obs_std),
                UserModel=FixedUserModel,
                random_state=world_seed,
            )
        return _RecEnvAsWorld(env)

    return GymWorld(
        make_env,
        max_steps=step_per_episode,
        name=f"recgym.RECEnv({reward_type}, {n_items} items, {step_per_episode} steps)",
        n_envs=n_envs,
        reward_domain=domain,
    )
