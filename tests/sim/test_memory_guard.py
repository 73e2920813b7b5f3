"""The memory guard covers the per-batch arrays that scale with the catalog (issue 21):
its estimate comes from running the same code on a few sessions, so it follows what a
policy really allocates (dense softmax: rows x items; uniform: nothing per item)."""

from __future__ import annotations

import tracemalloc

import pytest

from offrec.cli import main
from offrec.logs import collect
from offrec.logs.writer import check_collect_memory
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig, limits


@pytest.mark.parametrize(
    ("kind", "horizon"), [("softmax", 1), ("softmax", 4), ("epsilon_greedy", 1)]
)
def test_the_estimate_bounds_the_measured_peak(tmp_path, monkeypatch, kind, horizon):
    world = World(WorldConfig(n_items=3000, n_users=500, horizon=horizon), seed=0)
    policy = logging_policy(world, kind)
    chunk = 2048
    per_cohort = max(1, chunk // horizon)
    seen: list[int] = []
    real = limits.check_memory
    monkeypatch.setattr(
        limits, "check_memory", lambda need, *a, **k: seen.append(need) or real(need, *a, **k)
    )
    tracemalloc.start()
    try:
        collect(
            world, policy, out=tmp_path / "log", n_decisions=2 * chunk, chunk_rows=chunk, seed=1
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (need,) = seen
    dense = per_cohort * world.n_actions * 4  # one (rows, items) float32 array
    assert peak > dense  # the per-batch arrays are dense over the catalog here
    assert peak <= need <= 6 * peak, (peak, need)


def test_simulate_refuses_a_batch_that_cannot_fit_with_the_figure_and_the_fix(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(limits, "physical_memory", lambda: 2 << 30)  # a 2 GB machine
    argv = [
        "simulate",
        "--out",
        str(tmp_path / "log"),
        "--n-items",
        "20000",
        "--n-decisions",
        "70000",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "simulating 65,536 rows at once with 20,000 items would need about" in err
    assert "use a smaller --batch-size" in err and err.count("\n") == 1
    assert not (tmp_path / "log").exists()
    small = [
        "simulate",
        "--out",
        str(tmp_path / "log"),
        "--n-items",
        "20000",
        "--n-decisions",
        "3000",
    ]
    assert main([*small, "--batch-size", "1024", "-q"]) == 0  # what the message says works


def test_a_policy_that_allocates_nothing_per_item_is_not_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "physical_memory", lambda: 2 << 30)
    world = World(WorldConfig(n_items=20000, n_users=500), seed=0)
    check_collect_memory(world, logging_policy(world, "uniform"), 65_536)
    with pytest.raises(ValueError, match="--batch-size"):
        check_collect_memory(world, logging_policy(world, "softmax"), 65_536)
