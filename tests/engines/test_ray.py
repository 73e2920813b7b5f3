"""The Ray engine (a local Ray with 2 CPUs): the same numbers as the local engine, errors
that name the problem in one line, and Ray shut down afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from offrec.core.policy import Head
from offrec.logs import collect
from offrec.ope import FixedProbs, evaluate
from offrec.policies.loggers import logging_policy
from offrec.sim import MyopicOracle, World, WorldConfig

ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed (pip install 'offrec[ray]')"
)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    from offrec.engines.ray import start

    start(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("raylogs")
    bandit = World(WorldConfig(horizon=1, n_items=20, n_users=2000), seed=0)
    collect(
        bandit,
        logging_policy(bandit, "softmax"),
        out=root / "b",
        n_decisions=20_000,
        seed=1,
        chunk_rows=4096,
        rows_per_file=8192,
    )
    session = World(WorldConfig(horizon=4, n_items=10, n_users=500), seed=1)
    collect(
        session,
        logging_policy(session, "softmax"),
        out=root / "s",
        n_sessions=2000,
        seed=2,
        chunk_rows=2048,
        rows_per_file=3000,
    )
    return {"root": root, "bandit": bandit, "session": session}


def test_ray_equals_local_bandit(local_ray: None, logs: dict) -> None:
    target = {"m": MyopicOracle(logs["bandit"], Head("epsilon_greedy", epsilon=0.3))}
    kw = dict(
        estimators=["ips", "snips", "dr"], n_bootstrap=200, seed=3, fit_rows=30_000, batch_size=3000
    )
    local = evaluate(logs["root"] / "b", target, interval="bootstrap", **kw).table
    remote = evaluate(logs["root"] / "b", target, interval="bootstrap", engine="ray", **kw).table
    # stderr is the normal interval's half-width over t: the analytic intervals agree too
    for col in ("value", "stderr", "ess", "max_weight"):
        np.testing.assert_allclose(remote[col], local[col], rtol=1e-9)
    # bootstrap: the same resamples (keyed by row); float32 block products round ~1e-7
    for col in ("low", "high"):
        np.testing.assert_allclose(remote[col], local[col], rtol=1e-6)


def test_ray_equals_local_session(local_ray: None, logs: dict) -> None:
    world = logs["session"]
    target = {"e": logging_policy(world, "epsilon_greedy", epsilon=0.3)}
    kw = dict(estimators=["pdis", "wpdis", "dr"], interval="bootstrap", n_bootstrap=100, seed=1)
    local = evaluate(logs["root"] / "s", target, **kw).table
    remote = evaluate(logs["root"] / "s", target, engine="ray", **kw).table
    np.testing.assert_allclose(remote["value"], local["value"], rtol=1e-9)
    for col in ("low", "high"):  # float32 bootstrap products: ~1e-7 relative rounding
        np.testing.assert_allclose(remote[col], local[col], rtol=1e-6)


def test_ray_errors_are_one_line(local_ray: None, logs: dict, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted((logs["root"] / "b").glob("*.parquet")):
        table = pq.read_table(f)
        if f.name == "part-00001.parquet":
            r = table.column("reward").to_numpy().copy()
            r[5] = np.nan
            table = table.set_column(table.column_names.index("reward"), "reward", pa.array(r))
        pq.write_table(table, bad / f.name)
    target = {"m": MyopicOracle(logs["bandit"], Head())}
    with pytest.raises(
        ValueError,
        match=r"log file part-00001.parquet: column 'reward' must be finite; a row has nan \(the ray engine",
    ):
        evaluate(bad, target, estimators=["ips"], engine="ray", interval="normal")
    probs = FixedProbs(np.full((20_000, 20), 0.05))
    with pytest.raises(ValueError, match=r"the ray engine does not track"):
        evaluate(logs["root"] / "b", {"p": probs}, estimators=["ips"], engine="ray")


def test_unreachable_address_and_missing_ray(monkeypatch: pytest.MonkeyPatch, logs: dict) -> None:
    from offrec.engines.ray import RayEngine, start

    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(ValueError, match=r"cannot reach Ray at 127.0.0.1:1"):
        start("127.0.0.1:1")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(ValueError, match=r"pip install 'offrec\[ray\]'"):
        RayEngine().map_reduce(
            __import__("offrec.logs.scan", fromlist=["open_log"]).open_log(logs["root"] / "b"),
            lambda b: None,
        )
