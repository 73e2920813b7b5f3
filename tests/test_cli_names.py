"""Renamed CLI options: the new name works, the old one still does (with a notice)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offrec.cli import main

SIZE = ["--n-decisions", "300", "--n-items", "6", "--n-users", "50", "--seed", "4"]


def _rows(folder):
    return pd.read_parquet(folder).sort_values(["session_id", "step"]).reset_index(drop=True)


def test_simulate_logger_and_its_deprecated_name_policy_log_the_same(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "new"), "--logger", "uniform", *SIZE]) == 0
    assert "deprecated" not in capsys.readouterr().err
    with pytest.warns(DeprecationWarning, match="simulate --policy is deprecated; use --logger"):
        assert main(["simulate", "--out", str(tmp_path / "old"), "--policy", "uniform", *SIZE]) == 0
    assert main(["-q", "simulate", "--out", str(tmp_path / "soft"), *SIZE]) == 0
    new, old, soft = (_rows(tmp_path / n) for n in ("new", "old", "soft"))
    pd.testing.assert_frame_equal(new, old)
    # the uniform logger's propensity is 1/6 on every row; the default (softmax) is not
    assert new["pscore"].to_numpy() == pytest.approx(1 / 6)
    assert np.abs(soft["pscore"].to_numpy() - 1 / 6).max() > 0.01


def test_simulate_refuses_both_names(tmp_path, capsys):
    out = tmp_path / "both"
    argv = ["simulate", "--out", str(out), "--logger", "uniform", "--policy", "softmax", *SIZE]
    assert main(argv) == 2
    assert "give --logger only (--policy is its deprecated name)" in capsys.readouterr().err
    assert not out.exists()
