"""A leaner discrete Q-function for d3rlpy, plugged in through its public extension point
(``d3rlpy.models.QFunctionFactory``, the ``q_func_factory`` of every algorithm config).

The network, its initialisation, its parameter names and the loss are d3rlpy's default
(``MeanQFunctionFactory``: ``DiscreteMeanQFunction`` = encoder + linear head, Huber TD
error); some work per gradient step goes away:

- **one forward per input**: d3rlpy evaluates some Q-network twice on the same batch in
  one step: discrete CQL computes ``Q(s, .)`` with gradients for the TD error and again
  for ``logsumexp_a Q(s, a)`` (two forward and two backward passes), and DQN's target
  network scores ``s'`` once for the greedy action and once for its value. The
  Q-function here returns its previous output when it is called again on the very same
  input tensor with nothing changed in between (the ``Tensor._version`` counters of the
  input, of every parameter and of the output itself, grad mode and float32 matmul
  precision all equal): CQL's two losses then share one graph, and autograd sums their
  gradients before a single backward pass (the same sum, up to float rounding); DQN's
  second target forward is skipped. An optimiser step (which
  changes the weights in place), a write into the input or the output, or another input
  object computes afresh. Only in train mode (d3rlpy's updates; its predictions and
  :class:`~offrec.rl.policy.QPolicy` run in eval / inference mode and always compute),
  so the cache holds at most one training batch and its output.
- **gather, not one-hot**: d3rlpy picks ``Q(s, a)`` as ``(Q * one_hot(a)).sum(1)``,
  which builds a (batch, n_actions) one-hot matrix and multiplies it; here
  ``Q.gather(1, a)`` reads the same values (adding exact zeros changes no bit) and its
  gradient puts the same values in the same places.
- **one Huber op**: d3rlpy writes the Huber loss as eight tensor ops
  (``where(|d| < 1, 0.5 d**2, |d| - 0.5)``); ``torch.nn.functional.huber_loss`` is the
  same formula (and gradient) in one op forward and one backward.

Measured by ``benchmarks/bench_rl.py`` (batch 256, (128, 128) MLP, 100 actions, one
thread, medians of interleaved runs): see :class:`~offrec.rl.config.RLConfig`
(``lean_q_function``). ``tests/rl/test_qfunction.py`` checks the losses and weights of
six updates against d3rlpy's own Q-function from the same initial weights and batches
(DQN, DoubleDQN, CQL, BCQ), and the bound on the version counters (an in-place write to
a weight, the input or the output must recompute).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from offrec.rl._d3rlpy import d3rlpy_module

__all__ = ["lean_q_func_factory_class"]


@functools.cache
def lean_q_func_factory_class() -> type:
    """The d3rlpy ``QFunctionFactory`` subclass making the lean Q-function (module doc).
    Made on first use, as d3rlpy is imported lazily; discrete action spaces only."""
    d3rlpy = d3rlpy_module()
    from d3rlpy.models.torch import (
        DiscreteMeanQFunction,
        DiscreteMeanQFunctionForwarder,
        QFunctionOutput,
    )

    class LeanDiscreteMeanQFunction(DiscreteMeanQFunction):
        """d3rlpy's ``DiscreteMeanQFunction`` (same parameters) that hands back its last
        output when called again on the same unchanged input with unchanged weights."""

        def __init__(self, encoder: Any, hidden_size: int, action_size: int) -> None:
            super().__init__(encoder, hidden_size, action_size)
            self._last: tuple[torch.Tensor, tuple[Any, ...], tuple[Any, int]] | None = None
            self._params: list[torch.Tensor] | None = None

        def _key(self, x: torch.Tensor) -> tuple[Any, ...]:
            if self._params is None:
                self._params = list(self.parameters())
            return (
                x._version,
                torch.is_grad_enabled(),
                torch.get_float32_matmul_precision(),
                *(p._version for p in self._params),
            )

        def forward(self, x: Any) -> Any:
            if (
                not self.training  # d3rlpy's updates run in train mode, its predictions not
                or not isinstance(x, torch.Tensor)
                or x.is_inference()
                or torch.is_inference_mode_enabled()  # no version counters there
            ):
                return super().forward(x)
            key = self._key(x)
            last = self._last
            if last is not None and last[0] is x and last[1] == key:
                out, version = last[2]
                if out.q_value._version == version:  # nobody wrote into it
                    return out
            out = QFunctionOutput(q_value=self._fc(self._encoder(x)), quantiles=None, taus=None)
            self._last = (x, key, (out, out.q_value._version))
            return out

        def __getstate__(self) -> dict[str, Any]:  # copy / pickle without the cache
            state = self.__dict__.copy()
            state["_last"] = None
            state["_params"] = None
            return state

    class LeanDiscreteMeanQFunctionForwarder(DiscreteMeanQFunctionForwarder):
        """d3rlpy's forwarder with ``Q(s, a)`` read by ``gather``."""

        def compute_error(
            self,
            observations: Any,
            actions: torch.Tensor,
            rewards: torch.Tensor,
            target: torch.Tensor,
            terminals: torch.Tensor,
            gamma: float | torch.Tensor = 0.99,
            reduction: str = "mean",
        ) -> torch.Tensor:
            q = self._q_func(observations).q_value
            value = q.gather(1, actions.reshape(-1, 1).long())
            y = rewards + gamma * target * (1 - terminals)
            # d3rlpy's compute_huber_loss, as one op: same formula, same gradient
            loss = torch.nn.functional.huber_loss(value, y, reduction="none", delta=1.0)
            if reduction == "mean":
                return loss.mean()
            if reduction == "sum":
                return loss.sum()
            if reduction == "none":
                return loss.view(-1, 1)
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")

        def compute_target(self, x: Any, action: torch.Tensor | None = None) -> torch.Tensor:
            q = self._q_func(x).q_value
            if action is None:
                return q
            return q.gather(1, action.reshape(-1, 1).long())

    @dataclasses.dataclass()
    class LeanMeanQFunctionFactory(d3rlpy.models.QFunctionFactory):  # type: ignore[name-defined]
        """d3rlpy's mean Q-function with repeated forwards shared and gather picks."""

        def create_discrete(self, encoder: Any, hidden_size: int, action_size: int) -> Any:
            q_func = LeanDiscreteMeanQFunction(encoder, hidden_size, action_size)
            return q_func, LeanDiscreteMeanQFunctionForwarder(q_func, action_size)

        def create_continuous(self, encoder: Any, hidden_size: int) -> Any:
            raise NotImplementedError("offrec's lean Q-function is for discrete actions only")

        @staticmethod
        def get_type() -> str:
            return "offrec_lean_mean"

    return LeanMeanQFunctionFactory
