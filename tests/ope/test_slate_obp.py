"""Slate estimators equal OBP 0.5.7's (``obp.ope.estimators_slate``) on the same arrays to 1e-12.

OBP lives in its own virtual environment (``../shared/reference/setup_obp.sh``, default
``/tmp/venv-obp``; override with ``OBP_PYTHON``); it is driven through a subprocess that
reads and writes ``.npz`` files. The test skips, saying why, when that venv is absent (CI).
Arrays come from OBP's ``SyntheticSlateBanditDataset`` and from offrec's own slate logs.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from offrec.core.policy import Head, ScorePolicy, UniformPolicy
from offrec.ope.slate import SLATE_ESTIMATORS, make_slate_estimator
from offrec.sim.config import WorldConfig
from offrec.sim.slate import ClickModel, PlackettLuce, SlateWorld, slate_propensities
from offrec.sim.world import World

OBP_PYTHON = Path(os.environ.get("OBP_PYTHON", "/tmp/venv-obp/bin/python"))


def _obp_available() -> bool:
    if not OBP_PYTHON.exists():
        return False
    try:
        find = "import importlib.util, sys; sys.exit(importlib.util.find_spec('obp') is None)"
        done = subprocess.run([str(OBP_PYTHON), "-c", find], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


pytestmark = [
    pytest.mark.skipif(
        not _obp_available(),
        reason=f"OBP 0.5.7 venv not found at {OBP_PYTHON} (build it with ../shared/reference/setup_obp.sh)",
    ),
    pytest.mark.slow,  # importing OBP (and its torch) takes ~10-50 s per subprocess
]

OBP_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from obp.ope import (
        SlateStandardIPS, SlateIndependentIPS, SlateRewardInteractionIPS,
        SelfNormalizedSlateStandardIPS, SelfNormalizedSlateIndependentIPS,
        SelfNormalizedSlateRewardInteractionIPS, SlateCascadeDoublyRobust,
    )
    mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "synthetic":
        from obp.dataset import SyntheticSlateBanditDataset, linear_behavior_policy_logit
        from obp.dataset import logistic_reward_function
        n_actions, K = 8, 3
        ds = SyntheticSlateBanditDataset(
            n_unique_action=n_actions, len_list=K, dim_context=2, reward_type="binary",
            reward_structure="cascade_additive", click_model="cascade", random_state=12345,
            behavior_policy_function=linear_behavior_policy_logit,
            base_reward_function=logistic_reward_function,
        )
        fb = ds.obtain_batch_bandit_feedback(n_rounds=400, return_pscore_item_position=True)
        logit = np.random.default_rng(1).normal(size=(400, n_actions))
        e_p, e_item, e_casc = ds.obtain_pscore_given_evaluation_policy_logit(
            action=fb["action"], evaluation_policy_logit_=logit, return_pscore_item_position=True)
        dist = ds.calc_evaluation_policy_action_dist(action=fb["action"], evaluation_policy_logit_=logit)
        q_hat = np.random.default_rng(2).uniform(size=dist.shape)
        a = dict(slate_id=fb["slate_id"], position=fb["position"], action=fb["action"],
                 reward=fb["reward"].astype(float), pscore=fb["pscore"],
                 pscore_item_position=fb["pscore_item_position"], pscore_cascade=fb["pscore_cascade"],
                 evaluation_policy_pscore=e_p, evaluation_policy_pscore_item_position=e_item,
                 evaluation_policy_pscore_cascade=e_casc, q_hat=q_hat,
                 evaluation_policy_action_dist=dist, n_actions=np.array(n_actions), len_list=np.array(K))
    else:
        a = dict(np.load(path))
    K, n_actions = int(a["len_list"]), int(a["n_actions"])
    base = dict(slate_id=a["slate_id"], reward=a["reward"], position=a["position"])
    res = {}
    for name, cls, kw in [
        ("sips", SlateStandardIPS, dict(pscore=a["pscore"], evaluation_policy_pscore=a["evaluation_policy_pscore"])),
        ("snsips", SelfNormalizedSlateStandardIPS, dict(pscore=a["pscore"], evaluation_policy_pscore=a["evaluation_policy_pscore"])),
        ("iips", SlateIndependentIPS, dict(pscore_item_position=a["pscore_item_position"], evaluation_policy_pscore_item_position=a["evaluation_policy_pscore_item_position"])),
        ("sniips", SelfNormalizedSlateIndependentIPS, dict(pscore_item_position=a["pscore_item_position"], evaluation_policy_pscore_item_position=a["evaluation_policy_pscore_item_position"])),
        ("rips", SlateRewardInteractionIPS, dict(pscore_cascade=a["pscore_cascade"], evaluation_policy_pscore_cascade=a["evaluation_policy_pscore_cascade"])),
        ("snrips", SelfNormalizedSlateRewardInteractionIPS, dict(pscore_cascade=a["pscore_cascade"], evaluation_policy_pscore_cascade=a["evaluation_policy_pscore_cascade"])),
    ]:
        res[name] = cls(len_list=K).estimate_policy_value(**base, **kw)
    res["cascade-dr"] = SlateCascadeDoublyRobust(len_list=K, n_unique_action=n_actions).estimate_policy_value(
        **base, action=a["action"], pscore_cascade=a["pscore_cascade"],
        evaluation_policy_pscore_cascade=a["evaluation_policy_pscore_cascade"],
        q_hat=a["q_hat"], evaluation_policy_action_dist=a["evaluation_policy_action_dist"])
    np.savez(out, **a, **{"obp_" + k: np.array(v) for k, v in res.items()})
    """
)

