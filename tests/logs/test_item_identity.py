"""Item identity across imports, models and evaluation (issue 27): the source's item ids
survive separate imports, a model keeps the map it was trained with, and nothing is ever
scored against the wrong item."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from offrec.cli import main
from offrec.core.errors import InputError
from offrec.logs import ItemMap, LoggedData, read_logs, write_log
from offrec.logs.importers import ColumnMap, import_frame
from offrec.models import load_model
from offrec.ope import FixedProbs, evaluate

CMAP = ColumnMap(action="item", reward="click", pscore="p", context=("x0", "x1"))
IMPORT = ["--action", "item", "--reward", "click", "--pscore", "p", "--context", "x0,x1"]


def _frame(items: list[str], n: int, seed: int) -> pd.DataFrame:
    """A uniform logger over ``items``; the click rate depends on the item and the
    context, so a contextual model prefers different items for different users."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    item = rng.choice(items, n)
    slope = np.array([{"hat": -1, "shoe": 1, "sock": 0, "tie": -1, "zip": 1}[i] for i in item])
    click = (rng.random(n) < 1 / (1 + np.exp(-(slope * x[:, 0] - 0.3)))).astype(int)
    return pd.DataFrame(
        {
            "ts": np.arange(n),
            "item": item,
            "x0": x[:, 0],
            "x1": x[:, 1],
            "click": click,
            "p": 1 / len(items),
        }
    )


def _run(*argv: str) -> None:
    assert main(list(argv)) == 0


def _estimates(path) -> dict[str, float]:
    out = json.loads(path.read_text())
    return {row["estimator"]: row["value"] for row in out["estimates"]}


@pytest.mark.parametrize(
    ("items_a", "items_b", "estimators"),
    [
        (["shoe", "sock", "tie"], ["hat", "shoe", "zip"], "ips,snips,dr"),  # overlapping
        (["shoe", "sock", "tie"], ["hat", "zip"], "ips,dm"),  # disjoint (snips undefined)
    ],
)
def test_separate_imports_score_like_one_joint_import(tmp_path, items_a, items_b, estimators):
    a, b = _frame(items_a, 600, 1), _frame(items_b, 600, 2)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    pd.concat([a, b]).to_csv(tmp_path / "ab.csv", index=False)
    # separately: the second import extends the first one's map
    _run("import", "csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "A"), *IMPORT)
    _run(
        "import",
        "csv",
        str(tmp_path / "b.csv"),
        "--out",
        str(tmp_path / "B"),
        *IMPORT,
        "--items",
        str(tmp_path / "A"),
        "--extend-items",
    )
    joint_ids = sorted(set(items_a) | set(items_b))
    extended = sorted(items_a) + sorted(set(items_b) - set(items_a))
    assert read_logs(tmp_path / "B").metadata["action_map"] == extended
    assert read_logs(tmp_path / "A").metadata["action_map"] == sorted(items_a)
    # together: one import of both files, split into its two parts (public API)
    _run("import", "csv", str(tmp_path / "ab.csv"), "--out", str(tmp_path / "J"), *IMPORT)
    joint = read_logs(tmp_path / "J")
    assert joint.metadata["action_map"] == joint_ids != extended
    for name, rows in (("AJ", slice(0, 600)), ("BJ", slice(600, 1200))):
        part = joint.subset(np.arange(joint.n_rows)[rows])
        part.session_id = part.session_id - part.session_id.min()  # as its own import numbers them
        write_log(part, tmp_path / name)
    train = ["train", "bandit", "--learner", "ipw"]
    _run(*train, str(tmp_path / "A"), "--out", str(tmp_path / "mA"))
    _run(*train, str(tmp_path / "AJ"), "--out", str(tmp_path / "mJ"))
    assert load_model(tmp_path / "mA").item_map == ItemMap(tuple(sorted(items_a)))
    assert load_model(tmp_path / "mJ").item_map == ItemMap(tuple(joint_ids))
    ev = ["evaluate", "--estimators", estimators, "--interval", "none"]
    runs = {"separate": ("B", "mA"), "joint": ("BJ", "mJ"), "across": ("BJ", "mA")}
    for name, (log, model) in runs.items():
        _run(
            *ev,
            str(tmp_path / log),
            "--policy",
            str(tmp_path / model),
            "--json",
            str(tmp_path / f"{name}.json"),
        )
    sep, jnt, across = (_estimates(tmp_path / f"{n}.json") for n in runs)
    assert sep.keys() == jnt.keys() == across.keys() == set(estimators.split(","))
    for e in sep:  # the weights are identical; the reward model sees permuted item columns
        exact = e in ("ips", "snips")
        tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-6, "atol": 1e-9}
        np.testing.assert_allclose(sep[e], jnt[e], **tol)
        np.testing.assert_allclose(across[e], jnt[e], **tol)
    if len(set(items_a) & set(items_b)):
        assert sep["ips"] > 0  # the model's choices meet the logged items
        # the check can fail: the same model read as if its items were the log's first
        # ones (no translation) scores differently
        model = load_model(tmp_path / "mA")
        bj = read_logs(tmp_path / "BJ")
        wrong = np.zeros((bj.n_rows, bj.n_actions))
        wrong[:, : model.n_actions] = model.action_dist(bj.context)
        naive = evaluate(bj, {"wrong": FixedProbs(wrong)}, estimators=["ips"], interval=None)
        assert float(naive.table["value"].iloc[0]) != pytest.approx(jnt["ips"], abs=1e-3)


