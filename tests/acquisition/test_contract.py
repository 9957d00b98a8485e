"""The acquisition contract, run against every registered acquisition (a plug-in is tested once registered).

The checks live in :class:`framework.testing.AcquisitionContractSuite`, so a plug-in's repository
runs the same ones."""

from __future__ import annotations

from framework.registry import ACQUISITIONS
from framework.testing import AcquisitionContractSuite

NAMES = ACQUISITIONS.names()


def test_built_in_acquisitions_are_registered():
    assert {"threshold", "chebyshev", "mixed", "lcb", "hv-gain", "ehvi", "thompson"} <= set(NAMES), \
        ACQUISITIONS.broken()


class TestAcquisitionContract(AcquisitionContractSuite):
    acquisition_names = NAMES
