"""Save / load of every learner: identical behaviour after loading, clear errors otherwise."""

import copy
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from offrec.policies import Head, ScorePolicy, UniformPolicy
from offrec.policies.bandits import (
    UCB1,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    LogisticEpsilonGreedy,
)
from offrec.policies.offline import IPWLearner, RewardModelGreedy
from offrec.policies.persist import load_policy, save_policy, saveable_types
from offrec.testing import check_policy

from .test_offline import small_gbm, small_log

K, D = 4, 3


def fitted_learners():
    x, a, r, p = small_log(n=2000, k=K, d=D)
    bandits = {
        "epsilon_greedy": EpsilonGreedy(K, 0.2, initial_value=0.1),
        "ucb1": UCB1(K, c=1.5, head=Head("softmax", temperature=0.3)),
        "bernoulli_ts": BernoulliTS(K, alpha=2.0, n_draws=300, seed=4),
        "lin_ucb": LinUCB(K, D, alpha=0.3, reg=2.0),
        "lin_ts": LinTS(K, D, scale=0.2, n_draws=32, seed=9),
        "logistic_epsilon_greedy": LogisticEpsilonGreedy(K, D, 0.05, fit_intercept=False),
    }
    for learner in bandits.values():
        learner.partial_fit(x[:1000], a[:1000], r[:1000])
        learner.partial_fit(x[1000:], a[1000:], r[1000:])
    offline = {
        "reward_model_greedy": RewardModelGreedy(head=Head("epsilon_greedy", epsilon=0.1)).fit(
            x, a, r
        ),
        "reward_model_greedy_logistic": RewardModelGreedy("logistic").fit(x, a, r),
        "reward_model_greedy_gbm": small_gbm()[0],
        "ipw_learner": IPWLearner(head=Head("softmax", temperature=1.0)).fit(x, a, r, p),
        "exploit_lin_ts": bandits["lin_ts"].exploit(Head("softmax", temperature=0.1)),
        "uniform": UniformPolicy(K, support=np.array([0, 2])),
    }
    return {**bandits, **offline}, x


NAMES = [
    "epsilon_greedy",
    "ucb1",
    "bernoulli_ts",
    "lin_ucb",
    "lin_ts",
    "logistic_epsilon_greedy",
    "reward_model_greedy",
    "reward_model_greedy_logistic",
    "reward_model_greedy_gbm",
    "ipw_learner",
    "exploit_lin_ts",
    "uniform",
]


@pytest.fixture(scope="module")
def fitted():
    learners, x = fitted_learners()
    assert sorted(learners) == sorted(NAMES)
    return learners, x


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_policy(name, tmp_path, fitted):
    LEARNERS, X = fitted
    policy = LEARNERS[name]
    folder = save_policy(policy, tmp_path / name)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "arrays.npz",
        "policy.json",
    ]
    loaded = load_policy(folder, n_actions=K, context_dim=D)
    assert type(loaded) is type(policy)
    np.testing.assert_array_equal(loaded.action_dist(X[:200]), policy.action_dist(X[:200]))
    assert loaded.spec() == policy.spec()
    if hasattr(policy, "predict"):
        np.testing.assert_array_equal(loaded.predict(X[:50]), policy.predict(X[:50]))
    check_policy(loaded, X[:64])
    # the config is plain JSON and the arrays load without pickle
    config = json.loads((folder / "policy.json").read_text())
    assert config["format"] == "offrec.policy" and config["sizes"]["n_actions"] == K
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


@pytest.mark.parametrize("name", ["bernoulli_ts", "lin_ts", "logistic_epsilon_greedy", "ucb1"])
def test_loaded_learner_keeps_learning_like_the_original(name, tmp_path, fitted):
    LEARNERS, X = fitted
    x, a, r, _ = small_log(n=500, k=K, d=D, seed=7)
    original = LEARNERS[name]
    loaded = load_policy(save_policy(original, tmp_path / "m"))
    original = copy.deepcopy(original)
    for learner in (original, loaded):
        learner.partial_fit(x, a, r)
    np.testing.assert_array_equal(loaded.action_dist(X[:100]), original.action_dist(X[:100]))


