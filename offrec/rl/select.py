r"""Offline RL that does not lose to its logger: CQL's conservatism and training length
chosen from the log by off-policy selection, then gated (issue 26).

:func:`select_offline_rl` trains one policy per point of a small grid (CQL's ``alpha`` x
``n_steps``, default :data:`ALPHAS` x two step counts) on the training log, then splits
the evaluation log's sessions in two halves (a seeded hash of ``session_id``):

1. **selection half**: every candidate and the logging policy are scored by the session
   estimators; the estimator is chosen from the log
   (:func:`offrec.ope.selection.choose_estimator`), and the candidate with the highest
   *paired lower bound* of its lift over the logger by that estimator is selected;
2. **report half**: the selected candidate and the logger are scored again on sessions the
   selection never saw, so its reported estimate carries no winner's curse (picking the
   maximum of six noisy estimates biases that maximum upward), and the decision gate
   (:func:`offrec.ope.gate.decide`) says whether it can be shown to beat the logger.

A learned policy the gate cannot show beats the logger is reported as such
(``verdict``), with the gate's reasons; the logging policy is then what to keep.

References: Kumar et al. (2020), *Conservative Q-learning for offline reinforcement
learning*, NeurIPS (the alpha trade-off); Paine et al. (2020), *Hyperparameter selection
for offline reinforcement learning* (off-policy evaluation to choose among offline RL
runs); Su, Srinath & Krishnamurthy (2020), ICML (SLOPE).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.logs.data import LoggedData

ALPHAS: tuple[float, ...] = (0.1, 1.0, 4.0)
"""CQL conservatism grid: weak, moderate, strong (d3rlpy's DiscreteCQL ``alpha``)."""
STEPS: tuple[int, ...] = (2_500, 7_500)
"""Gradient-step grid: short and the pipeline's usual length."""


@dataclass(frozen=True)
class Candidate:
    """One trained policy of the grid and its score on the selection half.

    Attributes:
        name: ``"cql(alpha=..., steps=...)"``; alpha, n_steps: its hyper-parameters.
        value, low, high: its estimate by the chosen estimator (selection half).
        lift, lift_low, lift_high: its paired lift over the logger there.
    """

    name: str
    alpha: float
    n_steps: int
    value: float
    low: float
    high: float
    lift: float
    lift_low: float
    lift_high: float


@dataclass
class RLSelection:
    """The outcome of :func:`select_offline_rl`.

    Attributes:
        estimator: the estimator chosen on the selection half (None: nothing passed).
        candidates: every grid point's score.
        selected: the selected candidate's name (None when no estimator passed).
        value, low, high: the selected policy's estimate on the report half.
        lift, lift_low, lift_high: its paired lift over the logger on the report half.
        verdict: the gate's (``"recommend"``, ``"cannot tell"``, ``"keep the logger"``).
        sentences: the gate's headline; reasons: why it declined (empty if it ships).
        policy: the selected trained policy (not serialised).
    """

    estimator: str | None
    candidates: list[Candidate]
    selected: str | None
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    lift: float = math.nan
    lift_low: float = math.nan
    lift_high: float = math.nan
    verdict: str = "cannot tell"
    sentences: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    policy: Any = None

    @property
    def beats_logger(self) -> bool:
        """Whether the gate could show the selected policy beats the logger."""
        return self.verdict == "recommend"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (without the policy)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "policy"}
        d["beats_logger"] = self.beats_logger
        return d


def _name(alpha: float, n_steps: int) -> str:
    return f"cql(alpha={alpha:g}, steps={n_steps})"


def select_offline_rl(
    train: LoggedData,
    evaluation: LoggedData,
    logger: Any,
    *,
    alphas: Sequence[float] = ALPHAS,
    steps: Sequence[int] = STEPS,
    base: Any = None,
    estimators: Sequence[str] = ("mb", "pdis", "wpdis"),
    seed: int = 0,
    alpha: float = 0.05,
) -> RLSelection:
    """Train CQL over ``alphas`` x ``steps`` on ``train``, select on half of
    ``evaluation``'s sessions, report and gate on the other half (module docstring).

    Args:
        logger: the logging policy (``action_dist``), scored as the baseline.
        base: an :class:`offrec.rl.RLConfig` whose other fields the grid keeps (default
            ``RLConfig(algo="cql", seed=seed)``).
        estimators: the session estimators to choose from.
        alpha: the intervals' level is ``1 - alpha``.
    """
    from offrec.ope.evaluate import evaluate
    from offrec.ope.gate import decide
    from offrec.ope.session_data import session_folds
    from offrec.rl import RLConfig, train_rl

    if not alphas or not steps:
        raise InputError(f"alphas and steps must be non-empty; got {alphas!r}, {steps!r}")
    cfg0 = base if base is not None else RLConfig(algo="cql", seed=seed)
    policies: dict[str, Any] = {}
    grid: dict[str, tuple[float, int]] = {}
    for a in alphas:
        for n in steps:
            cfg = dataclasses.replace(cfg0, algo="cql", alpha=float(a), n_steps=int(n))
            policies[_name(a, n)] = train_rl(train, cfg).policy
            grid[_name(a, n)] = (float(a), int(n))
    fold = session_folds(np.asarray(evaluation.session_id), 2, seed + 1)
    sel = evaluation.subset(np.flatnonzero(fold == 0))
    rep = evaluation.subset(np.flatnonzero(fold == 1))
    kw: dict[str, Any] = {"estimators": list(estimators), "interval": "normal", "alpha": alpha}
    res = evaluate(sel, {"logger": logger, **policies}, seed=seed, mode="session", **kw)
    est = res.choice.estimator if res.choice is not None else None
    if est is None:
        return RLSelection(
            None, [], None, reasons=["no estimator passed the checks on the selection half"]
        )
    rows = {e.policy: e for e in res.estimates if e.estimator == est}
    cands = []
    for name, (a, n) in grid.items():
        d = res.compare(name, "logger", est)
        r = rows[name]
        cands.append(Candidate(name, a, n, r.value, r.low, r.high, d.value, d.low, d.high))
    best = max(cands, key=lambda c: c.lift_low)
    out = RLSelection(est, cands, best.name, policy=policies[best.name])
    res2 = evaluate(
        rep, {"logger": logger, best.name: policies[best.name]}, seed=seed, mode="session", **kw
    )
    table = res2.table
    row = table[(table["policy"] == best.name) & (table["estimator"] == est)].iloc[0]
    out.value, out.low, out.high = float(row["value"]), float(row["low"]), float(row["high"])
    lift = res2.compare(best.name, "logger", est)
    out.lift, out.lift_low, out.lift_high = lift.value, lift.low, lift.high

    def paired(a: str, b: str, e: str) -> tuple[float, float, float]:
        iv = res2.compare(a, b, e)
        return iv.value, iv.low, iv.high

    dec = decide(
        table,
        {"logger": "logger", best.name: "learned"},
        mode="session",
        alpha=alpha,
        estimator=est,
        paired=paired,
        choice=res2.choice,
        value_label="reward per session",
    )
    out.verdict, out.sentences, out.reasons = dec.verdict, list(dec.sentences), list(dec.reasons)
    if not out.beats_logger:
        out.sentences.insert(
            0,
            f"The selected offline RL policy ({best.name}) could not be shown to beat the "
            "logging policy: keep the logger or run an online test.",
        )
    return out
