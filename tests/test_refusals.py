"""Numbers that cannot be right are refused (issue 21, item 5): propensities so small that
weights overflow, bootstrap settings too small to form an interval, and probabilities
aligned to rows by position when the importer reordered the rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from offrec.cli import main
from offrec.core.errors import InputError
from offrec.logs import read_logs
from offrec.logs.schema import MIN_PSCORE
from offrec.ope import FixedProbs, evaluate
from offrec.ope.intervals import min_bootstrap


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("refuse")
    assert (
        main(
            ["-q", "simulate", "--out", str(root / "log"), "--n-decisions", "400", "--n-items", "5"]
        )
        == 0
    )
    return root


def test_a_propensity_below_the_floor_is_refused_by_every_reader(good, tmp_path, capsys):
    t = pq.read_table(good / "log" / "part-00000.parquet")
    p = t.column("pscore").to_numpy().copy()
    p[17] = 1e-300
    i = t.schema.get_field_index("pscore")
    (tmp_path / "bad").mkdir()
    pq.write_table(t.set_column(i, "pscore", pa.array(p)), tmp_path / "bad" / "part-00000.parquet")
    rule = f"column 'pscore' must be >= {MIN_PSCORE:g}"
    with pytest.raises(InputError, match=f"{rule}.*row 17 has 1e-300"):
        read_logs(tmp_path / "bad")
    probs = np.full((400, 5), 0.2)
    np.save(tmp_path / "p.npy", probs)
    assert main(["evaluate", str(tmp_path / "bad"), "--probs", str(tmp_path / "p.npy")]) == 2
    err = capsys.readouterr().err
    assert rule in err and "row 17" in err and err.count("\n") == 1
    assert main(["summary", str(tmp_path / "bad")]) == 2
    assert rule in capsys.readouterr().out
    # the floor itself is accepted
    p[17] = MIN_PSCORE
    pq.write_table(t.set_column(i, "pscore", pa.array(p)), tmp_path / "bad" / "part-00000.parquet")
    assert read_logs(tmp_path / "bad").pscore[17] == MIN_PSCORE


def test_too_few_resamples_to_form_an_interval_are_refused(good, tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.full((400, 5), 0.2))
    argv = [
        "evaluate",
        str(good / "log"),
        "--probs",
        str(tmp_path / "p.npy"),
        "--estimators",
        "ips",
    ]
    assert main([*argv, "--n-bootstrap", "1"]) == 2
    err = capsys.readouterr().err
    assert "n_bootstrap must be >= 40 for a 95% bootstrap interval" in err and "got 1" in err
    assert main([*argv, "--n-bootstrap", str(min_bootstrap(0.05))]) == 0
    capsys.readouterr()
    # every interval it forms holds its own estimate
    data = read_logs(good / "log")
    res = evaluate(
        data,
        {"t": FixedProbs(np.full((400, 5), 0.2))},
        estimators=["ips", "snips"],
        n_bootstrap=40,
        seed=3,
    )
    assert (
        (res.table["low"] <= res.table["value"]) & (res.table["value"] <= res.table["high"])
    ).all()


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_min_bootstrap_puts_a_resample_in_each_tail(alpha):
    b = min_bootstrap(alpha)
    assert b * alpha / 2 >= 1 - 1e-9 and (b - 1) * alpha / 2 < 1


def test_probs_by_position_are_refused_when_the_import_reordered_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 60
    src = pd.DataFrame(
        {
            "sess": rng.permutation(np.repeat(np.arange(20), 3)),
            "item": rng.integers(0, 3, n),
            "click": rng.integers(0, 2, n),
            "p": 1 / 3,
            "x": rng.normal(size=n),
        }
    )
    src["t"] = src.groupby("sess").cumcount()
    src.to_csv(tmp_path / "s.csv", index=False)
    assert (
        main(
            [
                "-q",
                "import",
                "csv",
                str(tmp_path / "s.csv"),
                "--out",
                str(tmp_path / "log"),
                "--action",
                "item",
                "--reward",
                "click",
                "--pscore",
                "p",
                "--session",
                "sess",
                "--step",
                "t",
                "--context",
                "x",
            ]
        )
        == 0
    )
    capsys.readouterr()
    k = read_logs(tmp_path / "log").n_actions
    # target probabilities computed per source row (a function of the source's x)
    probs = np.column_stack(
        [1 / (1 + np.exp(-src["x"]))] + [(1 - 1 / (1 + np.exp(-src["x"]))) / (k - 1)] * (k - 1)
    )
    np.save(tmp_path / "p.npy", probs)
    assert main(["evaluate", str(tmp_path / "log"), "--probs", str(tmp_path / "p.npy")]) == 2
    assert "reordered when it was imported" in capsys.readouterr().err
    # by key: aligned to the log's rows whatever their order
    keyed = pd.DataFrame(probs, columns=[f"a{i}" for i in range(k)])
    keyed.insert(0, "step", src["t"].to_numpy())
    data = read_logs(tmp_path / "log")
    # the importer numbers sessions by first appearance in (session, step) order
    codes = {s: i for i, s in enumerate(sorted(src["sess"].unique()))}
    keyed.insert(0, "session_id", src["sess"].map(codes).to_numpy())
    keyed.to_parquet(tmp_path / "p.parquet", index=False)
    out = tmp_path / "e.json"
    assert (
        main(
            [
                "-q",
                "evaluate",
                str(tmp_path / "log"),
                "--probs",
                str(tmp_path / "p.parquet"),
                "--estimators",
                "ips",
                "--interval",
                "none",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    got = json.loads(out.read_text())["estimates"][0]["value"]
    order = np.lexsort((src["t"], src["sess"]))  # the log's rows, in source row numbers
    want = evaluate(data, {"p": FixedProbs(probs[order])}, estimators=["ips"], interval=None)
    assert got == pytest.approx(float(want.table["value"].iloc[0]), rel=1e-9)  # JSON: 10 digits


def test_the_array_api_applies_the_same_floor():
    from offrec.ope import estimate_interval

    with pytest.raises(InputError, match=r"pscore must be >= 1e-12 .*row 1 has 1e-300"):
        estimate_interval(
            "snips",
            reward=[1.0, 0.0],
            action=[0, 1],
            pscore=[0.5, 1e-300],
            action_dist=[[0.5, 0.5], [0.5, 0.5]],
            method="normal",
        )
