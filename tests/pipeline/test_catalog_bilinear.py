"""pipelines/catalog.toml with ``[ope] reward_model = "bilinear"``: the cross-fitted bilinear
logistic model (offrec.reward.bilinear) in place of the learner's ridge model."""

import json
import tomllib
from pathlib import Path

import pytest

from offrec.core.errors import InputError
from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "catalog.toml"


def test_catalog_pipeline_with_the_bilinear_model(tmp_path):
    raw = tomllib.loads(PIPELINE.read_text())
    raw["world"].update(n_items=3000, n_users=1000)
    raw["logging"].update(n_decisions=16_000, candidates=50)
    raw["ope"].update(estimators=["ips", "dm", "offcem"], reward_model="bilinear")
    result = run_pipeline(PipelineConfig.from_dict(raw), tmp_path / "catalog")
    truth = {
        k: v["value"]
        for k, v in json.loads((result.out / "metrics.json").read_text())["truth"].items()
    }
    t = result.table.set_index(["policy", "estimator"])["value"]
    err = {
        e: abs(t["hybrid", e] - truth["hybrid"]) / truth["hybrid"] for e in ("ips", "dm", "offcem")
    }
    assert err["dm"] < 0.05 and err["offcem"] < 0.05 and err["offcem"] < err["ips"] / 2, err


def test_bilinear_is_a_valid_reward_model_name():
    raw = tomllib.loads(PIPELINE.read_text())
    raw["ope"]["reward_model"] = "bilinearr"
    with pytest.raises(InputError, match=r"reward_model must be one of \[.*'bilinear'.*bilinearr"):
        PipelineConfig.from_dict(raw)
    raw["ope"]["reward_model"] = "bilinear"
    assert PipelineConfig.from_dict(raw).ope.reward_model == "bilinear"
