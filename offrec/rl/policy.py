"""A trained Q-network as an offrec ``Policy``: Q-values -> :class:`~offrec.policies.Head`.

d3rlpy gives no ``pi(a|x)`` for DQN/CQL (``predict`` returns the argmax,
``predict_value`` one action per call). A :class:`QPolicy` computes **all** Q-values of
a batch in one forward pass of the Q-network (``(n, d) -> (n, n_actions)``, ensemble
members averaged as d3rlpy does), then a head turns them into a distribution:
``greedy`` (argmax, ties split), ``epsilon_greedy(eps)`` or ``softmax(temperature)``
over Q. So a trained model can be logged with propensities, scored by OPE and run
online like any other offrec policy.

For DiscreteBCQ the head sees only the actions BCQ may take: those whose imitation
probability is at least ``bcq_threshold`` times the most likely one's (the others get
score ``-inf``), exactly as d3rlpy's ``DiscreteBCQ.predict``.

Saved folder (published atomically)::

    qpolicy.json   {"format": "offrec.qpolicy", "format_version": 1, "rl_config": {...},
                    "head": {...}, "n_actions": ..., "obs_dim": ..., "weights": {...sha256}}
    weights.npz    the inference modules' state dicts (numpy arrays, no pickle)

Loading rebuilds the d3rlpy algorithm from the stored :class:`~offrec.rl.config.RLConfig`
and restores the weights, so ``load_q_policy(folder).action_dist(x)`` equals the saved
policy's exactly. (d3rlpy's own ``.d3`` files are pickles, which can run code on load;
offrec does not read them.) A loaded policy is for inference, not for resuming training.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError, InputTypeError, MissingInputError
from offrec.core.formats import header, read_versioned_json
from offrec.core.policy import BasePolicy, GreedyDist, Head
from offrec.core.validation import check_scalar
from offrec.logs.items import ItemMap
from offrec.rl.config import RLConfig, build_algo, threads

__all__ = ["QPolicy", "load_q_policy"]

FORMAT = "offrec.qpolicy"
FORMAT_VERSION = 1
CONFIG_FILE = "qpolicy.json"
WEIGHTS_FILE = "weights.npz"
MIN_ROWS = 64  # smallest batch sent to torch (see QPolicy.q_values)


def _algo_scorer(algo: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[Any], int, int]:
    """(forward, modules, obs_dim, n_actions) of a built d3rlpy discrete Q-learning algo."""
    impl = getattr(algo, "impl", None)
    if impl is None:
        raise InputError("the d3rlpy algorithm has no model yet: train it (or create_impl) first")
    q_funcs = impl.q_function
    imitator = getattr(impl.modules, "imitator", None)
    log_threshold = math.log(float(getattr(algo.config, "action_flexibility", 0.3)))
    scaler = getattr(algo.config, "observation_scaler", None)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if scaler is not None:
            x = scaler.transform(x)
        q = q_funcs[0](x).q_value
        if len(q_funcs) > 1:
            q = torch.stack([f(x).q_value for f in q_funcs]).mean(dim=0)
        if imitator is not None:
            logp = torch.log_softmax(imitator(x).logits, dim=1)
            allowed = (logp - logp.max(dim=1, keepdim=True).values) > log_threshold
            q = q.masked_fill(~allowed, -math.inf)
        return q

    modules = [q_funcs] + ([imitator] if imitator is not None else [])
    shape = impl.observation_shape
    obs_dim = int(shape[0]) if isinstance(shape, tuple | list) else int(shape)
    return forward, modules, obs_dim, int(impl.action_size)


class QPolicy(BasePolicy):
    """Q-network + head as an offrec policy.

    Args:
        model: a trained d3rlpy discrete Q-learning algorithm (DQN, DoubleDQN,
            DiscreteCQL, DiscreteBCQ), or a torch module mapping an ``(n, d)`` float32
            tensor to ``(n, n_actions)`` Q-values.
        n_actions: number of items; must match the model's output width.
        head: how Q-values become a distribution (default greedy).
        config: the :class:`~offrec.rl.config.RLConfig` that trained ``model`` (needed to
            :meth:`save`).
        obs_dim: observation width (read from a d3rlpy model; required for a module).
        batch_rows: rows per forward pass (bounds memory on huge inputs).

    ``item_map``: the item map it was trained with (:mod:`offrec.logs.items`), saved and
    loaded with it; None when unknown.
    """

    item_map: ItemMap | None = None

    def __init__(
        self,
        model: Any,
        n_actions: int,
        head: Head | None = None,
        *,
        config: RLConfig | None = None,
        obs_dim: int | None = None,
        batch_rows: int = 65_536,
    ) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        check_scalar(batch_rows, "batch_rows", int, min=1)
        if isinstance(model, torch.nn.Module):
            if obs_dim is None:
                raise InputError("obs_dim is required when model is a torch module")

            def module_forward(x: torch.Tensor) -> torch.Tensor:
                return model(x)

            self._forward: Callable[[torch.Tensor], torch.Tensor] = module_forward
            self._modules: list[Any] = [model]
            model_obs, model_actions = obs_dim, None
        else:
            self._forward, self._modules, model_obs, model_actions = _algo_scorer(model)
            if obs_dim is not None and obs_dim != model_obs:
                raise InputError(f"obs_dim={obs_dim} but the model takes {model_obs} features")
        if model_actions is not None and model_actions != n_actions:
            raise InputError(f"n_actions={n_actions} but the model scores {model_actions} actions")
        if head is not None and not isinstance(head, Head):
            raise InputTypeError(f"head must be a Head; got {type(head).__name__}")
        self.model = model
        self.n_actions = n_actions
        self.obs_dim = int(model_obs)
        self.head = head or Head()
        self.config = config
        self.batch_rows = batch_rows

    # -- scoring -------------------------------------------------------------------------
    def _check_obs(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise InputError(f"obs must have shape (n, {self.obs_dim}); got {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise InputError(f"obs must be numeric; got dtype {x.dtype}")
        return x

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """All Q-values (n, n_actions) float64: one forward pass per ``batch_rows`` rows.

        A row's values do not depend on the other rows of the batch (bit for bit).
        """
        x = self._check_obs(obs)
        out = np.empty((x.shape[0], self.n_actions), np.float64)
        modes = [m.training for m in self._modules]
        for m in self._modules:
            m.eval()
        try:
            with torch.inference_mode():
                for start in range(0, x.shape[0], self.batch_rows):
                    rows = x[start : start + self.batch_rows]
                    m = rows.shape[0]
                    # tiny batches go through torch's matrix-vector kernels, whose rounding
                    # differs from the matrix-matrix ones: pad to MIN_ROWS so a row's
                    # Q-values (and greedy ties) never depend on the batch it came in
                    chunk = np.zeros((max(m, MIN_ROWS), self.obs_dim), np.float32)
                    chunk[:m] = rows
                    out[start : start + m] = self._forward(torch.from_numpy(chunk))[:m].numpy()
        finally:
            for m, mode in zip(self._modules, modes, strict=True):
                m.train(mode)
        return out

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        """Distribution (n, n_actions) = ``head.apply(q_values(obs))``."""
        return self.head.apply(self.q_values(obs))

    def action_dist_compact(self, obs: np.ndarray) -> GreedyDist | np.ndarray:
        """:meth:`action_dist` in the head's cheapest exact form (:meth:`Head.compact`)."""
        return self.head.compact(self.q_values(obs))

    def recommend(self, obs: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per row by Q-value: (items (n, k) int64, Q-values (n, k))."""
        check_scalar(k, "k", int, min=1, max=self.n_actions)
        q = self.q_values(obs)
        top = np.argpartition(-q, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(q, top, axis=1), axis=1, kind="stable")
        items = np.take_along_axis(top, order, axis=1).astype(np.int64)
        return items, np.take_along_axis(q, items, axis=1)

    def with_head(self, head: Head) -> QPolicy:
        """The same Q-network behind another head (weights shared, not copied)."""
        new = object.__new__(QPolicy)
        new.__dict__.update(self.__dict__)
        if not isinstance(head, Head):
            raise InputTypeError(f"head must be a Head; got {type(head).__name__}")
        new.head = head
        return new

    def spec(self) -> dict[str, Any]:
        algo = self.config.algo if self.config is not None else type(self.model).__name__
        return {"type": "q_policy", "algo": algo, "head": self.head.to_dict()}

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the policy (config, head, weights) to ``folder`` atomically; return it."""
        self._check_saveable()
        folder = Path(folder)
        with atomic_dir(folder, overwrite=overwrite) as tmp:
            self.write_to(tmp)
        return folder

    def _check_saveable(self) -> RLConfig:
        if self.config is None or isinstance(self.model, torch.nn.Module):
            raise InputTypeError(
                "only a QPolicy around a d3rlpy model trained by offrec.rl.train_rl (with "
                "its RLConfig) can be saved"
            )
        return self.config

    def write_to(self, directory: Path) -> None:
        """Write ``qpolicy.json`` and ``weights.npz`` into an existing ``directory``."""
        config = self._check_saveable()
        arrays = _state_arrays(self.model)
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        blob = buf.getvalue()
        meta = {
            **header(FORMAT, FORMAT_VERSION),
            "rl_config": config.to_dict(),
            "head": self.head.to_dict(),
            "n_actions": self.n_actions,
            "obs_dim": self.obs_dim,
            "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(blob).hexdigest()},
        }
        items = getattr(self, "item_map", None)
        if isinstance(items, ItemMap):  # the item map it was trained with (offrec.logs.items)
            meta["items"] = items.to_json()
        (directory / WEIGHTS_FILE).write_bytes(blob)
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _inference_modules(algo: Any) -> dict[str, torch.nn.Module]:
    mods = {"q_funcs": algo.impl.q_function}
    imitator = getattr(algo.impl.modules, "imitator", None)
    if imitator is not None:
        mods["imitator"] = imitator
    return mods


def _state_arrays(algo: Any) -> dict[str, np.ndarray]:
    out = {}
    for name, module in _inference_modules(algo).items():
        for key, tensor in module.state_dict().items():
            out[f"{name}/{key}"] = tensor.detach().cpu().numpy()
    return out


def load_q_policy(
    folder: str | Path,
    *,
    head: Head | None = None,
    n_actions: int | None = None,
    obs_dim: int | None = None,
) -> QPolicy:
    """Load a :class:`QPolicy` saved by :meth:`QPolicy.save` (or ``TrainResult.save``).

    Args:
        head: replaces the saved head (default: the saved one).
        n_actions, obs_dim: the sizes the caller will use (the world's items, the log's
            context width); a model saved for other sizes raises ``ValueError`` naming both.
    """

    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise MissingInputError(f"no saved Q-policy in {folder}: {CONFIG_FILE} not found")
    meta = read_versioned_json(
        path, FORMAT, versions=(FORMAT_VERSION,), what="offrec Q-policy file"
    )
    saved_n, saved_d = int(meta["n_actions"]), int(meta["obs_dim"])
    if n_actions is not None and n_actions != saved_n:
        raise InputError(
            f"Q-policy in {folder} was trained for n_actions={saved_n} items; "
            f"cannot load it for n_actions={n_actions}"
        )
    if obs_dim is not None and obs_dim != saved_d:
        raise InputError(
            f"Q-policy in {folder} was trained on observations of width {saved_d}; "
            f"cannot load it for obs_dim={obs_dim}"
        )
    config = RLConfig.from_dict(meta["rl_config"])
    weights = folder / meta["weights"]["file"]
    if not weights.is_file():
        raise MissingInputError(f"saved Q-policy {folder} is incomplete: {weights.name} not found")
    blob = weights.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights"]["sha256"]:
        raise InputError(f"{weights} does not match the checksum in {CONFIG_FILE}")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    with threads(config.n_threads):
        algo = build_algo(config)
        algo.create_impl((saved_d,), saved_n)
    for name, module in _inference_modules(algo).items():
        prefix = f"{name}/"
        state = {
            k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)
        }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{weights} does not fit the saved config: {exc}") from None
    saved_head = Head(**meta["head"])
    policy = QPolicy(algo, saved_n, head or saved_head, config=config)
    if "items" in meta:
        policy.item_map = ItemMap.from_json(meta["items"], f"{path} items")
    return policy
