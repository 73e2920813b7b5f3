"""evaluate's memory is checked before it reads the log (issue 21): the estimate covers
what scales with a user-given size (batch x items, fitting sample x items, bootstrap
resamples) and bounds the measured peak."""

from __future__ import annotations

import tracemalloc

import pytest

from offrec.cli import main
from offrec.logs import collect
from offrec.ope import evaluate
from offrec.ope.evaluate import evaluate_bytes
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    world = World(WorldConfig(n_items=600, n_users=500), seed=0)
    out = tmp_path_factory.mktemp("mem") / "log"
    collect(world, logging_policy(world, "softmax"), out=out, n_decisions=6000, seed=1)
    return out, world


@pytest.mark.parametrize(
    ("estimators", "n_bootstrap", "batch"),
    [(["ips", "snips"], 200, 4096), (["ips", "snips", "dr"], 200, 2048), (["ips"], 3000, 2048)],
)
def test_the_estimate_bounds_the_measured_peak(log, estimators, n_bootstrap, batch):
    path, world = log
    fit_rows = 2000
    tracemalloc.start()
    try:
        evaluate(
            path,
            {"t": logging_policy(world, "epsilon_greedy")},
            estimators=estimators,
            n_bootstrap=n_bootstrap,
            batch_size=batch,
            workers=1,
            fit_rows=fit_rows,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    need = sum(evaluate_bytes(world.n_actions, batch, 1, n_bootstrap, fit_rows).values())
    assert peak <= need <= 20 * peak, (peak, need)


@pytest.mark.parametrize(
    ("option", "value"), [("--n-bootstrap", "100000000"), ("--batch-size", "1000000000")]
)
def test_absurd_sizes_are_refused_before_reading_with_the_option_to_lower(
    log, tmp_path, capsys, option, value
):
    path, _ = log
    import numpy as np

    np.save(tmp_path / "p.npy", np.full((6000, 600), 1 / 600))
    assert main(["evaluate", str(path), "--probs", str(tmp_path / "p.npy"), option, value]) == 2
    err = capsys.readouterr().err
    assert "would need about" in err and f"lower {option}" in err and err.count("\n") == 1
