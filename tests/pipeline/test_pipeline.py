import json
import re

import numpy as np
import pandas as pd
import pytest

from offrec.cli import main
from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

TINY = """
name = "tiny"
seed = 3
[world]
n_users = 500
n_items = 20
[logging]
policy = "softmax"
n_decisions = 4000
[[policies]]
name = "linucb"
learner = "linucb"
head = {{ kind = "epsilon_greedy", epsilon = 0.2 }}
[[references]]
name = "uniform"
policy = "uniform"
[[references]]
name = "myopic"
policy = "myopic"
epsilon = 0.5
[ope]
estimators = {estimators}
n_bootstrap = 50
"""


def _write(tmp_path, estimators='["ips", "snips"]'):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(estimators=estimators))
    return path


def test_tiny_pipeline_report_agrees_with_metrics_and_truth(tmp_path):
    res = run_pipeline(_write(tmp_path), tmp_path / "out")
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    est = pd.DataFrame(metrics["estimates"])
    assert set(est["policy"]) == {"linucb", "uniform", "myopic"} and set(est["estimator"]) == {
        "ips",
        "snips",
    }
    # the truth in metrics is the world's exact value
    from offrec.policies import UniformPolicy
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_users=500, n_items=20), seed=0)
    assert metrics["truth"]["uniform"]["value"] == pytest.approx(
        world.true_value(UniformPolicy(20)).value
    )
    # every number in the report's main table is the one in metrics.json
    md = (out / "report.md").read_text()
    for row in metrics["estimates"]:
        line = next(
            ln
            for ln in md.splitlines()
            if ln.startswith(f"| {row['policy']} | {row['estimator']} |")
        )
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) == pytest.approx(row["value"], abs=5e-5)
        assert float(cells[5]) == pytest.approx(row["truth"], abs=5e-5)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert (out / "plots" / "values.png").stat().st_size > 10_000
    # relative error is |value - truth| / truth
    np.testing.assert_allclose(
        res.table["rel_error"], (res.table["value"] - res.table["truth"]).abs() / res.table["truth"]
    )
    # holdout: trained and evaluated on disjoint sessions
    assert (
        metrics["data"]["train_rows"] + metrics["data"]["eval_rows"]
        == metrics["data"]["rows"]
        == 4000
    )


def test_same_seed_same_metrics_and_changing_estimators_reuses_cache(tmp_path):
    first = run_pipeline(_write(tmp_path), tmp_path / "out")
    assert first.cache_hits == {"logs": False, "linucb": False}
    again = run_pipeline(_write(tmp_path), tmp_path / "out")
    assert again.cache_hits == {"logs": True, "linucb": True}
    pd.testing.assert_frame_equal(first.table, again.table)
    third = run_pipeline(_write(tmp_path, '["ips", "dr"]'), tmp_path / "out")
    assert third.cache_hits == {"logs": True, "linucb": True}
    assert set(third.table["estimator"]) == {"ips", "dr"}
    ips = lambda r: r.table[r.table.estimator == "ips"].reset_index(drop=True)["value"]  # noqa: E731
    pd.testing.assert_series_equal(ips(first), ips(third))
    # a fresh folder with the same seed reproduces the metrics exactly
    fresh = run_pipeline(_write(tmp_path), tmp_path / "fresh")
    pd.testing.assert_frame_equal(first.table, fresh.table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "x"\n[logging]\nn_decisions = 10\npolicy = "softmax"\nbta = 1\n',
            r"unknown key\(s\) \['bta'\] in \[logging\]; valid keys: policy, beta",
        ),
        ('name = "x"\n[logging]\nn_decisions = "ten"\n', "n_decisions must be int; got 'ten'"),
        ('name = "x"\n[logging\n', "invalid TOML"),
        (
            'name = "x"\nfoo = 1\n[logging]\nn_decisions = 10\n',
            r"unknown key\(s\) \['foo'\] at the top of the pipeline",
        ),
        (
            '[logging]\nn_decisions = 10\n[[policies]]\nname = "a"\nlearner = "magic"\n',
            "learner must be one of",
        ),
        (
            '[logging]\nn_decisions = 10\n[world]\nhorizon = 0\n[[references]]\nname="u"\npolicy="uniform"\n',
            "WorldConfig.horizon must be >= 1; got 0",
        ),
    ],
)
def test_malformed_pipeline_is_one_line_error(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_shipped_pipelines_parse():
    for name in ("quickstart", "bandit_ope", "session_rl"):
        cfg = PipelineConfig.from_file(f"pipelines/{name}.toml")
        assert cfg.name == name
