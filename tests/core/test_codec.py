"""The config codec: round trips, unknown keys, and value types checked when parsed."""

from dataclasses import dataclass, field

import pytest

from offrec.core.codec import ConfigCodec
from offrec.pipeline_config import LoggingSpec, OPESpec, PolicySpec
from offrec.rl.config import RLConfig
from offrec.rl.online_baseline import OnlineConfig
from offrec.sim.config import WorldConfig


@dataclass(frozen=True)
class Inner(ConfigCodec):
    CODEC_NAME = "inner"
    width: int = 2


@dataclass(frozen=True)
class Outer(ConfigCodec):
    CODEC_NAME = "outer config"
    name: str
    rate: float = 0.5
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    labels: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    inners: tuple[Inner, ...] = ()


def test_round_trip_through_dict_json_and_toml():
    cfg = Outer("a", 2.0, True, (3,), ("x",), {"k": 1}, Inner(5), (Inner(1), Inner(7)))
    d = cfg.to_dict()
    assert d["sizes"] == [3] and d["inner"] == {"width": 5} and d["inners"][1] == {"width": 7}
    assert Outer.from_dict(d) == cfg and Outer.from_json(cfg.to_json()) == cfg
    toml = 'name = "a"\nrate = 2\nflag = true\nsizes = [3]\nlabels = ["x"]\n[extra]\nk = 1\n'
    toml += "[inner]\nwidth = 5\n[[inners]]\nwidth = 1\n[[inners]]\nwidth = 7\n"
    assert Outer.from_toml(toml) == cfg
    assert isinstance(Outer.from_toml(toml).rate, float)  # an int where a float goes


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            {"name": "a", "rte": 1},
            ValueError,
            r"unknown outer config key\(s\) \['rte'\]; valid keys: name, rate",
        ),
        ({}, ValueError, r"Outer is missing required key\(s\) \['name'\]"),
        ({"name": 3}, TypeError, r"Outer.name must be str; got 3"),
        ({"name": "a", "rate": "fast"}, TypeError, r"Outer.rate must be float; got 'fast'"),
        ({"name": "a", "rate": True}, TypeError, r"Outer.rate must be float; got True"),
        ({"name": "a", "flag": 1}, TypeError, r"Outer.flag must be bool; got 1"),
        ({"name": "a", "sizes": 3}, TypeError, r"Outer.sizes must be a list of int; got 3"),
        ({"name": "a", "sizes": [1, "2"]}, TypeError, r"Outer.sizes\[1\] must be int; got '2'"),
        ({"name": "a", "labels": [1]}, TypeError, r"Outer.labels must be a list of str; got \[1\]"),
        ({"name": "a", "extra": []}, TypeError, r"Outer.extra must be a table; got \[\]"),
        ({"name": "a", "inner": {"w": 1}}, ValueError, r"unknown key\(s\) \['w'\] in Outer.inner"),
        (
            {"name": "a", "inners": [{"width": 1.5}]},
            TypeError,
            r"Outer.inners\[0\].width must be int",
        ),
    ],
)
def test_bad_values_are_named(data, error, message):
    with pytest.raises(error, match=message):
        Outer.from_dict(data)


def test_pipeline_tables_are_located_by_where():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bta'\] in \[logging\]; valid keys"):
        LoggingSpec.from_dict({"bta": 1, "n_decisions": 5}, where="[logging]")
    with pytest.raises(TypeError, match=r"\[ope\] estimators must be a list of str; got 'ips'"):
        OPESpec.from_dict({"estimators": "ips"}, where="[ope]")


@pytest.mark.parametrize(
    "cfg",
    [
        WorldConfig(n_items=7, topic_names=tuple("abcdefgh")),
        RLConfig(algo="dqn", hidden_units=(8, 4)),
        OnlineConfig(algo="dqn", hidden_units=(16,)),
        LoggingSpec(support=(1, 2), n_sessions=10),
        PolicySpec("p", "linucb", params={"alpha": 1.0}),
        OPESpec(estimators=("ips", "dr")),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_config_round_trips(cfg):
    assert type(cfg).from_json(cfg.to_json()) == cfg
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
