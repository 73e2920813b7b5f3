"""The report a pipeline writes: headline, trust section, metrics, in both log types."""

import json

import pytest

from offrec.pipeline import run_pipeline

BANDIT = """
name = "tiny"
seed = 3
[world]
n_users = 500
n_items = 20
[logging]
policy = "softmax"
n_decisions = 20000
[[policies]]
name = "linucb"
learner = "linucb"
head = { kind = "epsilon_greedy", epsilon = 0.2 }
[[references]]
name = "logger"
policy = "logger"
[[references]]
name = "uniform"
policy = "uniform"
[[references]]
name = "myopic"
policy = "myopic"
[ope]
estimators = ["ips", "snips", "dm", "dr"]
n_bootstrap = 50
holdout = 0.5
"""

SESSION = """
name = "tiny-session"
seed = 1
[world]
n_users = 300
n_items = 15
horizon = 4
[logging]
policy = "softmax"
n_decisions = 3000
[[policies]]
name = "greedy"
learner = "reward-model"
[[references]]
name = "logger"
policy = "logger"
[[references]]
name = "uniform"
policy = "uniform"
[[references]]
name = "myopic oracle"
policy = "myopic"
[ope]
estimators = ["pdis", "wpdis"]  # no dr/fqe (slow FQE fits)
interval = "normal"
holdout = 0.3
[online]
n_sessions = 500
"""


def _run(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    res = run_pipeline(path, tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    return res, metrics, (tmp_path / "out" / "report.md").read_text()


def _best_deployable(metrics, estimator, deployable):
    rows = [r for r in metrics["estimates"] if r["estimator"] == estimator]
    return max((r for r in rows if r["policy"] in deployable), key=lambda r: r["value"])["policy"]


def test_bandit_report_recommends_a_deployable_policy_with_a_paired_lift(tmp_path):
    res, metrics, md = _run(tmp_path, BANDIT)
    d = metrics["decision"]
    choice = metrics["estimator_choice"]
    # the headline estimator is the one chosen from the log, among those that passed
    assert d["estimator"] == choice["estimator"] and d["estimator"] in choice["passed"]
    # the myopic oracle has the highest value but is a reference: the candidate is the
    # best deployable policy by that estimator, and with 10,000 held-out rows the gate
    # ships it: its paired lift over the logger is above 0
    assert d["best"] == _best_deployable(metrics, d["estimator"], {"linucb", "uniform"})
    assert d["verdict"] == "recommend" and d["pick"] == d["best"] == "linucb"
    assert d["logger"] == "logger"
    assert d["lift"]["method"] == "paired on the same rows" and d["lift"]["low"] > 0
    est = {(r["policy"], r["estimator"]): r for r in metrics["estimates"]}
    e = d["estimator"]
    lift = est[(d["pick"], e)]["value"] - est[("logger", e)]["value"]
    assert d["lift"]["diff"] == pytest.approx(lift)
    assert d["lift"]["low"] < d["lift"]["diff"] < d["lift"]["high"]
    # the gate never ships a loser: the pick is truly better than the logger
    assert metrics["truth"]["linucb"]["value"] > metrics["truth"]["logger"]["value"]
    # the headline is the first thing in the report, with the lift, the trust section follows
    first = md.split("## ")[0]
    assert "**Recommended (learned policy): linucb," in first
    assert f"Lift over the logging policy: {lift:+.4g}" in first
    assert "beats the logging policy" in first
    assert "## Can these estimates be trusted?" in md and "| policy | role | estimator |" in md
    assert f"Estimator chosen from the log: {e} (slope)." in md
    trust = {(r["policy"], r["estimator"]): r for r in metrics["trust"]}
    assert trust[("logger", "ips")]["ess_share"] == pytest.approx(1.0, abs=1e-9)
    for row in metrics["selection"]:
        assert row["picked_deployable"] == _best_deployable(
            metrics, row["estimator"], {"linucb", "uniform"}
        )


def test_session_report_declines_on_single_digit_ess_and_keeps_oracles_as_references(tmp_path):
    res, metrics, md = _run(tmp_path, SESSION)
    d = metrics["decision"]
    # the headline estimator is the one the OPE recommends for this table
    assert {r["estimator"] for r in metrics["estimates"] if r["recommended"]} == {d["estimator"]}
    # pdis and wpdis rest on single-digit ESS for the greedy policy: neither passes the
    # checks, so the gate says it cannot tell, and why, without naming a recommendation
    assert metrics["estimator_choice"]["estimator"] is None
    assert d["verdict"] == "cannot tell" and d["pick"] is None
    first = md.split("## ")[0]
    assert "**Cannot tell: run an online test." in first and "Recommended" not in first
    assert "no estimator passed the checks" in first
    # the OPE's paired interval serves sequential estimators too
    assert d["lift"]["method"] == "paired on the same rows"
    est = {(r["policy"], r["estimator"]): r for r in metrics["estimates"]}
    e = d["estimator"]
    lift = est[(d["best"], e)]["value"] - est[("logger", e)]["value"]
    assert d["lift"]["diff"] == pytest.approx(lift)
    # the myopic oracle needs the hidden state: not scored off-policy, but in the truth table
    assert "myopic oracle" not in {r["policy"] for r in metrics["estimates"]}
    assert "| myopic oracle | oracle |" in md
