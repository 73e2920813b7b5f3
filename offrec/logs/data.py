"""``LoggedData``: the typed, validated in-memory form of a log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from offrec.core.errors import InputError
from offrec.logs.items import ItemMap
from offrec.logs.schema import MIN_PSCORE, PSCORE_FLOOR_RULE

__all__ = ["LoggedData", "validate_logged_data"]


@dataclass
class LoggedData:
    """One row per logged decision (shapes with ``n`` rows, ``d`` context width).

    Attributes:
        context: (n, d) float32, the observation the logging policy saw.
        action: (n,) int64 in ``[0, n_actions)``.
        reward: (n,) float64 (clicks are 0/1).
        pscore: (n,) float64 in (0, 1], the logger's probability of ``action``.
        session_id: (n,) int64; step: (n,) int64 (from 0 within a session).
        position: (n,) int64 (0 when one item is shown).
        user_id: (n,) int64 (-1 when unknown).
        terminated / truncated: (n,) bool, the session ended by the user / by the horizon.
        n_actions: number of items.
        logging_dist: optional (n, n_actions) float32, the logger's full distribution.
        true_ctr: optional (n,) float64, the true click probability of the logged action
            (simulated data only).
        pscore_group: optional (n,) float64, the logger's probability of the logged item's
            group (topic) (:data:`offrec.logs.schema.PSCORE_GROUP`; large-catalog logs).
        metadata: dict of file metadata (world config, logging policy spec, seed, version...).
        reward_domain: what the reward is: ``{"kind": "binary"}`` (clicks in {0, 1}, the
            default) or ``{"kind": "continuous", "low": a, "high": b}`` (declared at
            import, e.g. watch time; see :func:`offrec.logs.schema.reward_domain`). It is
            the contract every consumer reads: the reader checks the rewards against it,
            learners and estimators that need clicks refuse other domains naming one that
            fits, and those that take bounded rewards use its bounds
            (:mod:`offrec.core.domain`).

    The item map (source item id of each action) is ``metadata["action_map"]`` when the
    log was imported or built with ``item_ids``; :attr:`item_map` gives it (the identity
    map for simulated logs). See :mod:`offrec.logs.items`.
    """

    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    session_id: np.ndarray
    step: np.ndarray
    position: np.ndarray
    user_id: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    n_actions: int
    logging_dist: np.ndarray | None = None
    true_ctr: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    reward_domain: dict[str, Any] = field(default_factory=lambda: {"kind": "binary"})
    pscore_group: np.ndarray | None = None

    @property
    def binary_reward(self) -> bool:
        """True when the reward is declared binary (clicks)."""
        return self.reward_domain.get("kind", "binary") == "binary"

    @property
    def value_label(self) -> str:
        """What the mean reward is called in tables: ``"CTR"`` only for clicks."""
        return "CTR" if self.binary_reward else "mean reward"

    def check_binary_reward(
        self, what: str, fits: str = "a learner or estimator that takes continuous rewards"
    ) -> None:
        """Raise ``InputError`` unless the reward is binary; ``what`` names the caller and
        ``fits`` what takes this reward instead (:func:`offrec.core.domain.require_binary`)."""
        from offrec.core.domain import require_binary

        require_binary(self.reward_domain, what, fits)

    @property
    def item_map(self) -> ItemMap:
        """Source item id of each action (:class:`~offrec.logs.items.ItemMap`): the stored
        map of an imported log, the identity over ``n_actions`` otherwise."""
        return ItemMap.of_metadata(self.metadata, self.n_actions)

    @classmethod
    def from_arrays(
        cls,
        context: ArrayLike,
        action: ArrayLike,
        reward: ArrayLike,
        pscore: ArrayLike,
        *,
        n_actions: int | None = None,
        session_id: ArrayLike | None = None,
        step: ArrayLike | None = None,
        position: ArrayLike | None = None,
        user_id: ArrayLike | None = None,
        terminated: ArrayLike | None = None,
        truncated: ArrayLike | None = None,
        logging_dist: ArrayLike | None = None,
        true_ctr: ArrayLike | None = None,
        metadata: dict[str, Any] | None = None,
        reward_domain: dict[str, Any] | None = None,
        item_ids: ArrayLike | None = None,
    ) -> LoggedData:
        """A validated ``LoggedData`` from arrays, the columns a caller does not have filled in.

        Shapes: ``context`` (n, d), ``action`` / ``reward`` / ``pscore`` (n,); optional
        columns (n,) (``logging_dist`` (n, n_actions)). Defaults: ``n_actions =
        action.max() + 1``; without ``session_id`` every row is its own one-step session
        (a bandit log: ``step`` 0, ended by the horizon); with it, rows of a session must be
        contiguous and in order, ``step`` counts from 0 within each and its last row is
        ``truncated`` unless ``terminated`` is given; ``position`` 0, ``user_id`` -1.
        ``reward_domain`` (see :func:`offrec.logs.schema.reward_domain`; binary clicks by
        default, or ``{"kind": "continuous", "low": a, "high": b}``) is checked against the
        rewards. ``item_ids`` (n_actions,) gives the source id of each action index (the
        item map, :mod:`offrec.logs.items`; ``n_actions`` defaults to its length); without
        it the items are ``0..n_actions-1``. The value rules of
        :func:`validate_logged_data` are checked (errors name the column and the first bad
        row). :func:`offrec.logs.write_log` puts the result on disk.

        >>> data = LoggedData.from_arrays(
        ...     [[0.0], [1.0], [2.0]], [0, 2, 1], [1, 0, 0], [0.5, 0.25, 0.25],
        ...     session_id=[7, 7, 9])
        >>> data.step.tolist(), data.truncated.tolist(), data.n_actions
        ([0, 1, 0], [False, True, True], 3)
        >>> LoggedData.from_arrays([[0.0]], [0], [1], [0.0])
        Traceback (most recent call last):
        ...
        offrec.core.errors.InputError: column 'pscore' must be in (0, 1]; row 0 has 0.0
        """
        x = np.asarray(context, dtype=np.float32)
        if x.ndim != 2:
            raise InputError(f"context must be a 2-D array (n, d); got shape {x.shape}")
        n = x.shape[0]

        def column(value: Any, name: str, dtype: Any, default: Any) -> np.ndarray:
            arr = np.full(n, default, dtype) if value is None else np.asarray(value)
            if arr.shape != (n,):
                raise InputError(
                    f"{name} must have shape ({n},) like context rows; got {arr.shape}"
                )
            if dtype is np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise InputError(f"{name} must be integers; got dtype {arr.dtype}")
            return arr.astype(dtype, copy=False)

        a = column(action, "action", np.int64, 0)
        if session_id is None:
            sid = np.arange(n, dtype=np.int64)
        else:
            sid = column(session_id, "session_id", np.int64, 0)
        new = np.r_[True, sid[1:] != sid[:-1]] if n else np.zeros(0, bool)
        starts = np.flatnonzero(new)
        if np.unique(sid).size != starts.size:
            raise InputError("session_id: the rows of each session must be contiguous")
        last = np.r_[new[1:], True] if n else np.zeros(0, bool)
        if step is None:
            step_arr = np.arange(n, dtype=np.int64) - np.repeat(starts, np.diff(np.r_[starts, n]))
        else:
            step_arr = column(step, "step", np.int64, 0)
        term = column(terminated, "terminated", bool, False)
        trunc = last & ~term if truncated is None else column(truncated, "truncated", bool, False)
        from offrec.logs.schema import reward_domain as make_domain

        domain = make_domain(**(reward_domain or {"kind": "binary"}))
        meta = dict(metadata or {})
        if item_ids is not None:
            items = ItemMap(tuple(np.asarray(item_ids, dtype=object).ravel().tolist()))
            if n_actions is not None and n_actions != items.n_items:
                raise InputError(
                    f"item_ids must list n_actions={n_actions} ids (one per action); "
                    f"got {items.n_items}"
                )
            n_actions = items.n_items
            meta["action_map"] = list(items.id_list())
        k = int(a.max()) + 1 if n_actions is None and n else int(n_actions or 1)
        data = cls(
            context=x,
            action=a,
            reward=column(reward, "reward", np.float64, 0.0),
            pscore=column(pscore, "pscore", np.float64, 1.0),
            session_id=sid,
            step=step_arr,
            position=column(position, "position", np.int64, 0),
            user_id=column(user_id, "user_id", np.int64, -1),
            terminated=term,
            truncated=trunc,
            n_actions=k,
            logging_dist=None if logging_dist is None else np.asarray(logging_dist, np.float32),
            true_ctr=None if true_ctr is None else column(true_ctr, "true_ctr", np.float64, 0.0),
            metadata=meta,
            reward_domain=domain,
        )
        validate_logged_data(data)
        return data

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1 if self.n_rows else 1

    @property
    def context_dim(self) -> int:
        return int(self.context.shape[1])

    def subset(self, rows: np.ndarray) -> LoggedData:
        """Rows ``rows`` (index array or boolean mask) as a new ``LoggedData``."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return LoggedData(
            context=self.context[rows],
            action=self.action[rows],
            reward=self.reward[rows],
            pscore=self.pscore[rows],
            session_id=self.session_id[rows],
            step=self.step[rows],
            position=self.position[rows],
            user_id=self.user_id[rows],
            terminated=self.terminated[rows],
            truncated=self.truncated[rows],
            n_actions=self.n_actions,
            logging_dist=pick(self.logging_dist),
            true_ctr=pick(self.true_ctr),
            metadata=dict(self.metadata),
            reward_domain=dict(self.reward_domain),
            pscore_group=pick(self.pscore_group),
        )


