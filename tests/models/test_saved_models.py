"""Models saved by an earlier offrec still load, and give the same action distributions.

``fixtures/v1`` holds one model folder of each format, written by offrec at commit
a431da3 (before the ``offrec.models`` package): a LinUCB and a reward-model greedy
learner (``policy.json``), the uniform policy, a DQN Q-policy (``qpolicy.json``), an
SB3 PPO policy (``model.zip``, as the pipeline's online-learner stage saved it) and the
``world.json`` beside them. ``expected.json`` has each model's ``action_dist`` on four
observations, computed by that version right after saving.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from offrec.core.errors import InputError, MissingInputError
from offrec.models import FORMATS, load_model, model_format, read_world, save_model, write_world

V1 = Path(__file__).parent / "fixtures" / "v1"
EXPECTED = json.loads((V1 / "expected.json").read_text())["models"]
FORMAT_OF = {
    "linucb": "offrec.policy",
    "reward_model": "offrec.policy",
    "uniform": "offrec.policy",
    "dqn": "offrec.qpolicy",
    "ppo": "sb3",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_models_saved_by_the_previous_version_load_and_act_the_same(name):
    if name == "ppo":
        pytest.importorskip("stable_baselines3")
    folder = V1 / name
    assert model_format(folder).name == FORMAT_OF[name]
    policy = load_model(folder)
    obs = np.asarray(EXPECTED[name]["obs"], np.float32)
    np.testing.assert_allclose(
        policy.action_dist(obs), np.asarray(EXPECTED[name]["action_dist"]), rtol=0, atol=1e-6
    )


def test_a_model_saved_under_an_underscore_type_name_loads_with_a_warning():
    """v1 wrote ``"type": "reward_model"``; the learner is now ``reward-model``."""
    raw = json.loads((V1 / "reward_model" / "policy.json").read_text())
    assert raw["spec"]["type"] == "reward_model"
    with pytest.warns(
        DeprecationWarning, match="'reward_model' is a deprecated alias of 'reward-model'"
    ):
        policy = load_model(V1 / "reward_model")
    assert policy.kind == "reward-model"


def test_every_format_has_a_saved_fixture():
    assert set(FORMAT_OF.values()) == set(FORMATS)


@pytest.mark.parametrize("name", ["linucb", "dqn", "ppo"])
def test_world_files_of_the_previous_version_load(name):
    world = read_world(V1 / name)
    raw = json.loads((V1 / name / "world.json").read_text())
    assert "format" not in raw  # written before world.json had a header
    assert world.seed == raw["seed"]
    assert world.config.to_dict() == raw["config"]


@pytest.mark.parametrize("name", ["linucb", "dqn"])
def test_saving_again_round_trips(tmp_path, name):
    """A loaded old model saved with today's code loads to the same distributions, its
    world (now with a versioned header) too."""
    old = load_model(V1 / name)
    world = read_world(V1 / name)
    folder = save_model(old, tmp_path / name, world=world)
    assert json.loads((folder / "world.json").read_text())["format"] == "offrec.world"
    assert read_world(folder).config == world.config
    obs = np.asarray(EXPECTED[name]["obs"], np.float32)
    np.testing.assert_array_equal(load_model(folder).action_dist(obs), old.action_dist(obs))


def test_sizes_are_checked_and_a_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(
        InputError, match=r"saved for n_actions=6 items; cannot load it for n_actions=7"
    ):
        load_model(V1 / "linucb", n_actions=7)
    with pytest.raises(InputError, match=r"trained for n_actions=5 items"):
        load_model(V1 / "dqn", n_actions=6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        MissingInputError, match=r"expected policy.json or qpolicy.json or model.zip"
    ):
        load_model(tmp_path / "empty")
    with pytest.raises(MissingInputError, match=r"no model at"):
        load_model(tmp_path / "nowhere")


def test_a_tampered_world_header_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(V1 / "linucb", folder)
    write_world(folder, read_world(folder))
    raw = json.loads((folder / "world.json").read_text())
    (folder / "world.json").write_text(json.dumps({**raw, "format_version": 9}))
    with pytest.raises(InputError, match=r"has format_version 9; this offrec reads version 1"):
        read_world(folder)
    (folder / "world.json").write_text(json.dumps({**raw, "format": "offrec.policy"}))
    with pytest.raises(InputError, match=r"format must be 'offrec.world'; got 'offrec.policy'"):
        read_world(folder)
