import math

import pytest

from offrec.sim import WorldConfig


def test_json_round_trip_preserves_every_field():
    cfg = WorldConfig(n_items=30, horizon=5, topic_names=("a", "b", "c"), n_topics=3, boredom=0.7)
    assert WorldConfig.from_json(cfg.to_json()) == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(
        ValueError, match=r"unknown world config key\(s\) \['n_itemz'\]; valid keys: n_items"
    ):
        WorldConfig.from_dict({"n_itemz": 3})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"n_items": -5}, ValueError, "WorldConfig.n_items must be >= 2; got -5"),
        ({"horizon": 0}, ValueError, "WorldConfig.horizon must be >= 1; got 0"),
        ({"n_users": 2.5}, TypeError, "WorldConfig.n_users must be an int; got 2.5"),
        (
            {"fatigue_decay": 1.5},
            ValueError,
            r"WorldConfig.fatigue_decay must be in \[0, 1\]; got 1.5",
        ),
        ({"boredom": math.nan}, ValueError, "WorldConfig.boredom must be finite; got nan"),
        ({"obs_noise": -0.1}, ValueError, "WorldConfig.obs_noise must be >= 0; got -0.1"),
        (
            {"profile_concentration": 0.0},
            ValueError,
            "WorldConfig.profile_concentration must be > 0; got 0.0",
        ),
        ({"n_topics": 20}, ValueError, "WorldConfig.topic_names must be given when n_topics > 16"),
        ({"topic_names": ("x",)}, ValueError, "topic_names must have n_topics=8 names; got 1"),
        ({"theta1": "big"}, TypeError, "WorldConfig.theta1 must be a number; got 'big'"),
    ],
)
def test_bad_config_names_field_rule_value(changes, error, message):
    with pytest.raises(error, match=message):
        WorldConfig(**changes)


def test_file_round_trip_toml_and_json(tmp_path):
    (tmp_path / "w.toml").write_text("[world]\nn_items = 12\nhorizon = 4\n")
    assert WorldConfig.from_file(tmp_path / "w.toml") == WorldConfig(n_items=12, horizon=4)
    (tmp_path / "w.json").write_text(WorldConfig(n_users=77).to_json())
    assert WorldConfig.from_file(tmp_path / "w.json").n_users == 77
    with pytest.raises(FileNotFoundError, match="world config file not found"):
        WorldConfig.from_file(tmp_path / "missing.json")
