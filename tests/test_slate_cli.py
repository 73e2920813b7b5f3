"""``offrec simulate --slate-size`` and ``offrec evaluate`` on slate logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offrec.cli import main
from offrec.core.policy import UniformPolicy
from offrec.logs.slate import read_slate_log
from offrec.ope.slate import SLATE_ESTIMATORS
from offrec.policies.persist import save_policy
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld
from offrec.sim.world import World


def _simulate(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "slates"
    args = [
        "-q",
        "simulate",
        "--out",
        str(out),
        "--n-sessions",
        "800",
        "--slate-size",
        "4",
        "--n-items",
        "12",
        "--n-users",
        "60",
        "--seed",
        "3",
        *extra,
    ]
    assert main(args) == 0
    return out


def test_simulate_slates_writes_the_slate_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _simulate(tmp_path, "--click-model", "pbm")
    assert "(800 slates" in capsys.readouterr().out
    log = read_slate_log(out)
    assert log.slate_size == 4 and log.data.n_rows == 3200
    assert log.slate["click_model"]["kind"] == "pbm"
    assert log.slate["marginals"] == "exact"  # 12 * 11 * 10 prefixes: enumerated
    # softmax logger ranked by Plackett-Luce: joint = product of the four conditionals
    assert np.all(log.pscore_slate <= log.pscore_cascade + 1e-15)


def test_evaluate_slate_log_with_a_saved_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _simulate(tmp_path)
    capsys.readouterr()
    model = tmp_path / "uniform"
    save_policy(UniformPolicy(12), model)
    js = tmp_path / "est.json"
    code = main(
        [
            "-q",
            "evaluate",
            str(out),
            "--policy",
            str(model),
            "--n-bootstrap",
            "100",
            "--json",
            str(js),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "sips" in text and "cascade-dr" in text and "800 slates of 4" in text
    est = {r["estimator"]: r for r in json.loads(js.read_text())["estimates"]}
    # every registered slate estimator by default, but PI: the Plackett-Luce logger ranks
    # without replacement, which PI's marginal form cannot take (refused, below)
    assert set(est) == set(SLATE_ESTIMATORS) - {"pi"}
    assert all(r["low"] <= r["value"] <= r["high"] for r in est.values())
    # the truth of uniform random lists, by enumeration (12 items, lists of 4), is inside
    # the intervals of the estimators unbiased under cascade clicks (fixed seeds)
    world = World(WorldConfig(n_items=12, n_users=60), seed=0)
    truth = SlateWorld(world, 4, ClickModel("cascade")).true_value(
        PlackettLuce(UniformPolicy(12), 4)
    )
    assert truth.exact
    for name in ("sips", "rips", "cascade-dr"):
        assert est[name]["low"] <= truth.value <= est[name]["high"], (name, est[name], truth)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-decisions", "40"], "with --slate-size give --n-sessions"),
        (
            ["--n-sessions", "5", "--slate-size", "13"],
            r"slate_size must be <= n_items \(12\); got 13",
        ),
        (
            ["--n-sessions", "5", "--slate-size", "3", "--horizon", "4"],
            "world horizon must be 1; got 4",
        ),
    ],
)
def test_simulate_slate_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    base = ["simulate", "--out", str(tmp_path / "x"), "--n-items", "12", "--n-users", "10"]
    if "--slate-size" not in args:
        args = [*args, "--slate-size", "3"]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err)
    assert not (tmp_path / "x").exists()


def test_evaluate_slate_log_needs_a_policy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = _simulate(tmp_path)
    np.save(tmp_path / "p.npy", np.full((3200, 12), 1 / 12))
    assert main(["evaluate", str(out), "--probs", str(tmp_path / "p.npy")]) == 2
    assert "a slate log is evaluated with --policy" in capsys.readouterr().err


def test_evaluate_refuses_pi_on_a_ranking_logger(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _simulate(tmp_path)
    model = tmp_path / "uniform"
    save_policy(UniformPolicy(12), model)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--policy", str(model), "--estimators", "rips,pi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "estimator 'pi' is refused" in err and "ranks without replacement" in err
