import numpy as np
import pandas as pd
import pytest

from offrec.logs import read_logs
from offrec.logs.importers import (
    ColumnMap,
    ImportError_,
    import_frame,
    import_logs,
    import_obd,
    to_obp_bandit_feedback,
)


def _obd_fixture(tmp_path):
    """A small OBD-format campaign: 6 rows, 3 items, positions 1..3, 2 categorical user features."""
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2019-11-24", periods=6, freq="min").astype(str),
            "item_id": [0, 2, 1, 2, 0, 1],
            "position": [1, 2, 3, 1, 2, 3],
            "click": [1, 0, 0, 1, 0, 1],
            "propensity_score": [0.5, 0.25, 0.25, 0.5, 0.5, 0.25],
            "user_feature_0": ["a", "b", "a", "c", "b", "a"],
            "user_feature_1": ["x", "x", "y", "y", "x", "y"],
            "user-item_affinity_0": [0.0, 1.0, 0.0, 0.0, 2.0, 0.0],
            "user-item_affinity_1": [0.5, 0.0, 0.0, 1.5, 0.0, 0.0],
            "user-item_affinity_2": [0.0, 0.0, 3.0, 0.0, 0.0, 1.0],
        }
    )
    df.index.name = None
    df.to_csv(tmp_path / "all.csv", index=False)
    items = pd.DataFrame(
        {"item_id": [0, 1, 2], "item_feature_0": ["p", "q", "p"], "item_feature_1": [1.0, 2.0, 3.0]}
    )
    items.to_csv(tmp_path / "item_context.csv", index=False)
    return df


def test_obd_round_trip_keeps_positions_actions_propensities(tmp_path):
    df = _obd_fixture(tmp_path)
    res = import_obd(
        tmp_path / "all.csv", tmp_path / "obd", item_context_csv=tmp_path / "item_context.csv"
    )
    data = read_logs(tmp_path / "obd")
    assert data.n_rows == 6 and data.n_actions == 3 and data.n_positions == 3
    np.testing.assert_array_equal(data.action, df["item_id"])
    np.testing.assert_array_equal(data.position, df["position"] - 1)
    np.testing.assert_allclose(data.pscore, df["propensity_score"])
    np.testing.assert_array_equal(data.reward, df["click"])
    # context: one-hot user_feature_0 (a,b,c), one-hot user_feature_1 (x,y), then 3 affinities
    assert res.data.metadata["context_columns"][:5] == [
        "user_feature_0=a",
        "user_feature_0=b",
        "user_feature_0=c",
        "user_feature_1=x",
        "user_feature_1=y",
    ]
    np.testing.assert_array_equal(data.context[1], [0, 1, 0, 1, 0, 1.0, 0.0, 0.0])
    fb = to_obp_bandit_feedback(data)
    assert fb["n_rounds"] == 6 and fb["action_context"].shape[0] == 3
    assert set(fb) == {
        "n_rounds",
        "n_actions",
        "action",
        "position",
        "reward",
        "pscore",
        "context",
        "action_context",
    }


def test_generic_import_maps_string_ids_and_keeps_the_map(tmp_path):
    df = pd.DataFrame(
        {
            "item": ["shoe", "hat", "shoe", "sock"],
            "clicked": [1, 0, 0, 1],
            "p": [0.2, 0.5, 0.2, 0.3],
            "sess": ["u1", "u1", "u2", "u2"],
            "f_age": [31, 31, 40, 40],
            "f_score": [0.1, 0.2, 0.3, 0.4],
        }
    )
    df.to_csv(tmp_path / "mine.csv", index=False)
    cmap = ColumnMap(
        action="item", reward="clicked", pscore="p", session="sess", context_prefix="f_"
    )
    import_logs(tmp_path / "mine.csv", tmp_path / "out", cmap)
    data = read_logs(tmp_path / "out")
    assert data.metadata["action_map"] == ["hat", "shoe", "sock"]
    np.testing.assert_array_equal(data.action, [1, 0, 1, 2])
    np.testing.assert_array_equal(data.session_id, [0, 0, 1, 1])
    np.testing.assert_array_equal(data.step, [0, 1, 0, 1])
    np.testing.assert_array_equal(data.truncated, [False, True, False, True])
    np.testing.assert_allclose(data.context[:, 0], [31, 31, 40, 40])


