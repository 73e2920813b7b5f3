"""Registry names: hyphenated everywhere, the old underscore spellings accepted with a
DeprecationWarning wherever a user may type or have saved them (issue 22, item 4)."""

from __future__ import annotations

import re
import warnings

import pytest

from offrec.cli import build_parser
from offrec.core.errors import InputError
from offrec.core.registry import Registry
from offrec.pipeline_config import OnlineLearnerSpec, PolicySpec
from offrec.policies.registry import LEARNERS, make_learner
from offrec.rl.algos import ALGOS, learner_name
from offrec.rl.config import RLConfig

OLD = {  # old spelling -> canonical name, for every registry whose names changed
    "epsilon_greedy": "epsilon-greedy",
    "bernoulli_ts": "bernoulli-ts",
    "reward_model": "reward-model",
    "double_dqn": "double-dqn",
}


def test_learner_and_algorithm_names_have_no_underscores():
    for name in (*LEARNERS.names, *ALGOS.names):
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name


def test_registry_adds_the_underscore_spelling_as_an_alias():
    r = Registry("thing", {"a-b-c": 1, "d": 2}, aliases={"old": "d"})
    assert r.aliases == {"old": "d", "a_b_c": "a-b-c"}
    assert r.names == ("a-b-c", "d") and "a_b_c" not in r and len(r) == 2
    with pytest.warns(DeprecationWarning, match="thing 'a_b_c' is a deprecated alias of 'a-b-c'"):
        assert r["a_b_c"] == 1
    with pytest.raises(InputError, match=r"thing must be one of \['a-b-c', 'd'\]; got 'a_c'"):
        r.resolve("a_c")
    # an explicit alias or a canonical name is never overwritten by the automatic one
    both = Registry("thing", {"a-b": 1, "a_b": 2})
    assert both.aliases == {} and both["a_b"] == 2


@pytest.mark.parametrize(("old", "new"), sorted(OLD.items()))
def test_learner_name_normalises_old_spellings_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is a deprecated alias of '{new}'"):
        assert learner_name(old) == new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert learner_name(new) == new
        assert learner_name("sac") == "sac"  # unknown: left for the caller to reject


@pytest.mark.parametrize(("old", "new"), sorted(OLD.items()))
def test_pipeline_toml_accepts_old_learner_names(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}'"):
        spec = PolicySpec(name="p", learner=old)
    assert spec.learner == new


def test_online_learner_spec_and_rl_config_accept_old_names():
    with pytest.warns(DeprecationWarning, match="'epsilon_greedy'"):
        assert OnlineLearnerSpec(name="o", learner="epsilon_greedy", n_steps=10).learner == (
            "epsilon-greedy"
        )
    with pytest.warns(DeprecationWarning, match="'double_dqn'"):
        cfg = RLConfig(algo="double_dqn")
    assert cfg.algo == "double-dqn" and type(cfg.algo_config).__name__ == "DoubleDQNConfig"
    with pytest.warns(DeprecationWarning, match="'bernoulli_ts'"):
        assert make_learner("bernoulli_ts", 3, 2).kind == "bernoulli-ts"


@pytest.mark.parametrize(
    ("argv", "dest", "new"),
    [
        (
            ["train", "bandit", "L", "--out", "M", "--learner", "reward_model"],
            "learner",
            "reward-model",
        ),
        (
            ["train", "bandit", "L", "--out", "M", "--learner", "thompson"],
            "learner",
            "bernoulli-ts",
        ),
        (["train", "rl", "L", "--out", "M", "--algo", "double_dqn"], "algo", "double-dqn"),
    ],
)
def test_cli_accepts_old_names_and_stores_the_canonical_one(argv, dest, new):
    with pytest.warns(DeprecationWarning, match="deprecated alias"):
        args = build_parser().parse_args(argv)
    assert getattr(args, dest) == new


def test_cli_still_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "rl", "L", "--out", "M", "--algo", "double_sac"])
    assert exc.value.code == 2 and "double_sac" in capsys.readouterr().err
