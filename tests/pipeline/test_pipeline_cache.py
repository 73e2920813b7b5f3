"""The pipeline cache heals; a pipeline file is validated completely before any stage."""

from __future__ import annotations

import shutil

import pytest

from offrec.cli import main
from offrec.pipeline import run_pipeline
from offrec.pipeline_config import PipelineConfig

TINY = """
name = "tiny"
seed = 3
[world]
n_users = 300
n_items = 10
[logging]
policy = "softmax"
n_decisions = 1500
[[policies]]
name = "ucb"
learner = "ucb1"
[[references]]
name = "uniform"
policy = "uniform"
[ope]
estimators = ["ips", "snips"]
interval = "normal"
"""


def _stages(out):
    cache = out / "cache"
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_corrupt_or_swapped_stage_is_reported_and_recomputed(tmp_path, caplog):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    first = run_pipeline(cfg, out)
    assert first.cache_hits == {"logs": False, "ucb": False}
    again = run_pipeline(cfg, out)
    assert again.cache_hits == {"logs": True, "ucb": True}
    logs = next(p for p in _stages(out) if p.name.startswith("logs-"))
    part = logs / "part-00000.parquet"
    # corrupt: a byte flipped in the middle of the part file
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    part.write_bytes(bytes(raw))
    caplog.clear()
    healed = run_pipeline(cfg, out)
    assert healed.cache_hits["logs"] is False
    assert any("corrupt or swapped" in m and "checksum differs" in m for m in caplog.messages)
    assert healed.table["value"].tolist() == pytest.approx(first.table["value"].tolist())
    # swapped: another (valid) log copied over the cached one, manifest included
    other = tmp_path / "other"
    assert (
        main(
            [
                "-q",
                "simulate",
                "--out",
                str(other),
                "--n-decisions",
                "1500",
                "--n-items",
                "10",
                "--n-users",
                "300",
                "--seed",
                "9",
            ]
        )
        == 0
    )
    shutil.rmtree(logs)
    shutil.copytree(other, logs)
    caplog.clear()
    swapped = run_pipeline(cfg, out)
    assert swapped.cache_hits["logs"] is False
    assert any("made from another configuration" in m for m in caplog.messages)
    assert swapped.table["value"].tolist() == pytest.approx(first.table["value"].tolist())


ONLINE = """
[[online_learners]]
name = "linucb (online)"
learner = "linucb"
n_steps = 1500
batch_size = 500
"""


RL = """
[[policies]]
name = "dqn"
learner = "dqn"
params = { n_steps = 40, hidden_units = [8], batch_size = 16, log_every = 20, eval_sessions = 50 }
"""


def test_fresh_recomputes_everything(tmp_path):
    """Every cached stage (logs, a bandit model, an RL model, an online learner) is served
    from the cache on a re-run and recomputed (a new folder) with ``fresh``."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(TINY + RL + ONLINE)
    every = {"logs", "ucb", "dqn", "linucb (online)"}
    first = run_pipeline(cfg, tmp_path / "run")
    assert first.cache_hits == dict.fromkeys(every, False)
    made = {p.name: p.stat().st_ino for p in _stages(tmp_path / "run")}
    # one folder per stage entry, of every kind the pipeline caches
    assert sorted(n.split("-")[0] for n in made) == ["logs", "model", "model", "online"]
    again = run_pipeline(cfg, tmp_path / "run")
    assert again.cache_hits == dict.fromkeys(every, True)
    assert {p.name: p.stat().st_ino for p in _stages(tmp_path / "run")} == made
    assert again.table["value"].tolist() == pytest.approx(first.table["value"].tolist())
    assert again.metrics["training_curves"] == first.metrics["training_curves"]
    for stage in _stages(tmp_path / "run"):  # a mark that only a recomputation removes
        (stage / "old-mark").write_text("")
    res = run_pipeline(cfg, tmp_path / "run", fresh=True)
    assert res.cache_hits == dict.fromkeys(every, False)
    remade = _stages(tmp_path / "run")
    assert [p.name for p in remade] == sorted(made)
    served = [p.name for p in remade if (p / "old-mark").exists()]
    assert not served, f"served despite fresh: {served}"
    assert res.table["value"].tolist() == pytest.approx(first.table["value"].tolist())
    assert main(["-q", "run", str(cfg), "--out", str(tmp_path / "run"), "--fresh"]) == 0


def test_every_bad_name_is_listed_before_any_stage_runs(tmp_path, capsys):
    bad = TINY.replace(
        'learner = "ucb1"', 'learner = "ucb1"\nparams = { alpah = 1 }\nhead = { kind = "greedyy" }'
    )
    bad = bad.replace(
        'estimators = ["ips", "snips"]', 'estimators = ["ips", "snipz"]\nreward_model = "forest"'
    )
    bad = bad.replace('interval = "normal"', 'interval = "wilson"')
    bad += '\n[[references]]\nname = "x"\npolicy = "oracle"\n'
    cfg = tmp_path / "bad.toml"
    cfg.write_text(bad)
    with pytest.raises(ValueError) as info:
        PipelineConfig.from_file(cfg)
    msg = str(info.value)
    for needle in ("alpah", "greedyy", "snipz", "forest", "wilson", "'oracle'"):
        assert needle in msg, needle
    assert msg.startswith("6 problems in the pipeline")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "6 problems" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bandit_estimator_in_session_mode_is_an_error(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY.replace("n_items = 10", "n_items = 10\nhorizon = 3"))
    with pytest.raises(
        ValueError, match=r"estimators \['ips', 'snips'\] do not apply in session mode"
    ):
        PipelineConfig.from_file(cfg)


def test_run_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TINY)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    assert main(["run", str(cfg), "--out", str(mine)]) == 2
    assert "refusing to write into" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