BASE = {
    "a": [10, 20, 30, 20],
    "r": [1, 0, 1, 0],
    "p": [0.5, 0.5, 0.5, 0.5],
    "s": [0, 0, 1, 1],
    "t": [0, 1, 0, 1],
    "x": [0.1, 0.2, 0.3, 0.4],
}
CMAP = ColumnMap(action="a", reward="r", pscore="p", session="s", step="t", context=("x",))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"p": [0.5, None, 0.5, None]},
            r"column 'p': missing propensity \(empty or NaN\) in 2 row\(s\); first rows 1, 3",
        ),
        (
            {"p": [0.5, 0.0, 0.5, 1.5]},
            r"column 'p': propensity must be in \(0, 1\] in 2 row\(s\); first rows 1, 3",
        ),
        (
            {"r": [1, None, 1, 0]},
            r"column 'r': reward must be present and finite in 1 row\(s\); first rows 1",
        ),
        (
            {"t": [0, 2, 0, 1]},
            r"column 't': steps within a session must run 0, 1, 2, ... without gaps or repeats in 2 row\(s\); first rows 0, 1",
        ),
        (
            {"x": [0.1, None, 0.3, 0.4]},
            r"column 'context': context values must be present and finite in 1 row\(s\); first rows 1",
        ),
        (
            {
                "a": [10, 20, 10, 20],
                "r": [1, 0, 1, 0],
                "s": [0, 0, 0, 0],
                "t": [0, 1, 0, 1],
                "x": [0.1, 0.2, 0.1, 0.2],
            },
            r"column '\*': duplicated row \(identical in every column\) in 2 row\(s\); first rows 2, 3",
        ),
    ],
)
def test_import_problems_name_column_rule_count_rows_and_write_nothing(tmp_path, change, message):
    df = pd.DataFrame({**BASE, **change})
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ImportError_, match=message):
        import_logs(tmp_path / "bad.csv", tmp_path / "out", CMAP)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_mixed_type_context_and_claimed_policy_mismatch():
    df = pd.DataFrame({**BASE, "x": [0.1, "oops", 0.3, 0.4]})
    with pytest.raises(
        ValueError,
        match=r"context column 'x' has mixed types: numbers \(e.g. row 0: 0.1\) and text \(e.g. row 1: 'oops'\)",
    ):
        import_frame(df, CMAP)
    df = pd.DataFrame({**BASE, "p": [1 / 3, 1 / 3, 0.5, 1 / 3]})
    with pytest.raises(
        ImportError_,
        match=r"propensity differs from the claimed uniform logger's 1/3 in 1 row\(s\); first rows 2",
    ):
        import_frame(df, CMAP, claimed_policy="uniform")


def test_repair_drop_removes_problem_rows_and_warns(caplog):
    df = pd.DataFrame({**BASE, "p": [0.5, None, 0.5, 0.25], "r": [1, 0, 0, 1]})
    res = import_frame(df, CMAP, repair="drop")
    assert res.data.n_rows == 3 and len(res.problems) == 1
    assert "missing propensity" in caplog.text and "repaired: drop the rows" in caplog.text
    # exactly row 1 went (x = 0.2), and the kept rows keep their own values, in order
    np.testing.assert_allclose(res.data.context[:, 0], [0.1, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(res.data.pscore, [0.5, 0.5, 0.25])
    np.testing.assert_array_equal(res.data.reward, [1, 0, 1])
    np.testing.assert_array_equal(res.data.session_id, [0, 1, 1])
    np.testing.assert_array_equal(res.data.step, [0, 0, 1])
    assert res.problems[0].rows.tolist() == [1] and res.problems[0].column == "p"


def test_estimators_on_imported_obd_with_positions_match_hand_computation(tmp_path):
    """IPS / SNIPS / DR on the imported 6-row fixture, target given per position."""
    from offrec.ope import estimate_policy_value

    _obd_fixture(tmp_path)
    import_obd(tmp_path / "all.csv", tmp_path / "obd")
    data = read_logs(tmp_path / "obd")
    # target: at position 0 always item 0; at positions 1 and 2 uniform over the 3 items
    dist = np.zeros((6, 3, 3))
    dist[:, 0, 0] = 1.0
    dist[:, :, 1:] = 1 / 3
    q = np.full((6, 3, 3), 0.5)
    # rows: (item, slot, click, p): (0,0,1,.5) (2,1,0,.25) (1,2,0,.25) (2,0,1,.5) (0,1,0,.5) (1,2,1,.25)
    # weights: 1/.5=2, (1/3)/.25=4/3, 4/3, 0/.5=0, (1/3)/.5=2/3, 4/3
    w = np.array([2, 4 / 3, 4 / 3, 0, 2 / 3, 4 / 3])
    r = np.array([1, 0, 0, 1, 0, 1.0])
    args = dict(
        reward=data.reward,
        action=data.action,
        pscore=data.pscore,
        action_dist=dist,
        position=data.position,
    )
    assert estimate_policy_value("ips", **args) == pytest.approx((2 + 4 / 3) / 6)
    assert estimate_policy_value("snips", **args) == pytest.approx((2 + 4 / 3) / w.sum())
    # DR with q = 0.5 everywhere: DM part 0.5, correction mean(w (r - 0.5))
    dr = 0.5 + np.mean(w * (r - 0.5))
    assert estimate_policy_value("dr", **args, estimated_rewards=q) == pytest.approx(dr)
