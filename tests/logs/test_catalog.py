"""The item table beside a large-catalog log, and the logged group propensity.

- ``collect`` with a two-stage logger writes ``_offrec_items.arrow`` (the world's items) and
  a ``pscore_group`` column equal to the logger's group probability at the logged item
  (computed here independently from the dense distribution);
- every Parquet reader's folder forms still read only the part files;
- MIPS from the logged column equals MIPS from the logger rebuilt from the metadata;
- catalog exports (CSV, Parquet, with ``emb_*`` columns) read back, and bad ones are errors
  naming the column and the row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offrec.core.errors import InputError
from offrec.logs import collect, read_logs
from offrec.logs.catalog import CATALOG_FILE, ItemTable, read_catalog, world_catalog
from offrec.policies.bandits.hybrid import catalog_features
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[World, object, Path]:
    world = World(WorldConfig(n_items=400, n_users=300), seed=0)
    logger = logging_policy(world, "softmax", candidates=30, floor=0.1)
    out = tmp_path_factory.mktemp("cat") / "log"
    collect(world, logger, out=out, n_decisions=2000, seed=1, chunk_rows=700)
    return world, logger, out


def test_collect_writes_the_item_table_and_the_group_pscore(big):
    world, logger, out = big
    assert (out / CATALOG_FILE).is_file()
    table = read_catalog(out)
    np.testing.assert_array_equal(table.topic, world.item_topic)
    np.testing.assert_array_equal(table.embedding, world.item_vec.astype(np.float32))
    np.testing.assert_array_equal(table.quality, world.item_quality)
    assert table.topics == tuple(world.topics)
    np.testing.assert_allclose(table.features(), catalog_features(world), rtol=1e-6)
    data = read_logs(out)
    assert data.pscore_group is not None
    dense = logger.action_dist(data.context.astype(np.float32))  # (n, 400): small catalog
    same = world.item_topic[None, :] == world.item_topic[data.action][:, None]
    np.testing.assert_allclose(data.pscore_group, (dense * same).sum(axis=1), rtol=1e-6)
    assert (data.pscore_group >= data.pscore).all() and (data.pscore_group < 1).all()


def test_readers_skip_the_item_table(big):
    import duckdb
    import pyarrow.parquet as pq

    _, _, out = big
    n = read_logs(out).n_rows
    assert pq.read_table(out).num_rows == n and len(pd.read_parquet(out)) == n
    for target in (str(out), f"{out}/*.parquet"):
        ((count,),) = duckdb.sql(f"SELECT count(*) FROM read_parquet('{target}')").fetchall()
        assert count == n


def test_mips_from_the_logged_column_equals_the_rebuilt_logger(big):
    from dataclasses import replace

    from offrec.ope import evaluate
    from offrec.policies.bandits.hybrid import HybridLinear

    world, _, out = big
    data = read_logs(out)
    h = HybridLinear(catalog_features(world), world.context_dim, candidates=10, epsilon=0.1)
    h.partial_fit(data.context, data.action, data.reward)
    est = ["mips", "snmips"]
    with_col = evaluate(data, {"h": h}, estimators=est, interval="normal").table
    without = replace(data, pscore_group=None)
    rebuilt = evaluate(without, {"h": h}, estimators=est, interval="normal").table
    np.testing.assert_allclose(with_col["value"], rebuilt["value"], rtol=1e-6)


def test_bad_group_pscore_is_an_error_naming_the_column(big):
    from dataclasses import replace

    from offrec.logs.data import validate_logged_data

    data = read_logs(big[2])
    bad = data.pscore_group.copy()
    bad[3] = data.pscore[3] / 2  # below the item's own propensity
    with pytest.raises(InputError, match=r"column 'pscore_group' must be in \[pscore, 1\]; row 3"):
        validate_logged_data(replace(data, pscore_group=bad))


def test_catalog_exports_read_back(tmp_path):
    df = pd.DataFrame(
        {
            "item_id": ["x", "y", "z"],
            "topic": ["news", "music", "news"],
            "quality": [0.1, 0.2, 0.3],
            "emb_1": [1.0, 2.0, 3.0],
            "emb_0": [4.0, 5.0, 6.0],
        }
    )
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet")
    for f in ("c.csv", "c.parquet"):
        t = read_catalog(tmp_path / f)
        assert t.topics == ("music", "news") and t.topic.tolist() == [1, 0, 1]
        assert t.embedding.tolist() == [[4, 1], [5, 2], [6, 3]]  # emb_0 first
        assert t.reordered(["z", "x"]).quality.tolist() == [0.3, 0.1]
    with pytest.raises(InputError, match=r"lacks 1 item id\(s\) of the log, e.g. \['w'\]"):
        t.reordered(["x", "w"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns="item_id"), "must have an 'item_id' column"),
        (lambda d: d.assign(item_id=[1, 1, 2]), "'item_id' must be unique; row 1 repeats 1"),
        (
            lambda d: d.assign(quality=[0.0, np.nan, 1.0]),
            "'quality' must hold finite numbers; row 1",
        ),
        (lambda d: d.drop(columns=["emb_0"]), "must have an embedding"),
    ],
)
def test_bad_catalog_exports(tmp_path, change, message):
    df = pd.DataFrame({"item_id": [1, 2, 3], "quality": [0.0, 0.5, 1.0], "emb_0": [1.0, 2, 3]})
    change(df).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match=message):
        read_catalog(tmp_path / "c.csv")


def test_world_catalog_round_trips_through_arrow(tmp_path):
    from offrec.logs.catalog import write_catalog

    world = World(WorldConfig(n_items=50, n_users=20), seed=3)
    t = world_catalog(world)
    write_catalog(tmp_path, t)
    back = read_catalog(tmp_path)
    assert isinstance(back, ItemTable) and back.topics == t.topics
    np.testing.assert_array_equal(back.topic, t.topic)
    np.testing.assert_array_equal(back.item_id, t.item_id)


def test_import_with_a_catalog_gives_the_hybrid_learner_the_items(big, tmp_path):
    """A real log (CSV, item ids as strings, items numbered by the catalog) brings its
    catalog: the import stores it, its topics become the item groups, and the hybrid
    learner trained on the import equals the one trained with the world's item table."""
    from offrec.cli import main
    from offrec.policies.logged import fit_logged
    from offrec.policies.persist import load_policy
    from offrec.policies.registry import make_learner

    world, _, out = big
    data = read_logs(out)
    t = world_catalog(world)
    order = np.random.default_rng(0).permutation(world.n_actions)  # the export's own order
    cat = pd.DataFrame(
        {
            "item_id": [f"i{a}" for a in order],
            "topic": [world.topics[g] for g in t.topic[order]],
            "quality": t.quality[order],
        }
    )
    for j in range(t.embedding.shape[1]):
        cat[f"emb_{j}"] = t.embedding[order, j].astype(np.float64)
    cat.to_csv(tmp_path / "catalog.csv", index=False)
    ctx = {f"x{j:02d}": data.context[:, j] for j in range(data.context_dim)}
    pd.DataFrame(
        {"item": [f"i{a}" for a in data.action], "click": data.reward, "prop": data.pscore, **ctx}
    ).to_csv(tmp_path / "log.csv", index=False)
    imp, model = tmp_path / "imp", tmp_path / "m"
    assert (
        main(
            [
                "import",
                "csv",
                str(tmp_path / "log.csv"),
                "--out",
                str(imp),
                "--action",
                "item",
                "--reward",
                "click",
                "--pscore",
                "prop",
                "--context-prefix",
                "x",
                "--catalog",
                str(tmp_path / "catalog.csv"),
                "-q",
            ]
        )
        == 0
    )
    got = read_logs(imp)
    back = read_catalog(imp)
    assert back.item_id.tolist() == [f"i{a}" for a in order]
    # action k of the import is item order[k] of the world; its topic follows it
    np.testing.assert_array_equal(order[got.action], data.action)
    assert [back.topics[g] for g in got.metadata["item_topics"]] == [
        world.topics[g] for g in world.item_topic[order]
    ]
    assert (
        main(
            [
                "train",
                "bandit",
                str(imp),
                "--learner",
                "hybrid",
                "--param",
                "candidates=5",
                "--out",
                str(model),
                "-q",
            ]
        )
        == 0
    )
    saved = load_policy(model)
    ref = make_learner("hybrid", world.n_actions, world.context_dim, world=world, candidates=5)
    fit_logged(ref, data)
    x = np.asarray(data.context[:50], np.float64)
    # the same model up to the numbering of the items
    np.testing.assert_allclose(saved.predict_mean(x), ref.predict_mean(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        saved.predict_pairs(x, np.tile(np.arange(5), (50, 1))),
        ref.predict_pairs(x, np.tile(order[:5], (50, 1))),
        rtol=1e-4,
        atol=1e-6,
    )


def test_import_refuses_a_catalog_missing_a_logged_item(tmp_path):
    from offrec.cli import main

    pd.DataFrame({"item_id": ["a", "b"], "emb_0": [0.0, 1.0]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    pd.DataFrame({"item": ["a", "z"], "click": [0, 1], "prop": [0.5, 0.5]}).to_csv(
        tmp_path / "log.csv", index=False
    )
    code = main(
        [
            "import",
            "csv",
            str(tmp_path / "log.csv"),
            "--out",
            str(tmp_path / "o"),
            "--action",
            "item",
            "--reward",
            "click",
            "--pscore",
            "prop",
            "--catalog",
            str(tmp_path / "c.csv"),
            "-q",
        ]
    )
    assert code == 2 and not (tmp_path / "o").exists()


def test_absurd_catalogs_are_refused_with_the_estimate_and_what_fits(capsys):
    import re

    from offrec.cli import main
    from offrec.sim.limits import check_world_size, world_bytes

    limit = 1 << 30
    cfg = WorldConfig(n_items=10**9, n_users=1000)
    with pytest.raises(
        InputError, match=r"n_items=1,000,000,000 is too large: .* use n_items <= "
    ) as e:
        check_world_size(cfg, limit)
    fits = int(re.search(r"use n_items <= ([\d,]+)", str(e.value)).group(1).replace(",", ""))
    check_world_size(WorldConfig(n_items=fits, n_users=1000), limit)  # the advice holds
    with pytest.raises(InputError):
        check_world_size(WorldConfig(n_items=fits + 1000, n_users=1000), limit)
    assert sum(world_bytes(WorldConfig(n_items=fits, n_users=1000)).values()) <= limit
    assert (
        main(
            [
                "simulate",
                "--out",
                "/nonexistent/x",
                "--n-items",
                str(10**10),
                "--candidates",
                "200",
                "--n-decisions",
                "1000",
                "-q",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use n_items <= " in err and "Traceback" not in err
