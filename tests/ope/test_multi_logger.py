"""The multiple-logger estimators: equal to OBP 0.5.7's MultiLoggers* on the same arrays,
one-logger reductions, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from offrec.ope import ESTIMATORS, estimate_interval, estimate_policy_value

OBP_PYTHON = Path("/tmp/venv-obp/bin/python")

OBP_SCRIPT = r"""
import json, sys, numpy as np
from obp.ope.estimators_multi import (
    MultiLoggersNaiveInverseProbabilityWeighting as NIPS, MultiLoggersNaiveDoublyRobust as NDR,
    MultiLoggersBalancedInverseProbabilityWeighting as BIPS, MultiLoggersBalancedDoublyRobust as BDR,
    MultiLoggersWeightedInverseProbabilityWeighting as WIPS, MultiLoggersWeightedDoublyRobust as WDR,
)
d = {k: np.load(f"{sys.argv[1]}/{k}.npy") for k in
     ("reward", "action", "pscore", "pscore_avg", "stratum_idx", "action_dist", "q")}
ad, q = d["action_dist"][:, :, None], d["q"][:, :, None]
out = {}
for lam in (np.inf, 5.0):
    common = dict(reward=d["reward"], action=d["action"], action_dist=ad)
    out[f"naive-ips/{lam}"] = NIPS(lambda_=lam).estimate_policy_value(pscore=d["pscore"], **common)
    out[f"naive-dr/{lam}"] = NDR(lambda_=lam).estimate_policy_value(
        pscore=d["pscore"], estimated_rewards_by_reg_model=q, **common)
    out[f"multi-balanced-ips/{lam}"] = BIPS(lambda_=lam).estimate_policy_value(
        pscore_avg=d["pscore_avg"], **common)
    out[f"multi-balanced-dr/{lam}"] = BDR(lambda_=lam).estimate_policy_value(
        pscore_avg=d["pscore_avg"], estimated_rewards_by_reg_model=q, **common)
    out[f"multi-weighted-ips/{lam}"] = WIPS(lambda_=lam).estimate_policy_value(
        pscore=d["pscore"], stratum_idx=d["stratum_idx"], **common)
    out[f"multi-weighted-dr/{lam}"] = WDR(lambda_=lam).estimate_policy_value(
        pscore=d["pscore"], stratum_idx=d["stratum_idx"], estimated_rewards_by_reg_model=q, **common)
