"""pipelines/catalog.toml, read as shipped and run on a smaller catalog and log.

Its claims, checked against the exact truth: the shared-parameter learner beats the
logger; OffCEM (topic weights on the bilinear model's residual) is far closer to the
learner's true CTR than item-level IPS; the logger's own value is estimated by every
estimator; the estimator is not one that rests on item weights whose tail the log has not
sampled, and the gate ships the learner (which truly beats the logger).
"""

import json
import tomllib
from pathlib import Path

from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "catalog.toml"


def test_catalog_pipeline_ips_fails_offcem_works(tmp_path):
    raw = tomllib.loads(PIPELINE.read_text())
    assert raw["world"]["n_items"] == 100_000 and raw["logging"]["candidates"] == 200
    raw["world"].update(n_items=5000, n_users=1000)
    raw["logging"].update(n_decisions=20_000, candidates=50)
    result = run_pipeline(PipelineConfig.from_dict(raw), tmp_path / "catalog")
    metrics = json.loads((result.out / "metrics.json").read_text())
    truth = {k: v["value"] for k, v in metrics["truth"].items()}
    assert truth["hybrid"] > 1.5 * truth["logger"], truth
    t = result.table.set_index(["policy", "estimator"])["value"]
    err = {
        e: abs(t["hybrid", e] - truth["hybrid"]) / truth["hybrid"] for e in raw["ope"]["estimators"]
    }
    assert err["offcem"] < 0.25 and err["offcem"] < err["ips"] / 2, err
    # on the logger itself (weights 1) every estimator is the on-policy mean: near the truth
    n = 10_000  # rows of the holdout half; 4 binomial standard errors
    tol = 4 * (truth["logger"] * (1 - truth["logger"]) / n) ** 0.5
    for e in ("ips", "snips", "mips", "snmips"):
        assert abs(t["logger", e] - truth["logger"]) < tol, (e, t["logger", e], truth["logger"])
    choice, decision = metrics["estimator_choice"], metrics["decision"]
    assert choice["estimator"] in {"mips", "snmips", "offcem"}, choice
    assert decision["verdict"] == "recommend" and decision["pick"] == "hybrid", decision
