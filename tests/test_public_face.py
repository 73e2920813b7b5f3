"""``import offrec``: the few entry points a library user needs, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import offrec

HEAVY = ("torch", "d3rlpy", "gymnasium", "sklearn", "pandas", "scipy", "ray")


def test_import_offrec_loads_no_heavy_dependency():
    code = f"import sys, offrec; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""


@pytest.mark.parametrize("name", sorted(set(offrec.__all__) - {"__version__"}))
def test_every_public_name_resolves_to_the_documented_object(name):
    import importlib

    obj = getattr(offrec, name)
    if name == "sim":
        assert obj is importlib.import_module("offrec.sim")
        return
    module, attr = offrec._LAZY[name]
    assert obj is getattr(importlib.import_module(module), attr)


def test_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="module 'offrec' has no attribute 'evaluat'"):
        offrec.evaluat  # noqa: B018


def test_public_round_trip_simulate_write_read_evaluate(tmp_path):
    """The README's Python path, through the face only: a uniform logger's log, read back,
    scored for the logger itself: IPS is then the mean reward (weights all 1)."""
    import numpy as np

    world = offrec.World(offrec.WorldConfig(n_items=5, n_users=50, horizon=1), seed=0)
    from offrec.core.policy import UniformPolicy

    offrec.collect(world, UniformPolicy(5), out=tmp_path / "log", n_decisions=500, seed=1)
    data = offrec.read_logs(tmp_path / "log")
    offrec.write_log(data, tmp_path / "copy")
    back = offrec.read_logs(tmp_path / "copy")
    np.testing.assert_array_equal(back.reward, data.reward)
    res = offrec.evaluate(back, {"logger": np.full((back.n_rows, 5), 0.2)}, estimators=["ips"])
    assert res.table["value"].iloc[0] == pytest.approx(float(data.reward.mean()), abs=1e-12)
