"""Indicators agree with pymoo on known fronts."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.indicators.igd_plus import IGDPlus
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from framework.pareto import hypervolume, hypervolume_curve, igd_plus, non_dominated


def test_hypervolume_known_values_and_pymoo():
    f = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(f, np.array([4.0, 4.0])) == 6.0
    rng = np.random.default_rng(0)
    for m in (2, 3):
        y = rng.random((60, m))
        ref = np.full(m, 1.1)
        assert np.isclose(hypervolume(y, ref), HV(ref_point=ref)(y))
    # points beyond the reference point and NaN rows count for nothing
    assert hypervolume(np.array([[5.0, 0.0], [np.nan, 1.0]]), np.array([4.0, 4.0])) == 0.0


def test_non_dominated_matches_pymoo():
    rng = np.random.default_rng(1)
    y = rng.random((200, 2))
    ours = np.flatnonzero(non_dominated(y))
    theirs = np.sort(NonDominatedSorting().do(y, only_non_dominated_front=True))
    assert np.array_equal(ours, theirs)


def test_igd_plus_and_curve():
    pf = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    y = np.array([[0.1, 1.0], [0.6, 0.6]])
    assert np.isclose(igd_plus(y, pf), IGDPlus(pf)(y))
    assert igd_plus(pf, pf) == 0.0
    rng = np.random.default_rng(2)
    y = rng.random((50, 2))
    curve = hypervolume_curve(y, np.array([1.0, 1.0]))
    expect = [HV(ref_point=np.ones(2))(y[: i + 1]) for i in range(50)]
    assert np.allclose(curve, expect)