print(json.dumps({k: float(v) for k, v in out.items()}))
"""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def three_loggers(n: int = 3000, k: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows from 3 loggers of different temperatures (strata of sizes 1:2:3), a target, a model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    theta = rng.normal(size=(4, k))
    stratum = rng.choice(3, size=n, p=[1 / 6, 2 / 6, 3 / 6])
    temps = np.array([0.5, 1.0, 3.0])
    loggers = np.stack([_softmax(x @ theta / t) for t in temps])  # (3, n, k)
    logger = loggers[stratum, np.arange(n)]
    action = (logger.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(0, k - 1)
    q = 1 / (1 + np.exp(-(x @ rng.normal(size=(4, k)))))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(float)
    rho = np.bincount(stratum, minlength=3) / n
    avg = np.einsum("k,kna->na", rho, loggers)
    target = _softmax(x @ theta / 0.3)
    return dict(
        reward=reward,
        action=action,
        pscore=logger[np.arange(n), action],
        pscore_avg=avg[np.arange(n), action],
        stratum_idx=stratum,
        action_dist=target,
        q=np.clip(q + rng.normal(0, 0.05, q.shape), 0, 1),
    )


def _obp_ready() -> bool:
    if not OBP_PYTHON.is_file():
        return False
    return (
        subprocess.run([str(OBP_PYTHON), "-c", "import obp"], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(
    not _obp_ready(),
    reason="OBP 0.5.7 venv (/tmp/venv-obp, built by "
    "shared/reference/setup_obp.sh) not present: cross-check against OBP not run",
)
def test_equal_to_obp_multi_loggers_estimators(tmp_path: Path) -> None:
    d = three_loggers()
    for name, arr in d.items():
        np.save(tmp_path / f"{name}.npy", arr)
    run = subprocess.run(
        [str(OBP_PYTHON), "-c", OBP_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    obp = json.loads(run.stdout.strip().splitlines()[-1])
    arrays = dict(
        reward=d["reward"],
        action=d["action"],
        pscore=d["pscore"],
        action_dist=d["action_dist"],
        estimated_rewards=d["q"],
        stratum_idx=d["stratum_idx"],
        pscore_avg=d["pscore_avg"],
    )
    assert len(obp) == 12
    for key, want in obp.items():
        name, lam = key.split("/")
        if name.startswith("naive-"):  # naive == the usual IPS / DR with each row's pscore
            plain = {k: v for k, v in arrays.items() if k not in ("stratum_idx", "pscore_avg")}
            got = estimate_policy_value(name.removeprefix("naive-"), **plain, lambda_=float(lam))
        else:
            got = estimate_policy_value(name, **arrays, lambda_=float(lam))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), key


def test_one_logger_reductions_and_the_weighted_form_is_a_precision_average() -> None:
    d = three_loggers(seed=1)
    base = dict(
        reward=d["reward"],
        action=d["action"],
        pscore=d["pscore"],
        action_dist=d["action_dist"],
        estimated_rewards=d["q"],
    )
    # without strata / average propensities: the one-logger IPS and DR
    assert estimate_policy_value("multi-weighted-ips", **base) == estimate_policy_value(
        "ips", **base
    )
    assert estimate_policy_value("multi-balanced-dr", **base) == estimate_policy_value("dr", **base)
    # one stratum: every weight c_k is 1
    one = np.zeros_like(d["stratum_idx"])
    assert estimate_policy_value("multi-weighted-ips", **base, stratum_idx=one) == pytest.approx(
        estimate_policy_value("ips", **base), rel=1e-12
    )
    # weighted IPS = sum_k (n_k / var_k) V_k / sum_k (n_k / var_k), V_k the stratum's IPS
    s = d["stratum_idx"]
    w = d["action_dist"][np.arange(len(s)), d["action"]] / d["pscore"]
    terms = w * d["reward"]
    prec = np.array([np.sum(s == k) / terms[s == k].var() for k in range(3)])
    means = np.array([terms[s == k].mean() for k in range(3)])
    want = float(prec @ means / prec.sum())
    labels = np.array(["v1", "v2", "v3"])[s]  # model versions work as labels
    assert estimate_policy_value("multi-weighted-ips", **base, stratum_idx=labels) == pytest.approx(
        want, rel=1e-12
    )
    iv = estimate_interval("multi-weighted-ips", **base, stratum_idx=s, method="normal")
    assert iv.low < iv.value < iv.high and iv.value == pytest.approx(want, rel=1e-12)
    assert {
        "multi-balanced-ips",
        "multi-balanced-dr",
        "multi-weighted-ips",
        "multi-weighted-dr",
    } <= set(ESTIMATORS)


def test_balanced_weights_are_never_above_the_worst_loggers() -> None:
    d = three_loggers(seed=2)
    assert np.all(d["pscore_avg"] > 0)
    w_avg = d["action_dist"][np.arange(len(d["action"])), d["action"]] / d["pscore_avg"]
    w_own = d["action_dist"][np.arange(len(d["action"])), d["action"]] / d["pscore"]
    assert w_avg.var() < w_own.var()  # the point of balancing: steadier weights here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stratum_idx": np.zeros(3)}, r"stratum_idx must have shape \(4,\); got \(3,\)"),
        (
            {"stratum_idx": np.array([0, 0, 1, 1]), "reward": np.array([1.0, 1.0, 0.0, 0.0])},
            "stratum 1 \\(of 2\\) has terms of zero variance",
        ),
        (
            {"pscore_avg": np.array([0.5, 0.0, 0.5, 0.5])},
            r"pscore must be in \(0, 1\]; row 1 has 0.0",
        ),
    ],
)
def test_bad_strata_and_average_propensities(kwargs: dict, message: str) -> None:
    arrays = dict(
        reward=np.array([1.0, 0.0, 1.0, 1.0]),
        action=np.array([0, 1, 1, 0]),
        pscore=np.array([0.5, 0.5, 0.25, 0.8]),
        action_dist=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]]),
    )
    name = "multi-balanced-ips" if "pscore_avg" in kwargs else "multi-weighted-ips"
    with pytest.raises(ValueError, match=message):
        estimate_policy_value(name, **{**arrays, **kwargs})
