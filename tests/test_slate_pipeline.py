"""The shipped slate pipeline (``pipelines/slate_ope.toml``) on a small budget, through
``offrec run``: every click model reported, estimates checked against the truth."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from offrec.cli import main
from offrec.core.errors import InputError
from offrec.slate_pipeline import SlatePipelineConfig, run_slate_pipeline

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "slate_ope.toml"


@pytest.mark.slow  # ~30 s: three logs, two OPE passes and a training each
def test_shipped_slate_pipeline_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = tomllib.loads(PIPELINE.read_text())
    cfg = SlatePipelineConfig.from_dict(raw)
    assert cfg.click_models == ("independent", "pbm", "cascade")
    small = tmp_path / "small.toml"
    text = PIPELINE.read_text().replace("n_slates = 20_000", "n_slates = 3_000")
    small.write_text(text.replace("n_bootstrap = 300", "n_bootstrap = 100"))
    out = tmp_path / "run"
    assert main(["-q", "run", str(small), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "report.md").read_text().strip() == report.strip()
    for kind in cfg.click_models:
        m = metrics["click_models"][kind]
        assert f"## {kind} clicks" in report
        est = {r["estimator"]: r for r in m["estimates"]}
        assert "pi" not in est and {"sips", "iips", "rips", "cascade-dr"} <= set(est)
        truth = m["truth"]["value"]
        # the estimators unbiased under every click model are within two interval widths
        # (about eight standard errors) of the truth: a loose bound a biased one breaks
        for name in ("sips", "rips"):
            r = est[name]
            assert r["covers"] == (r["low"] <= truth <= r["high"])
            assert abs(r["value"] - truth) <= 2 * (r["high"] - r["low"]), (kind, name, r, truth)
        assert m["decision"]["verdict"] and m["decision"]["sentences"]
        assert m["truth_learned"]["value"] > 0 and m["truth_logger"]["value"] > 0


def test_slate_pipeline_config_errors() -> None:
    with pytest.raises(InputError, match=r"unknown \[slate\] key 'sizes'"):
        SlatePipelineConfig.from_dict({"slate": {"sizes": 3}})
    with pytest.raises(InputError, match="click_models must be a non-empty list"):
        SlatePipelineConfig.from_dict({"slate": {"click_models": ["dbn"]}})
    with pytest.raises(InputError, match=r"needs a \[slate\] table"):
        SlatePipelineConfig.from_dict({})
    with pytest.raises(InputError):
        run_slate_pipeline(SlatePipelineConfig(n_slates=10), Path("."))
