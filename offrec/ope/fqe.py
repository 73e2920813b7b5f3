r"""Neural fitted-Q evaluation (FQE) of any target policy on a session log (torch, 1 thread).

Iterated fitting (Le, Voloshin & Yue, 2019, *Batch policy learning under constraints*,
ICML, Alg. 3; Ernst et al., 2005, *Tree-based batch mode RL*): starting from
:math:`Q_0 = 0`, for :math:`k = 1..K`

.. math::

    y_i = r_i + \gamma\, [\text{row } i \text{ has a next row}]
          \sum_{a'} \pi(a'|x'_i)\, Q_{k-1}(x'_i, h'_i, a'), \qquad
    Q_k = \arg\min_Q \sum_i (Q(x_i, h_i, a_i) - y_i)^2,

where :math:`x'_i, h'_i` are the next logged row's context and recent actions and
:math:`\pi(\cdot|x'_i)` the target's probabilities there: the expectation over the target
(not a max), so greedy and stochastic targets are handled alike. :math:`Q_{k-1}` is a
frozen copy (the target network) of the network being refitted (warm start). A session's
last row, terminated or truncated, has no next row and gets :math:`y_i = r_i`
(:mod:`offrec.ope.session_data` says why). ``K`` defaults to the longest session plus 2:
with a finite horizon, :math:`H` exact iterations give the value.

Each fit of :math:`Q_k` runs at most ``max_epochs`` epochs of Adam and stops early when
the Bellman error on held-out sessions (a seeded tenth of the training sessions) stops
improving; the best epoch's weights are kept.

The network: a two-hidden-layer ReLU MLP from the standardized context and the
multi-hot of the recent actions :math:`h` to one output per action, plus a learned
additive term :math:`\sum_j c_j [h_j = a]` for repeating a recent action. Values are not
clipped: :attr:`NeuralQ.range_report` counts predictions outside the feasible range
:math:`[0, H r_{max}]`, and the estimators turn that into a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from offrec.core.threads import torch_threads
from offrec.logs.data import LoggedData
from offrec.ope.session_data import SessionStructure, session_folds, session_structure


class _QNet(nn.Module):
    def __init__(self, d: int, n_actions: int, n_recent: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d + n_actions
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_actions))
        self.body = nn.Sequential(*layers)
        self.repeat = nn.Parameter(torch.zeros(n_recent))
        self.n_actions = n_actions

    def forward(self, z: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        hot = torch.zeros(n, self.n_actions + 1, dtype=z.dtype)  # column 0: "no action"
        bag = torch.zeros(n, self.n_actions + 1, dtype=z.dtype)
        for j in range(recent.shape[1]):
            col = recent[:, j : j + 1] + 1
            hot = hot.scatter_add(1, col, self.repeat[j].expand(n, 1))
            bag = bag.scatter(1, col, 1.0)
        return self.body(torch.cat([z, bag[:, 1:]], dim=1)) + hot[:, 1:]


@dataclass
class NeuralQ:
    """A fitted FQE Q-model; :meth:`predict` gives (n, A) Q-values."""

    net: _QNet
    x_mean: np.ndarray
    x_scale: np.ndarray
    value_max: float  # feasible upper bound H * r_max
    epochs: list[int] = field(default_factory=list)  # epochs run per iteration
    val_error: list[float] = field(default_factory=list)  # held-out Bellman MSE per iteration

    def predict(self, context: np.ndarray, recent: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(
            (np.asarray(context, np.float64) - self.x_mean) / self.x_scale, dtype=torch.float32
        )
        out = []
        with torch.no_grad():
            for s in range(0, z.shape[0], 65536):
                out.append(
                    self.net(z[s : s + 65536], torch.as_tensor(recent[s : s + 65536])).numpy()
                )
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.net.n_actions))


@torch_threads(1)  # one thread for the small networks; restored after
def fit_neural_fqe(
    data: LoggedData,
    target_dist: np.ndarray,
    *,
    structure: SessionStructure | None = None,
    rows: np.ndarray | None = None,
    gamma: float = 1.0,
    n_iterations: int | None = None,
    hidden: tuple[int, ...] = (64, 64),
    max_epochs: int = 4,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> NeuralQ:
    """Fit FQE (module docstring) for the target whose (n, A) probabilities on
    ``data.context`` are ``target_dist``, on the rows where ``rows`` (bool (n,)) is True
    (default all; the next rows used in targets must belong to the same sessions)."""
    st = structure or session_structure(data)
    n, A = data.n_rows, data.n_actions
    if target_dist.shape != (n, A):
        raise ValueError(f"target_dist must have shape ({n}, {A}); got {target_dist.shape}")
    use = np.ones(n, bool) if rows is None else np.asarray(rows, bool)
    gen = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, 0xF0E]).generate_state(1)[0])
    )
    x = np.asarray(data.context, np.float64)
    x_mean, x_scale = (
        x[use].mean(axis=0),
        np.where(x[use].std(axis=0) > 1e-9, x[use].std(axis=0), 1.0),
    )
    z = torch.as_tensor((x - x_mean) / x_scale, dtype=torch.float32)
    rec = torch.as_tensor(st.recent)
    r = torch.as_tensor(np.asarray(data.reward, np.float32))
    act = torch.as_tensor(np.asarray(data.action, np.int64))
    nxt = st.next_row
    nxt_t = torch.as_tensor(np.where(nxt >= 0, nxt, 0))
    pi_next = torch.as_tensor(np.asarray(target_dist, np.float32))[nxt_t]
    net = _QNet(x.shape[1], A, st.recent.shape[1], hidden)
    with torch.no_grad():
        for p in net.parameters():  # seeded init, independent of torch's global RNG
            if p.dim() > 1:
                bound = 1.0 / np.sqrt(p.shape[1])
                p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
            else:
                p.zero_()
    # training / validation sessions (a seeded tenth held out for early stopping)
    val_sess = session_folds(data.session_id, 10, seed + 1) == 0
    tr_idx = torch.as_tensor(np.flatnonzero(use & ~val_sess))
    va_idx = torch.as_tensor(np.flatnonzero(use & val_sess))
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    q_model = NeuralQ(
        net, x_mean, x_scale, float(st.horizon * max(float(data.reward.max()), 1e-12))
    )
    K = n_iterations or st.horizon + 2
    frozen = _QNet(x.shape[1], A, st.recent.shape[1], hidden)
    for _ in range(K):
        frozen.load_state_dict(net.state_dict())
        with torch.no_grad():
            v_next = torch.zeros(n)
            idx = torch.as_tensor(np.flatnonzero((nxt >= 0) & use))
            for s in range(0, idx.shape[0], 65536):
                b = idx[s : s + 65536]
                nb = nxt_t[b]
                v_next[b] = (frozen(z[nb], rec[nb]) * pi_next[b]).sum(1)
            y = r + gamma * v_next

        def val_mse(y: torch.Tensor = y) -> float:
            with torch.no_grad():
                q = net(z[va_idx], rec[va_idx]).gather(1, act[va_idx, None])[:, 0]
                return float(((q - y[va_idx]) ** 2).mean())

        best, best_state, ran = val_mse(), None, 0
        for _epoch in range(max_epochs):
            perm = tr_idx[torch.randperm(tr_idx.shape[0], generator=gen)]
            for s in range(0, perm.shape[0], batch_size):
                b = perm[s : s + batch_size]
                q = net(z[b], rec[b]).gather(1, act[b, None])[:, 0]
                loss = ((q - y[b]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            ran += 1
            err = val_mse()
            if err < best:
                best, best_state = err, {k: v.clone() for k, v in net.state_dict().items()}
            else:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        q_model.epochs.append(ran)
        q_model.val_error.append(best)
    return q_model


def range_report(
    values: np.ndarray, value_max: float, tol: float = 1e-6
) -> tuple[float, float, float]:
    """(fraction outside [0, value_max], min, max) of ``values``."""
    v = np.asarray(values)
    if v.size == 0:
        return 0.0, 0.0, 0.0
    out = (v < -tol) | (v > value_max + tol)
    return float(out.mean()), float(v.min()), float(v.max())