def test_an_unknown_item_is_refused_with_its_id(tmp_path, capsys):
    _frame(["shoe", "sock"], 50, 1).to_csv(tmp_path / "a.csv", index=False)
    _frame(["sock", "zip", "hat"], 50, 2).to_csv(tmp_path / "b.csv", index=False)
    _run("import", "csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "A"), *IMPORT)
    capsys.readouterr()
    argv = [
        "import",
        "csv",
        str(tmp_path / "b.csv"),
        "--out",
        str(tmp_path / "B"),
        *IMPORT,
        "--items",
        str(tmp_path / "A"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 item id(s) are not in the item map (2 items): 'hat', 'zip'" in err
    assert "--extend-items" in err and not (tmp_path / "B").exists()
    assert main([*argv[:-2], "--extend-items"]) == 2  # --extend-items needs --items
    assert "applies only with items" in capsys.readouterr().err


def test_a_catalog_file_numbers_the_items_in_its_order(tmp_path):
    pd.DataFrame({"item_id": ["zip", "sock", "shoe"], "price": [3, 1, 2]}).to_csv(
        tmp_path / "catalog.csv", index=False
    )
    _frame(["shoe", "zip"], 40, 3).to_csv(tmp_path / "a.csv", index=False)
    _run(
        "import",
        "csv",
        str(tmp_path / "a.csv"),
        "--out",
        str(tmp_path / "A"),
        *IMPORT,
        "--items",
        str(tmp_path / "catalog.csv"),
    )
    data = read_logs(tmp_path / "A")
    src = pd.read_csv(tmp_path / "a.csv")
    assert data.n_actions == 3 and data.metadata["action_map"] == ["zip", "sock", "shoe"]
    np.testing.assert_array_equal(data.action, src["item"].map({"zip": 0, "sock": 1, "shoe": 2}))
    with pytest.raises(InputError, match=r"1 item id\(s\) are not in the item map .*'tie'"):
        import_frame(_frame(["tie", "zip"], 20, 4), CMAP, items=data.item_map)
    grown = import_frame(
        _frame(["tie", "zip"], 20, 4), CMAP, items=data.item_map, extend_items=True
    )
    assert grown.data.metadata["action_map"] == ["zip", "sock", "shoe", "tie"]
    assert grown.new_items == ["tie"] and "1 new item(s) added to the item map" in grown.line("o")


def test_a_model_whose_items_the_log_lacks_is_refused(tmp_path, capsys):
    _frame(["shoe", "sock", "tie"], 300, 1).to_csv(tmp_path / "a.csv", index=False)
    _frame(["hat", "shoe"], 300, 2).to_csv(tmp_path / "b.csv", index=False)
    for name in ("a", "b"):
        _run(
            "import",
            "csv",
            str(tmp_path / f"{name}.csv"),
            "--out",
            str(tmp_path / name.upper()),
            *IMPORT,
        )
    _run(
        "train", "bandit", str(tmp_path / "A"), "--learner", "linucb", "--out", str(tmp_path / "m")
    )
    capsys.readouterr()
    # A has 3 items and B 2: without maps the sizes would already differ; with 3 items in B
    # (hat, shoe, zip) the model would have been scored against the wrong items
    assert main(["evaluate", str(tmp_path / "B"), "--policy", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "2 item(s) this log's item map does not have: ['sock', 'tie']" in err
    # same size, different items: still refused, never misaligned
    _frame(["hat", "shoe", "zip"], 300, 2).to_csv(tmp_path / "c.csv", index=False)
    _run("import", "csv", str(tmp_path / "c.csv"), "--out", str(tmp_path / "C"), *IMPORT)
    assert main(["evaluate", str(tmp_path / "C"), "--policy", str(tmp_path / "m")]) == 2
    assert "['sock', 'tie']" in capsys.readouterr().err


def test_a_model_from_a_simulated_log_is_refused_on_an_imported_one(tmp_path):
    model = LoggedData.from_arrays(np.zeros((4, 1)), [0, 1, 2, 0], [1, 0, 1, 0], [1 / 3] * 4)
    sim_like = ItemMap.identity(3)
    assert model.item_map == sim_like and sim_like.is_identity
    imported = ItemMap(("a", "b", "c"))
    from offrec.core.policy import UniformPolicy

    policy = UniformPolicy(3)
    policy.item_map = sim_like  # what training on a simulated log stores
    data = LoggedData.from_arrays(
        np.zeros((3, 1)), [0, 1, 2], [1, 0, 0], [1 / 3] * 3, item_ids=["a", "b", "c"]
    )
    assert data.item_map == imported
    with pytest.raises(
        InputError, match=r"3 item\(s\) this log's item map does not have: \[0, 1, 2\]"
    ):
        evaluate(data, {"sim": policy}, estimators=["ips"], interval=None)
    # the identity map over integer ids 0..2 is the same catalog: scored as is
    ints = LoggedData.from_arrays(
        np.zeros((3, 1)), [0, 1, 2], [1, 0, 0], [1 / 3] * 3, item_ids=[0, 1, 2]
    )
    res = evaluate(ints, {"sim": policy}, estimators=["ips"], interval=None)
    assert float(res.table["value"].iloc[0]) == pytest.approx(1 / 3)


def test_translation_places_the_models_mass_on_the_same_source_items():
    from offrec.core.policy import UniformPolicy
    from offrec.logs.items import translate_target

    inner = UniformPolicy(2)
    inner.item_map = ItemMap(("tie", "hat"))
    seen = translate_target(inner, ItemMap(("hat", "shoe", "tie")), "m")
    np.testing.assert_array_equal(seen.action_dist(np.zeros((2, 1))), [[0.5, 0, 0.5]] * 2)
    assert translate_target(inner, ItemMap(("tie", "hat")), "m") is inner  # same map


def test_recommend_answers_in_source_item_ids(tmp_path, capsys):
    _frame(["shoe", "sock", "tie"], 600, 1).to_csv(tmp_path / "a.csv", index=False)
    _run("import", "csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "A"), *IMPORT)
    _run(
        "train", "bandit", str(tmp_path / "A"), "--learner", "linucb", "--out", str(tmp_path / "m")
    )
    capsys.readouterr()
    model = load_model(tmp_path / "m")
    for x0, best in ((2.0, "shoe"), (-2.0, "tie")):  # shoe's clicks rise with x0, tie's fall
        assert np.array(model.item_map.ids)[model.predict(np.array([[x0, 0.0]])).argmax()] == best
        _run("recommend", str(tmp_path / "m"), f"--context={x0},0", "--k", "3")
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[1].split()[:2] == ["1", best]
        assert {ln.split()[1] for ln in lines[1:]} == {"shoe", "sock", "tie"}


def test_item_map_lookup_and_json_round_trip():
    m = ItemMap((3.0, "b", np.int64(7)))  # ids normalized: 3.0 -> 3, numpy ints unwrapped
    assert m.ids == (3, "b", 7)
    np.testing.assert_array_equal(m.lookup([7, "b", 3, "x", None, 3.0]), [2, 1, 0, -1, -1, 0])
    assert ItemMap.from_json(m.to_json()) == m
    assert ItemMap.from_json(ItemMap.identity(4).to_json()) == ItemMap.identity(4)
    np.testing.assert_array_equal(ItemMap.identity(3).lookup([2, 3, "2", -1]), [2, -1, -1, -1])
    with pytest.raises(InputError, match=r"item ids must be unique; repeated: \['a'\]"):
        ItemMap(("a", "b", "a"))


def test_a_fitted_model_saves_and_loads_its_map_and_world_recommend_refuses_it(tmp_path):
    from offrec.policies.bandits import LinUCB
    from offrec.policies.logged import fit_logged
    from offrec.policies.persist import load_policy, save_policy
    from offrec.recommend import recommend
    from offrec.sim import World, WorldConfig

    world = World(WorldConfig(n_items=3), seed=0)
    rng = np.random.default_rng(0)
    n = 60
    data = LoggedData.from_arrays(
        rng.normal(size=(n, world.context_dim)),
        rng.integers(0, 3, n),
        rng.integers(0, 2, n),
        np.full(n, 1 / 3),
        item_ids=["tea", "cake", "jam"],
    )
    learner = fit_logged(LinUCB(3, world.context_dim), data)
    assert learner.item_map == ItemMap(("tea", "cake", "jam"))
    loaded = load_policy(save_policy(learner.exploit(), tmp_path / "m"))
    assert loaded.item_map == learner.item_map
    np.testing.assert_array_equal(
        loaded.action_dist(data.context), learner.exploit().action_dist(data.context)
    )
    profile = ",".join(f"{t}=1" for t in world.topics[:1])
    with pytest.raises(InputError, match=r"not the world's 0..2 .*--context"):
        recommend(loaded, world, profile)
    loaded.item_map = ItemMap.identity(3)  # a model of the world's own items
    assert recommend(loaded, world, profile, k=2)[0]["item"].tolist()[0] in (0, 1, 2)


@pytest.mark.slow
def test_an_rl_model_keeps_its_map_and_is_translated(tmp_path):
    """d3rlpy training (about 6 s of CPU): the Q-policy's folder stores the map."""

    def session_log(items, seed):
        r = np.random.default_rng(seed)
        n = 120
        return pd.DataFrame(
            {
                "sid": np.repeat(np.arange(n // 3), 3),
                "t": np.tile([0, 1, 2], n // 3),
                "item": r.choice(items, n),
                "x0": r.normal(size=n),
                "x1": r.normal(size=n),
                "click": r.integers(0, 2, n),
                "p": 1 / len(items),
            }
        )

    session_log(["shoe", "sock"], 1).to_csv(tmp_path / "a.csv", index=False)
    session_log(["hat", "sock", "shoe"], 2).to_csv(tmp_path / "b.csv", index=False)
    sess = ["--session", "sid", "--step", "t"]
    _run("import", "csv", str(tmp_path / "a.csv"), "--out", str(tmp_path / "A"), *IMPORT, *sess)
    _run(
        "import",
        "csv",
        str(tmp_path / "b.csv"),
        "--out",
        str(tmp_path / "B"),
        *IMPORT,
        *sess,
        "--items",
        str(tmp_path / "A"),
        "--extend-items",
    )
    _run(
        "train",
        "rl",
        str(tmp_path / "A"),
        "--algo",
        "dqn",
        "--n-steps",
        "20",
        "--param",
        "hidden_units=[8]",
        "--out",
        str(tmp_path / "q"),
    )
    q = load_model(tmp_path / "q")
    assert q.item_map == ItemMap(("shoe", "sock"))
    b = read_logs(tmp_path / "B")
    assert b.metadata["action_map"] == ["shoe", "sock", "hat"]
    res = evaluate(b, {"q": q}, estimators=["pdis"], interval=None)
    x = b.context[:5]
    seen = np.zeros((5, 3))
    seen[:, :2] = q.action_dist(x)  # shoe, sock keep their indices; hat gets no mass
    np.testing.assert_array_equal(res.table["estimator"], ["pdis"])
    from offrec.logs.items import translate_target

    np.testing.assert_array_equal(translate_target(q, b.item_map, "q").action_dist(x), seen)
