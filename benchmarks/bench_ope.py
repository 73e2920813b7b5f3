"""Speed of the bandit OPE core at n = 1,000,000 rows and 100 actions.

Run: ``.venv/bin/python -m benchmarks.bench_ope`` (about a minute; ~3 GB of RAM).

Seconds are the best of ``repeat`` runs (the least disturbed by other load on the
machine). "peak MB" is the memory the operation allocates on top of its inputs
(tracemalloc, a separate run). ``check_dist=False`` rows skip reading the whole
``(n, n_actions)`` arrays for validation (rows summing to 1, finiteness), as the
runner does after checking a policy once; the per-row arrays are still checked.

When an OBP environment is found (``OBP_PYTHON``, default ``/tmp/venv-obp/bin/python``,
built by ``shared/reference/setup_obp.sh``; OBP is never a dependency of offrec), OBP's
``InverseProbabilityWeighting.estimate_policy_value`` runs on the same arrays (saved to
``.npy`` and loaded into memory before timing) in its own process, in rounds alternated
with offrec's IPS, so both see the same load; the table gives each side's median.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._table import best_time, print_table


def _peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def make_data(n: int, n_actions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A softmax logger and a sharper softmax target over random scores; q_hat in [0, 0.3]."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, n_actions))
    logging = _softmax(scores.copy())
    cdf = np.cumsum(logging, axis=1)
    action = np.minimum((cdf < rng.random(n)[:, None]).sum(axis=1), n_actions - 1)
    del cdf
    pscore = logging[np.arange(n), action]
    del logging
    scores *= 2.0
    target = _softmax(scores)
    q_hat = 0.3 * rng.random((n, n_actions))
    reward = (rng.random(n) < q_hat[np.arange(n), action]).astype(np.float64)
    return dict(
        reward=reward, action=action, pscore=pscore, action_dist=target, estimated_rewards=q_hat
    )


OBP_IPW = """
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
from obp.ope import InverseProbabilityWeighting
d = {k: np.load(f"{sys.argv[1]}/{k}.npy") for k in ("reward", "action", "pscore", "action_dist")}
d["action_dist"] = d["action_dist"][:, :, None]  # OBP's (n, n_actions, len_list)
ipw, times = InverseProbabilityWeighting(), []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    v = ipw.estimate_policy_value(**d)
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "value": float(v)}))
"""


def obp_ipw_rows(data: dict[str, np.ndarray], rounds: int = 3, repeat: int = 5) -> list[list[Any]]:
    """OBP's IPW against offrec's IPS on the same arrays, alternated in ``rounds``."""
    import json

    from offrec.ope import estimate_policy_value

    python = os.environ.get("OBP_PYTHON", "/tmp/venv-obp/bin/python")
    if not os.path.exists(python):
        print(f"(OBP not found at {python}: set OBP_PYTHON to compare with OBP's IPW)")
        return []
    arrays = {k: data[k] for k in ("reward", "action", "pscore", "action_dist")}
    obp: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, v in arrays.items():
            np.save(f"{tmp}/{k}.npy", v)
        for _ in range(rounds):
            out = subprocess.run(
                [python, "-c", OBP_IPW, tmp, str(repeat)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            obp += res["times"]
            for _ in range(repeat):
                t = time.perf_counter()
                mine = estimate_policy_value("ips", **arrays)
                ours.append(time.perf_counter() - t)
    if abs(mine - res["value"]) > 1e-9 * abs(mine):
        raise AssertionError(f"OBP's IPW {res['value']!r} differs from offrec's IPS {mine!r}")
    return [
        ["OBP IPW (its own process, alternated)", float(np.median(obp)), "same value as ips"],
        ["ips (alternated with OBP)", float(np.median(ours)), "faster than OBP's IPW"],
    ]


def main(n: int = 1_000_000, n_actions: int = 100, repeat: int = 3) -> None:
    from offrec.ope import estimate_interval, estimate_policy_value

    t = time.perf_counter()
    data = make_data(n, n_actions)
    setup = time.perf_counter() - t
    model_free = {k: v for k, v in data.items() if k != "estimated_rewards"}

    def value(name: str, check: bool) -> Callable[[], Any]:
        arrays = data if name == "dr" else model_free
        return lambda: estimate_policy_value(name, check_dist=check, **arrays)

    def interval(name: str, method: str) -> Callable[[], Any]:
        arrays = data if name == "dr" else model_free
        return lambda: estimate_interval(name, method=method, n_bootstrap=1000, seed=0, **arrays)

    dist = data["action_dist"]
    ops: list[tuple[str, Callable[[], Any], str]] = [
        ("floor: action_dist.sum(axis=1)", lambda: dist.sum(axis=1), "(one read of the array)"),
        ("ips", value("ips", True), "<= 1.3x the floor"),
        ("ips, check_dist=False", value("ips", False), "<= 20 ms"),
        ("snips", value("snips", True), "<= 1.3x the floor"),
        ("snips, check_dist=False", value("snips", False), "<= 20 ms"),
        ("dr (given estimated_rewards)", value("dr", True), "<= 0.5 s"),
        ("dr, check_dist=False", value("dr", False), ""),
        ("ips + bootstrap 1000", interval("ips", "bootstrap"), "<= 2 s"),
        ("snips + bootstrap 1000", interval("snips", "bootstrap"), "<= 2 s"),
        ("dr + bootstrap 1000", interval("dr", "bootstrap"), "<= 2 s"),
        ("ips + normal interval", interval("ips", "normal"), ""),
        ("dr + bernstein interval", interval("dr", "bernstein"), ""),
    ]
    rows = []
    floor = None
    for name, fn, target in ops:
        seconds = best_time(fn, repeat=repeat)
        floor = floor or seconds
        rows.append([name, n, n_actions, seconds, seconds / floor, _peak_mb(fn), target])
    for name, seconds, target in obp_ipw_rows(data):
        rows.append([name, n, n_actions, seconds, seconds / floor, "", target])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(
        f"Bandit OPE core, float64 inputs (data set-up {setup:.1f} s; best of {repeat}; "
        f"{os.cpu_count()} CPUs, load average {load:.1f})",
        ["operation", "n", "n_actions", "seconds", "x floor", "peak MB", "issue target"],
        rows,
    )


if __name__ == "__main__":
    main()