def validate_logged_data(data: LoggedData) -> None:
    """Check the value rules of a ``LoggedData`` (see :func:`offrec.logs.read_logs`); raise the first
    problem as an ``InputError``."""
    problems = value_problems(data)
    if problems:
        raise InputError(problems[0])


def value_problems(data: LoggedData) -> list[str]:
    """Every value rule of :func:`read_logs` a ``LoggedData`` breaks, one message each
    (column, rule, first offending row and value); empty when the log is valid."""
    out: list[str] = []

    def check(name: str, bad: np.ndarray, values: np.ndarray, rule: str) -> None:
        msg = _check_rows(name, bad, values, rule)
        if msg:
            out.append(msg)

    check("pscore", ~((data.pscore > 0) & (data.pscore <= 1)), data.pscore, "must be in (0, 1]")
    check("pscore", (data.pscore > 0) & (data.pscore < MIN_PSCORE), data.pscore, PSCORE_FLOOR_RULE)
    check("reward", ~np.isfinite(data.reward), data.reward, "must be finite")
    dom = data.reward_domain
    finite = np.isfinite(data.reward)
    if dom.get("kind", "binary") == "binary":
        check(
            "reward",
            finite & (data.reward != 0) & (data.reward != 1),
            data.reward,
            "must be 0 or 1 (the log declares a binary reward; import a continuous reward "
            "with its bounds)",
        )
    else:
        # bounds widened to their float32 roundings: the log stores rewards as float32
        lo = min(dom["low"], float(np.float32(dom["low"])))
        hi = max(dom["high"], float(np.float32(dom["high"])))
        check(
            "reward",
            finite & ((data.reward < lo) | (data.reward > hi)),
            data.reward,
            f"must be in the declared domain [{lo}, {hi}]",
        )
    bad_ctx = ~np.isfinite(data.context).all(axis=1)
    if bad_ctx.any():
        i = int(np.flatnonzero(bad_ctx)[0])
        out.append(f"column 'context' must be finite; row {i} has {data.context[i].tolist()}")
    check(
        "action",
        (data.action < 0) | (data.action >= data.n_actions),
        data.action,
        f"must be in [0, {data.n_actions})",
    )
    check("step", data.step < 0, data.step, "must be >= 0")
    check("position", data.position < 0, data.position, "must be >= 0")
    if data.logging_dist is not None:
        if data.logging_dist.shape[1] != data.n_actions:
            out.append(
                f"column 'logging_dist' must have n_actions={data.n_actions} entries per row; "
                f"got {data.logging_dist.shape[1]}"
            )
        else:
            sums = data.logging_dist.sum(axis=1, dtype=np.float64)
            check(
                "logging_dist", np.abs(sums - 1) > 1e-4, sums, "rows must sum to 1 (row sum shown)"
            )
    if data.true_ctr is not None:
        bad = ~((data.true_ctr >= 0) & (data.true_ctr <= 1))
        check("true_ctr", bad, data.true_ctr, "must be in [0, 1]")
    if data.pscore_group is not None:  # a group holds the logged item: pscore <= it <= 1
        pg = data.pscore_group
        bad = ~((pg >= data.pscore * (1 - 1e-6)) & (pg <= 1 + 1e-9))
        check("pscore_group", bad, pg, "must be in [pscore, 1]")
    return out


def _check_rows(name: str, bad: np.ndarray, values: np.ndarray, rule: str) -> str | None:
    if not bad.any():
        return None
    rows = np.flatnonzero(bad)
    i = int(rows[0])
    value = values[i].item() if hasattr(values[i], "item") else values[i]
    more = f" ({rows.size} rows in all)" if rows.size > 1 else ""
    return f"column '{name}' {rule}; row {i} has {value!r}{more}"
