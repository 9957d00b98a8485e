"""The surrogate contract, run against every registered surrogate (a plug-in is tested once registered).

The checks live in :class:`framework.testing.SurrogateContractSuite`, so a plug-in's repository
runs the same ones."""

from __future__ import annotations

from framework.registry import SURROGATES
from framework.testing import SurrogateContractSuite

NAMES = SURROGATES.names()


def test_both_built_in_surrogates_are_registered():
    assert {"mlp", "gp"} <= set(NAMES), SURROGATES.broken()


class TestSurrogateContract(SurrogateContractSuite):
    surrogate_names = NAMES
