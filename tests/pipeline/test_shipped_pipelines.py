"""The three shipped pipelines (pipelines/*.toml) run end to end on tiny budgets.

Each file is read as shipped, then only its budgets shrink (log size, users, RL steps,
bootstrap resamples, online sessions): a key renamed in offrec, or a learner, logger or
estimator name a file uses that no longer exists, fails here before a user meets it.
"""

import json
import math
import tomllib
from pathlib import Path

import pytest

from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
RL_BUDGET = {"n_steps": 40, "batch_size": 32, "hidden_units": [16], "log_every": 20}


def tiny(raw: dict) -> dict:
    raw = json.loads(json.dumps(raw))  # a deep copy
    raw["world"] = {**raw.get("world", {}), "n_users": 300}
    log = raw["logging"]
    log.pop("n_sessions", None)
    log["n_decisions"] = 3000 if raw["world"].get("horizon", 1) > 1 else 1500
    for spec in raw.get("policies", []):
        if spec["learner"] in ("dqn", "double-dqn", "cql", "bcq"):
            spec["params"] = {**spec.get("params", {}), **RL_BUDGET}
    ope = raw.setdefault("ope", {})
    if ope.get("interval", "bootstrap") == "bootstrap":
        ope["n_bootstrap"] = 40  # the fewest that form a 95% interval (min_bootstrap)
    raw["online"] = {**raw.get("online", {}), "n_sessions": 200}
    return raw


@pytest.mark.parametrize("name", ["quickstart", "bandit_ope", "session_rl"])
def test_shipped_pipeline_runs_on_a_tiny_budget(name, tmp_path):
    raw = tomllib.loads((PIPELINES / f"{name}.toml").read_text())
    cfg = PipelineConfig.from_dict(tiny(raw))
    result = run_pipeline(cfg, tmp_path / name)
    trained = {p["name"] for p in raw.get("policies", [])}
    names = trained | {r["name"] for r in raw["references"]}
    metrics = json.loads((result.out / "metrics.json").read_text())
    # every policy gets its true value: a CTR (bandit) or clicks per session (<= horizon)
    horizon = raw["world"].get("horizon", 1)
    assert set(metrics["truth"]) == names
    for truth in metrics["truth"].values():
        assert math.isfinite(truth["value"]) and 0.0 <= truth["value"] <= horizon
    # every trained policy is estimated by every estimator of the file (stateful oracles
    # cannot be scored off-policy in session mode and are left out of the table)
    table = result.table
    assert trained <= set(table["policy"]) <= names
    assert set(table["estimator"]) == set(raw["ope"]["estimators"])
    assert table["value"].notna().all() and (result.out / "report.md").is_file()
