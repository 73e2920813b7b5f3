"""The closed loop: config validation, and a tiny run over real HTTP whose report agrees
with the simulator and with its own decision rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offrec.serve.loop import LoopConfig, holdout_rows, run_loop

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipeline_file_is_the_defaults_and_bad_keys_are_named(tmp_path: Path) -> None:
    assert LoopConfig.from_toml(ROOT / "pipelines" / "closed_loop.toml") == LoopConfig()
    bad = tmp_path / "bad.toml"
    bad.write_text("[loop]\nroundz = 3\n")
    with pytest.raises(ValueError, match=r"unknown key 'roundz'; valid keys: \['seed', 'rounds'"):
        LoopConfig.from_toml(bad)
    with pytest.raises(ValueError, match="holdout must be"):
        LoopConfig(holdout=1.0)
    with pytest.raises(ValueError, match="learner must be one of"):
        LoopConfig(learner="dqn")


def test_a_tiny_loop_runs_over_http_and_follows_its_rule(tmp_path: Path) -> None:
    cfg = LoopConfig(seed=3, rounds=2, users_per_round=400, n_items=8, n_users=300, concurrency=8)
    rounds = run_loop(cfg, tmp_path)
    saved = json.loads((tmp_path / "loop.json").read_text())
    assert [r["round"] for r in saved["rounds"]] == [1, 2]
    for i, r in enumerate(rounds):
        assert r.n_logged == cfg.users_per_round * (i + 1)  # every answered decision logged
        assert r.deployed == (r.low > 0) and r.low <= r.estimate <= r.high
        assert r.worse_deployed == (r.deployed and r.candidate_true_ctr < r.true_ctr)
    # the uniform logger's true CTR is the mean click probability; users' CTR is its sample
    first = rounds[0]
    se = (first.true_ctr * (1 - first.true_ctr) / cfg.users_per_round) ** 0.5
    assert abs(first.observed_ctr - first.true_ctr) < 4 * se
    assert first.serving.startswith("round-0-uniform@")
    assert "| round | serving | true CTR" in (tmp_path / "report.md").read_text()


def test_the_holdout_is_a_fixed_function_of_the_decision_id() -> None:
    ids = (1_883_000_000_000_000_000 + np.arange(20_000) * 7919).astype(np.int64)
    first = holdout_rows(ids[:5000], seed=3, share=0.3)
    later = holdout_rows(ids, seed=3, share=0.3)
    # a decision held out in one round is held out in every later round (and vice versa)
    assert np.array_equal(later[:5000], first)
    # about the share (4 sigma), and another seed gives another split
    assert abs(later.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / ids.size)
    assert not np.array_equal(holdout_rows(ids, seed=4, share=0.3), later)


def test_an_old_learner_spelling_is_read_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="epsilon-greedy"):
        cfg = LoopConfig(learner="epsilon_greedy")
    assert cfg.learner == "epsilon-greedy"
