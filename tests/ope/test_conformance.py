"""Every registered estimator passes offrec.testing.check_estimator, and the checker fails
estimators that break the contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from offrec.ope import ESTIMATORS, IPS, SNIPS, DRos, Parts, SwitchDR
from offrec.ope.terms import RoundTerms
from offrec.testing import check_estimator


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_registered_estimator_conforms(name: str) -> None:
    check_estimator(ESTIMATORS[name]())


@pytest.mark.parametrize("estimator", [IPS(lambda_=1e6), SwitchDR(lambda_=1e6), DRos(lambda_=1e6)])
def test_parameterised_estimators_conform(estimator: object) -> None:
    check_estimator(estimator)


@dataclass(frozen=True)
class BiasedSNIPS(SNIPS):
    """Adds a constant: no longer equal to the on-policy mean."""

    name: ClassVar[str] = "biased"

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(np.full(terms.n, 0.01), terms.weight * terms.reward, terms.weight)


@dataclass(frozen=True)
class NoShift(IPS):
    """Self-normalized in name only: its value does not move with a reward shift."""

    name: ClassVar[str] = "noshift"
    self_normalized: ClassVar[bool] = True

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(None, terms.weight * np.minimum(terms.reward, 1.0), terms.weight)


@pytest.mark.parametrize(
    ("estimator", "message"),
    [(BiasedSNIPS(), "on-policy"), (NoShift(), "r \\+ 3 must give V \\+ 3")],
)
def test_the_checker_catches_broken_estimators(estimator: object, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_estimator(estimator)


def _registered() -> list[type]:
    from offrec.ope.sequential import SESSION_CLASSES

    return [*ESTIMATORS.values(), *SESSION_CLASSES.values()]


@pytest.mark.parametrize("cls", _registered(), ids=lambda c: f"{c.kind}:{c.name}")
def test_every_registered_estimator_declares_its_metadata(cls: type) -> None:
    """Each class, bandit and session, says what it reads, assumes, comes from and reports;
    "uses importance weights" is read from that declaration only."""
    from offrec.ope.trust import READS, REWARD_MODEL, WEIGHT_DIAGNOSTICS, WEIGHTS

    info = cls.info()
    assert info.name == cls.name and info.kind in ("bandit", "session")
    assert info.reads and set(info.reads) <= set(READS), info.reads
    assert info.assumptions and all(isinstance(a, str) and a for a in info.assumptions)
    assert info.reference.strip(), f"{cls.name} declares no reference"
    assert info.uses_weights == (WEIGHTS in info.reads) == cls.uses_weights()
    assert (set(WEIGHT_DIAGNOSTICS) <= set(info.diagnostics)) == info.uses_weights
    if info.kind == "bandit":
        assert cls.needs_model == (REWARD_MODEL in info.reads)


def test_weight_diagnostics_go_exactly_to_the_estimators_that_use_weights() -> None:
    from offrec.ope import evaluate
    from offrec.ope.sequential import IS_BASED, SESSION_CLASSES

    assert {n for n, c in SESSION_CLASSES.items() if c.uses_weights()} == IS_BASED
    assert {"fqe", "fqe-nn", "mb"}.isdisjoint(IS_BASED) and {"mb-dr", "mis"} <= IS_BASED
    rng = np.random.default_rng(0)
    n = 500
    x = rng.normal(size=(n, 2)).astype(np.float32)
    a = rng.integers(0, 3, n)
    from offrec.logs.data import LoggedData

    data = LoggedData.from_arrays(
        x, a, (rng.random(n) < 0.3).astype(float), np.full(n, 1 / 3), n_actions=3
    )
    target = np.tile([0.6, 0.2, 0.2], (n, 1))
    # the group estimators (MIPS & co) need item groups this log has none of: their
    # diagnostics are checked in tests/ope/test_embedding.py
    names = [n for n, c in ESTIMATORS.items() if not c.needs_groups]
    res = evaluate(data, {"t": target}, estimators=names, interval="normal")
    for row in res.table.itertuples():
        assert np.isfinite(row.ess) == ESTIMATORS[row.estimator].uses_weights(), row.estimator