def test_loading_for_other_sizes_is_a_clear_error(tmp_path, fitted):
    LEARNERS, _ = fitted
    folder = save_policy(LEARNERS["lin_ucb"], tmp_path / "linucb")
    with pytest.raises(
        ValueError, match=r"saved for n_actions=4 items; cannot load it for n_actions=100"
    ):
        load_policy(folder, n_actions=100)
    with pytest.raises(
        ValueError, match=r"saved for context_dim=3; cannot load it for context_dim=18"
    ):
        load_policy(folder, context_dim=18)
    # non-contextual models have no context width: any is fine, items must match
    plain = save_policy(LEARNERS["epsilon_greedy"], tmp_path / "eps")
    assert load_policy(plain, n_actions=K, context_dim=18).n_actions == K
    with pytest.raises(
        ValueError, match=r"saved for n_actions=4 items; cannot load it for n_actions=5"
    ):
        load_policy(plain, n_actions=5)
    # and a loaded contextual model refuses observations of another width
    with pytest.raises(
        ValueError, match=r"obs must have 3 columns \(the model's context_dim\); got 18"
    ):
        load_policy(folder).action_dist(np.zeros((2, 18)))


def test_save_refuses_code_and_existing_folders(tmp_path, fitted):
    LEARNERS, _ = fitted
    with pytest.raises(TypeError, match=r"cannot save a ScorePolicy: only these policy types"):
        save_policy(ScorePolicy(lambda obs: obs[:, :K], K), tmp_path / "score")
    assert not (tmp_path / "score").exists()
    folder = save_policy(LEARNERS["lin_ucb"], tmp_path / "m")
    with pytest.raises(FileExistsError):
        save_policy(LEARNERS["ucb1"], folder)
    save_policy(LEARNERS["ucb1"], folder, overwrite=True)
    assert type(load_policy(folder)) is UCB1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    with pytest.raises(ValueError, match=r"RewardModelGreedy is not fitted"):
        save_policy(RewardModelGreedy(), tmp_path / "unfitted")
    assert "linucb" in saveable_types() and "uniform" in saveable_types()
    assert "lin_ucb" not in saveable_types()  # an old name: loads, is never written


