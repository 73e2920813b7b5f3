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
