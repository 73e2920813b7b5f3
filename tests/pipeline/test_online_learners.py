"""Pipelines with [[online_learners]]: learned by interaction, compared with offline ones."""

import json
import re

import pandas as pd
import pytest

from offrec.cli import main
from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

TINY = """
name = "tiny_online"
seed = 2
[world]
n_users = 300
n_items = 12
horizon = 4
[logging]
policy = "softmax"
n_decisions = 3000
[[policies]]
name = "greedy (offline)"
learner = "reward-model"
[[online_learners]]
name = "linucb (online)"
learner = "linucb"
n_steps = 4000
batch_size = 500
eval_every = 2000
eval_sessions = 300
[[references]]
name = "logger"
policy = "logger"
[[references]]
name = "myopic"
policy = "myopic"
[ope]
estimators = ["pdis"]
interval = "normal"
holdout = 0.3
[online]
n_sessions = 2000
seed = 4
"""


def test_online_learners_join_the_table_plot_and_report(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(TINY)
    res = run_pipeline(path, tmp_path / "out")
    m = res.metrics
    comp = pd.DataFrame(m["online_vs_offline"]).set_index("policy")
    assert comp.loc["linucb (online)", "approach"] == "online"
    assert comp.loc["linucb (online)", "live interactions"] == 4000
    assert comp.loc["greedy (offline)", "approach"] == "offline"
    assert comp.loc["greedy (offline)", "logged interactions"] == m["data"]["train_rows"]
    assert comp.loc["greedy (offline)", "live interactions"] == 0
    assert set(comp.loc[["logger", "myopic"], "approach"]) == {"reference"}
    # the table's clicks per session is the truth the pipeline reports (same sessions)
    for name, row in comp.iterrows():
        assert row["clicks_per_session"] == m["truth"][name]["value"], name
        assert row["ctr_se"] > 0 and 1 <= row["session_length"] <= 4
    curve = m["online_learners"]["linucb (online)"]
    assert curve["interactions"] == [2000, 4000] and curve["metric"] == "clicks per session"
    # the online policy was scored off-policy too, like every other target
    assert "linucb (online)" in set(res.table["policy"])
    assert (tmp_path / "out" / "plots" / "online_vs_offline.png").is_file()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Online vs offline: what each approach costs and earns" in report
    assert re.search(
        r"\*\*linucb \(online\)\*\*: costs 4,000 live interactions with users; "
        r"earns \d\.\d{3} ± \d\.\d{3} clicks per session",
        report,
    )
    # a second run reuses the online learner and reproduces its numbers
    again = run_pipeline(path, tmp_path / "out")
    assert again.cache_hits["linucb (online)"] is True
    assert again.metrics["online_vs_offline"] == m["online_vs_offline"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'name = "o"\nlearner = "sac"\nn_steps = 10\n',
            r"\[\[online_learners\]\] 'o': learner must be one of \[.*'ppo', 'dqn'\]; got 'sac'",
        ),
        (
            'name = "o"\nlearner = "ppo"\n',
            r"\[\[online_learners\]\] is missing required key\(s\) \['n_steps'\]",
        ),
        ('name = "o"\nlearner = "ppo"\nn_steps = 0\n', r"'o' n_steps must be >= 1; got 0"),
        (
            'name = "o"\nlearner = "ppo"\nn_steps = 9\nsteps = 3\n',
            r"unknown key\(s\) \['steps'\] in \[\[online_learners\]\]; valid keys: name, learner, n_steps",
        ),
        (
            'name = "logger"\nlearner = "linucb"\nn_steps = 9\n',
            r"policy names must be unique .*; repeated: \['logger'\]",
        ),
    ],
)
def test_bad_online_learner_entries_are_one_line_errors(tmp_path, capsys, table, message):
    text = (
        '[logging]\nn_decisions = 10\n[[references]]\nname = "logger"\npolicy = "logger"\n'
        f"[[online_learners]]\n{table}"
    )
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_online_vs_offline_pipeline_parses():
    cfg = PipelineConfig.from_file("pipelines/online_vs_offline.toml")
    assert cfg.world.horizon > 1 and cfg.world.boredom > 0
    assert {o.learner for o in cfg.online_learners} == {"linucb", "ppo", "dqn"}
    assert {p.learner for p in cfg.policies} == {"dqn", "cql"}
    assert {r.policy for r in cfg.references} >= {"logger", "myopic", "lookahead"}
    assert json.loads(cfg.to_json())["online_learners"][1]["learner"] == "ppo"


@pytest.mark.slow
def test_online_vs_offline_pipeline_smoke_on_a_tiny_budget(tmp_path):
    """The shipped file with every budget cut down: SB3 PPO/DQN and d3rlpy all run."""
    pytest.importorskip("stable_baselines3")
    from dataclasses import replace

    cfg = PipelineConfig.from_file("pipelines/online_vs_offline.toml")
    cfg = replace(
        cfg,
        logging=replace(cfg.logging, n_decisions=3_000),
        policies=tuple(replace(p, params={"n_steps": 200}) for p in cfg.policies),
        online_learners=tuple(
            replace(
                o,
                n_steps=2_048,
                eval_every=1_024,
                eval_sessions=200,
                params={**o.params, **({"n_envs": 2} if o.learner == "ppo" else {})},
            )
            for o in cfg.online_learners
        ),
        online=replace(cfg.online, n_sessions=500),
    )
    res = run_pipeline(cfg, tmp_path / "out")
    comp = pd.DataFrame(res.metrics["online_vs_offline"])
    assert len(comp) == len(cfg.policies) + len(cfg.online_learners) + len(cfg.references)
    assert (tmp_path / "out" / "plots" / "online_vs_offline.png").is_file()