def _rewrite(folder, config=None, arrays=None):
    """Replace the saved config / arrays (keeping the checksum consistent for arrays)."""
    cfg = json.loads((folder / "policy.json").read_text())
    if arrays is not None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        (folder / "arrays.npz").write_bytes(buf.getvalue())
        cfg["arrays"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    if config is not None:
        cfg = config(cfg)
    (folder / "policy.json").write_text(json.dumps(cfg))


def test_damaged_or_foreign_folders_are_clear_errors(tmp_path, fitted):
    LEARNERS, _ = fitted
    folder = save_policy(LEARNERS["lin_ucb"], tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"no saved policy in .*: policy.json not found"):
        load_policy(tmp_path / "nothing")
    # arrays changed behind the config's back
    (folder / "arrays.npz").write_bytes((folder / "arrays.npz").read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(ValueError, match=r"arrays.npz does not match the checksum in policy.json"):
        load_policy(folder)
    # arrays of the wrong shape (consistent checksum)
    folder = save_policy(LEARNERS["lin_ucb"], tmp_path / "m2")
    state = LEARNERS["lin_ucb"].get_state()
    _rewrite(folder, arrays={**state, "A": state["A"][:2]})
    with pytest.raises(
        ValueError, match=r"LinUCB state array 'A' must have shape \(4, 4, 4\); got \(2, 4, 4\)"
    ):
        load_policy(folder)
    _rewrite(folder, arrays={k: v for k, v in state.items() if k != "b"})
    with pytest.raises(ValueError, match=r"LinUCB state is missing arrays \['b'\]"):
        load_policy(folder)
    # unknown type and unknown format version
    folder = save_policy(LEARNERS["lin_ucb"], tmp_path / "m3")
    _rewrite(folder, config=lambda c: {**c, "spec": {**c["spec"], "type": "neural"}})
    with pytest.raises(
        ValueError, match=r"unknown policy type 'neural'; known types: bernoulli-ts, "
    ):
        load_policy(folder)
    _rewrite(folder, config=lambda c: {**c, "format_version": 99})
    with pytest.raises(ValueError, match=r"has format_version 99; this offrec reads version 1"):
        load_policy(folder)


@pytest.mark.parametrize(
    ("old", "name"),
    [
        ("lin_ucb", "lin_ucb"),
        ("lin_ts", "lin_ts"),
        ("logistic_epsilon_greedy", "logistic_epsilon_greedy"),
        ("reward_model_greedy", "reward_model_greedy"),
        ("ipw_learner", "ipw_learner"),
        # the underscore spellings used before names took hyphens
        ("epsilon_greedy", "epsilon_greedy"),
        ("bernoulli_ts", "bernoulli_ts"),
        ("reward_model", "reward_model_greedy"),
    ],
)
def test_folders_saved_under_old_type_names_still_load(old, name, tmp_path, fitted):
    """Model folders written before one name per learner carry the old ``type``: they load
    through the registry's deprecated aliases, with a DeprecationWarning."""
    learners, x = fitted
    folder = save_policy(learners[name], tmp_path / "m")
    new = json.loads((folder / "policy.json").read_text())["spec"]["type"]
    assert new != old
    _rewrite(folder, config=lambda c: {**c, "spec": {**c["spec"], "type": old}})
    with pytest.warns(DeprecationWarning, match=f"'{old}' is a deprecated alias of '{new}'"):
        loaded = load_policy(folder)
    np.testing.assert_array_equal(loaded.action_dist(x[:50]), learners[name].action_dist(x[:50]))


# -- the gbm reward model: skops bytes, a fixed trust list --------------------------------------
def _gbm_folder(tmp_path, fitted):
    learners, _ = fitted
    folder = save_policy(learners["reward_model_greedy_gbm"], tmp_path / "gbm")
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert npz.files == ["gbm"] and npz["gbm"].dtype == np.uint8
    return folder


def test_gbm_model_naming_an_untrusted_type_is_refused_without_running_it(tmp_path, fitted):
    import functools
    import os

    import skops.io as sio

    folder = _gbm_folder(tmp_path, fitted)
    marker = tmp_path / "pwned"
    evil = sio.dumps(functools.partial(os.system, f"touch {marker}"))
    _rewrite(folder, arrays={"gbm": np.frombuffer(evil, np.uint8)})
    with pytest.raises(ValueError, match=r"gbm model refused: Untrusted types found.*system"):
        load_policy(folder)
    assert not marker.exists()


def test_gbm_model_damaged_or_foreign_bytes_are_clear_errors(tmp_path, fitted):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    folder = _gbm_folder(tmp_path, fitted)
    _rewrite(folder, arrays={"gbm": np.frombuffer(b"not a zip file", np.uint8)})
    with pytest.raises(ValueError, match=r"gbm model bytes are not a readable skops file"):
        load_policy(folder)
    other = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    _rewrite(folder, arrays={"gbm": np.frombuffer(sio.dumps(other), np.uint8)})
    with pytest.raises(ValueError, match=r"must hold a HistGradientBoostingClassifier; got Logis"):
        load_policy(folder)
    # the pre-skops format (scikit-learn's private tree records) is refused with a way out
    _rewrite(folder, arrays={"nodes": np.zeros(3), "tree_start": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match=r"no longer reads .* fit it again and save it"):
        load_policy(folder)


GBM_FIXTURE = Path(__file__).parent / "data" / "gbm_model"


def test_gbm_model_saved_under_the_locked_scikit_learn_still_loads():
    """A RewardModelGreedy("gbm") folder saved once (offrec's format, skops bytes, under the
    scikit-learn pinned in constraints.txt) and its predictions recorded then: loading it
    under the installed scikit-learn must give the same predictions. Raising the pin in
    constraints.txt (``make lock``) runs this against the new version."""
    expected = json.loads((GBM_FIXTURE.parent / "gbm_model_expected.json").read_text())
    x = np.asarray(expected["x"])
    policy = load_policy(GBM_FIXTURE, n_actions=K, context_dim=D)
    np.testing.assert_allclose(policy.predict(x), np.asarray(expected["predict"]), rtol=1e-12)