ARRAY_KEYS = (
    "slate_id",
    "position",
    "action",
    "reward",
    "pscore",
    "pscore_item_position",
    "pscore_cascade",
    "evaluation_policy_pscore",
    "evaluation_policy_pscore_item_position",
    "evaluation_policy_pscore_cascade",
    "q_hat",
    "evaluation_policy_action_dist",
)


def _run_obp(tmp_path: Path, mode: str, arrays: dict[str, np.ndarray] | None = None) -> dict:
    script = tmp_path / "obp_slate.py"
    script.write_text(OBP_SCRIPT)
    src, out = tmp_path / "in.npz", tmp_path / "out.npz"
    if arrays is not None:
        np.savez(src, **arrays)
    done = subprocess.run(
        [str(OBP_PYTHON), str(script), mode, str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


OBP_NAMES = [n for n, cls in SLATE_ESTIMATORS.items() if cls.in_obp]
"""The slate estimators OBP 0.5.7 ships (it has no pseudo-inverse estimator)."""


def _check_equal(res: dict) -> None:
    arrays = {k: res[k] for k in ARRAY_KEYS}
    for name in OBP_NAMES:
        ours = make_slate_estimator(name).estimate_policy_value(**arrays)
        theirs = float(res["obp_" + name])
        assert abs(ours - theirs) <= 1e-12 * max(1.0, abs(theirs)), (name, ours, theirs)


def test_equal_to_obp_on_obp_synthetic_slates(tmp_path: Path) -> None:
    res = _run_obp(tmp_path, "synthetic")
    _check_equal(res)
    # the weights are not trivial: the estimators disagree with one another
    values = {
        n: make_slate_estimator(n).estimate_policy_value(**{k: res[k] for k in ARRAY_KEYS})
        for n in OBP_NAMES
    }
    assert len({round(v, 9) for v in values.values()}) == len(values)


def test_equal_to_obp_on_offrec_slate_logs(tmp_path: Path) -> None:
    world = World(WorldConfig(n_items=7, n_users=60), seed=3)
    sw = SlateWorld(world, 3, ClickModel("cascade", stop=0.1))
    base = ScorePolicy(lambda o: 4.0 * o[:, :7], 7, Head("softmax"))
    logger = PlackettLuce(UniformPolicy(7), 3)
    target = PlackettLuce(base, 3, temperature=0.5)
    rounds = sw.log(logger, 300, seed=5)
    rows = rounds.rows()
    props = slate_propensities(target, rounds.obs, rounds.slates)
    n_rows = rows["action"].shape[0]
    dist = target.next_item_dist(rounds.obs, rounds.slates).reshape(n_rows, 7)
    q_hat = np.random.default_rng(0).uniform(size=(n_rows, 7))
    arrays = {
        **{
            k: rows[k]
            for k in (
                "slate_id",
                "position",
                "action",
                "reward",
                "pscore",
                "pscore_item_position",
                "pscore_cascade",
            )
        },
        "evaluation_policy_pscore": props.joint.ravel(),
        "evaluation_policy_pscore_item_position": props.item_position.ravel(),
        "evaluation_policy_pscore_cascade": props.cascade.ravel(),
        "q_hat": q_hat.ravel(),
        "evaluation_policy_action_dist": dist.ravel(),
        "n_actions": np.array(7),
        "len_list": np.array(3),
    }
    _check_equal(_run_obp(tmp_path, "arrays", arrays))
