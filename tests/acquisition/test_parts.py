"""Behaviour of the acquisition parts on crafted inputs: EHVI against Monte Carlo, hypervolume gain,
threshold scalarization, local search, trust regions and Thompson sampling."""

from __future__ import annotations

import math

import moocore
import numpy as np
import pytest
import torch

from acquisition.base import SearchState
from acquisition.hypervolume import ExpectedHypervolumeImprovement, HypervolumeGain, hypervolume_improvement
from acquisition.local_search import LocalSearch
from acquisition.scalarizations import ThresholdScalarization
from acquisition.thompson import ThompsonSampling
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap
from framework.registry import SURROGATES
from framework.space import HeadSpace
from framework.testing import acquisition_state

FRONT = np.array([[0.2, 0.6], [0.4, 0.35], [0.7, 0.15]])
REF = np.array([1.0, 1.0])


def crafted_state(front: np.ndarray = FRONT, ref: np.ndarray = REF, X: np.ndarray | None = None,
                  baseline_raw=(0.5, 0.4)) -> SearchState:
    Y = np.asarray(front, dtype=float)
    if X is None:
        X = np.ones((len(Y), 4), dtype=bool)
    return SearchState(X=X, Y=Y, ref=np.asarray(ref, dtype=float), baseline=np.asarray(baseline_raw, dtype=float),
                       baseline_raw=np.asarray(baseline_raw, dtype=float), bounds=np.array([[0.0, 0.0], [1.0, 1.0]]))


class FixedModel:
    """A 'surrogate' whose predictions of pool row i are given in advance."""

    def __init__(self, mean, std) -> None:
        self.mean, self.std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def predict(self, X):
        return self.mean[: len(X)], self.std[: len(X)]


def hvi(y: np.ndarray, front: np.ndarray, ref: np.ndarray) -> float:
    hv0 = moocore.hypervolume(front, ref=ref)
    if not np.all(y < ref):
        return 0.0
    return max(0.0, float(moocore.hypervolume(np.vstack([front, y]), ref=ref)) - hv0)


# ------------------------------------------------------------------ EHVI
def test_ehvi_matches_monte_carlo():
    acq = ExpectedHypervolumeImprovement().setup(crafted_state(), 1, np.random.default_rng(0))
    mean, std = np.array([0.45, 0.4]), np.array([0.12, 0.2])
    analytic = -acq.score_numpy(mean[None], std[None])[0]
    draws = mean + std * np.random.default_rng(1).standard_normal((20000, 2))
    mc = np.mean([hvi(y, FRONT, REF) for y in draws])
    assert analytic > 0
    assert analytic == pytest.approx(mc, rel=0.04), (analytic, mc)


def test_ehvi_with_zero_std_is_the_hypervolume_improvement():
    acq = ExpectedHypervolumeImprovement().setup(crafted_state(), 1, np.random.default_rng(0))
    points = np.array([[0.3, 0.3], [0.1, 0.9], [0.5, 0.5], [1.2, 0.1]])
    e = acq.score_numpy(points, np.zeros_like(points))
    expected = [hvi(y, FRONT, REF) for y in points]
    np.testing.assert_allclose(-e, expected, atol=1e-5)
    assert expected[2] == 0.0 and expected[3] == 0.0 and expected[0] > 0


def test_bounded_ehvi_is_the_expected_improvement_of_the_clipped_hypervolume():
    # a told point beyond the ideal (bias -0.5) and candidates whose predictions reach past it: the
    # bounded EHVI is the expected gain of the hypervolume the product measures (values clipped at
    # the ideal 0), the unbounded one also counts the area beyond it
    front = np.array([[-0.5, 0.6], [0.2, 0.3], [0.7, -0.1], [0.9, 0.9]])
    state = crafted_state(front=front)
    mean = np.array([[-0.3, 0.1], [0.1, 0.1], [-1.0, -1.0], [0.5, 0.5]])
    std = np.array([[0.3, 0.2], [0.2, 0.2], [0.1, 0.1], [0.4, 0.3]])
    bounded = -ExpectedHypervolumeImprovement(bounded="all").setup(state, 1, np.random.default_rng(0)).score_numpy(
        mean, std)
    unbounded = -ExpectedHypervolumeImprovement().setup(state, 1, np.random.default_rng(0)).score_numpy(mean, std)
    clipped = np.maximum(front, 0.0)
    rng = np.random.default_rng(1)
    for i in range(len(mean)):
        draws = np.maximum(mean[i] + std[i] * rng.standard_normal((20000, 2)), 0.0)
        mc = np.mean([hvi(y, clipped, REF) for y in draws])
        assert bounded[i] == pytest.approx(mc, rel=0.04, abs=1e-4), (i, bounded[i], mc)
    # a sure point at (-1, -1) earns the whole box left over above the ideal: 1 - HV(clipped front)
    assert bounded[2] == pytest.approx(1.0 - moocore.hypervolume(clipped, ref=REF), abs=1e-6)
    assert unbounded[2] > 3.0 * bounded[2] and np.all(unbounded >= bounded - 1e-9)
    # bounding the bias alone: a sure point earns the clipped bias but the open cost box
    bias_only = -ExpectedHypervolumeImprovement(bounded="bias").setup(state, 1, np.random.default_rng(0)).score_numpy(
        mean, np.zeros_like(std))
    front_b = np.column_stack([np.maximum(front[:, 0], 0.0), front[:, 1]])
    for i in range(len(mean)):
        expected = hvi(np.array([max(mean[i, 0], 0.0), mean[i, 1]]), front_b, REF)
        assert bias_only[i] == pytest.approx(expected, abs=1e-6), (i, bias_only[i], expected)
    with pytest.raises(ValueError, match="bounded"):
        ExpectedHypervolumeImprovement(bounded="cost")


def test_ehvi_pending_pick_lowers_a_nearby_candidate():
    acq = ExpectedHypervolumeImprovement().setup(crafted_state(), 1, np.random.default_rng(0))
    cand, std = np.array([[0.3, 0.3]]), np.array([[0.05, 0.05]])
    far = np.array([[0.1, 0.85]])
    before, far_before = acq.score_numpy(cand, std)[0], acq.score_numpy(far, std)[0]
    acq.condition(np.array([0.31, 0.29]), np.array([0.05, 0.05]), float(before))
    after, far_after = acq.score_numpy(cand, std)[0], acq.score_numpy(far, std)[0]
    assert -after < 0.5 * -before, (before, after)
    assert far_after == pytest.approx(far_before, rel=1e-6)  # a pick elsewhere on the front leaves it be


def test_ehvi_believer_batch_spreads_where_the_mean_rule_piles_onto_one_neighbourhood():
    """Pool: a promising mask and its 30 one-flip neighbours (strongly correlated under the GP),
    plus 60 random masks.  Pending picks at their mean only move the front, so the neighbours
    keep their spread and fill the batch; conditioning the GP on each pick (kriging believer)
    shrinks their spread and the batch goes elsewhere."""
    rng = np.random.default_rng(0)
    d = 30
    w = rng.uniform(0, 1, (2, d))

    def f(X):
        pruned = (~X).astype(float)
        return np.stack([1 - pruned @ w[0] / 8, pruned @ w[1] / 8], axis=1)

    X = np.vstack([np.ones((1, d), dtype=bool), rng.random((24, d)) < 0.8])
    Y = f(X)
    gp = SURROGATES.create("gp", seed=0).fit(X, Y)
    a = np.ones(d, dtype=bool)
    a[np.argsort(-(w[0] - w[1]))[:6]] = False
    near = np.array([a] + [np.where(np.arange(d) == i, ~a, a) for i in range(d)])
    pool = np.vstack([near, rng.random((60, d)) < 0.7])
    state = SearchState(X, Y, np.array([1.1, 1.1]), Y[0], Y[0], np.array([[0.0, 0.0], [1.0, 1.0]]))
    picks = {rule: ExpectedHypervolumeImprovement(pending=rule).setup(state, 1, rng).select(gp, pool, 8, rng)
             for rule in ("mean", "believer")}
    in_near = {rule: sum(r < len(near) for r in sel.rows) for rule, sel in picks.items()}
    assert in_near["mean"] >= 6 and in_near["believer"] <= 2, in_near
    assert picks["mean"].rows[0] == picks["believer"].rows[0]  # the first pick is the same
    np.testing.assert_allclose(picks["believer"].std, gp.predict(pool)[1], rtol=1e-6)  # reported: before the batch
    with pytest.raises(ValueError, match="pending"):
        ExpectedHypervolumeImprovement(pending="kriging")


# ------------------------------------------------------------------ hv-gain
def test_hv_gain_energies():
    acq = HypervolumeGain(beta=0.0).setup(crafted_state(), 1, np.random.default_rng(0))
    dominated = np.array([[0.6, 0.6]])  # (0.4, 0.35) dominates it: shift max_f min_j (y - f)_j = 0.2 to escape
    e = acq.score_numpy(dominated, np.zeros((1, 2)))[0]
    assert e == pytest.approx(0.2)
    assert acq.score_numpy(np.array([[0.65, 0.6]]), np.zeros((1, 2)))[0] > e  # farther behind: higher energy
    better = np.array([[0.3, 0.3]])
    e = acq.score_numpy(better, np.zeros((1, 2)))[0]
    assert e == pytest.approx(-hvi(better[0], FRONT, REF)) and e < 0
    outside = np.array([[1.1, 0.0]])  # outside the reference box: shift 0.1 to get in
    assert acq.score_numpy(outside, np.zeros((1, 2)))[0] == pytest.approx(0.1)
    # beta moves the optimistic point down: y = mean - beta * std
    acq_b = HypervolumeGain(beta=1.0).setup(crafted_state(), 1, np.random.default_rng(0))
    assert acq_b.score_numpy(dominated, np.full((1, 2), 0.3))[0] < 0
    np.testing.assert_allclose(hypervolume_improvement(better, FRONT, REF), -acq.score_numpy(better, np.zeros((1, 2))))


def test_hv_gain_batch_spreads_instead_of_picking_copies():
    acq = HypervolumeGain(beta=0.0).setup(crafted_state(), 1, np.random.default_rng(0))
    mean = np.array([[0.3, 0.3], [0.3, 0.3], [0.3, 0.3], [0.1, 0.8], [0.6, 0.6]])
    sel = acq.select(FixedModel(mean, np.zeros_like(mean)), np.zeros((5, 4), dtype=bool), 2, np.random.default_rng(0))
    assert sel.rows[0] in (0, 1, 2)
    assert sel.rows[1] == 3, sel.rows


# ------------------------------------------------------------------ threshold
def test_threshold_members_spread_geometrically_and_penalize_only_above():
    state = crafted_state()
    acq = ThresholdScalarization(thresholds=(0.01, 0.3), penalty=10.0).setup(state, 4, np.random.default_rng(0))
    thr = acq._thr[:, 1].double().numpy()
    ts = thr / 0.4 - 1.0  # baseline_raw cost 0.4, bounds [0, 1]: thr = (1 + t) * 0.4
    np.testing.assert_allclose(ts, np.geomspace(0.01, 0.3, 4), rtol=1e-5)
    assert np.all(np.diff(thr) > 0)
    assert torch.isinf(acq._thr[:, 0]).all()  # the bias objective is not bounded
    members = torch.arange(4)
    below = torch.tensor([[0.3, 0.4]] * 4)  # cost 0.4 <= every threshold
    e = acq.score(below, torch.zeros_like(below), members)
    torch.testing.assert_close(e, torch.full((4,), 0.3))
    cost = float(thr[1] + 0.01)  # above members 0 and 1, below 2 and 3
    above = torch.tensor([[0.3, cost]] * 4)
    e = acq.score(above, torch.zeros_like(above), members).double().numpy()
    expected = 0.3 + 10.0 * np.maximum(cost - thr, 0.0)
    np.testing.assert_allclose(e, expected, rtol=1e-5)
    assert e[0] > e[1] > 0.3 and e[2] == pytest.approx(0.3) and e[3] == pytest.approx(0.3)


# ------------------------------------------------------------------ local search
SPACE = HeadSpace.binary(12, max_pruned_fraction=0.25, protected={0})  # at most 3 pruned, head 0 kept
W = torch.tensor([-5.0, 1.0, -1.0, 0.5, -3.0, 2.0, -0.5, -2.0, 1.0, -4.0, 0.2, -0.1])


def linear_energy(x: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
    return ((1.0 - x.float()) * W).sum(dim=1)  # pruning head j adds W[j]


def test_local_search_reaches_the_constrained_optimum_without_touching_protected_heads():
    x0 = torch.as_tensor(SPACE.keep_all(3)).clone()
    x0[1, 5] = False  # bad heads pruned at the start: unpruned again on the way
    x0[2, [1, 5]] = False
    res = LocalSearch(SPACE, max_steps=20).run(linear_energy, x0)
    best = np.ones(12, dtype=bool)
    best[[9, 4, 7]] = False  # the three most negative free heads (head 0 is protected)
    for row in res.best_x.numpy():
        np.testing.assert_array_equal(row, best)
    torch.testing.assert_close(res.best_energy, torch.full((3,), -9.0))
    assert res.best_x[:, 0].all()
    assert SPACE.is_valid(res.best_x.numpy()).all()
    # single flips stop at the cardinality limit: swapping a pruned head needs two flips
    x1 = torch.as_tensor(SPACE.keep_all(1)).clone()
    x1[0, [2, 9, 4]] = False
    stuck = LocalSearch(SPACE).run(linear_energy, x1)
    torch.testing.assert_close(stuck.best_x, x1)


def test_local_search_honours_max_distance():
    x0 = torch.as_tensor(SPACE.keep_all(2))
    res = LocalSearch(SPACE, max_steps=20).run(linear_energy, x0, max_distance=2)
    assert ((res.best_x != x0).sum(dim=1) <= 2).all()
    assert ((~res.best_x).sum(dim=1) == 2).all()  # the best two flips: heads 9 and 4
    assert not res.best_x[:, [9, 4]].any() and res.best_x[:, 0].all()
    with pytest.raises(ValueError, match="max_distance"):
        LocalSearch(SPACE).run(linear_energy, x0, max_distance=0)
    bad = x0.clone()
    bad[0, 0] = False
    with pytest.raises(ValueError, match="constraints"):
        LocalSearch(SPACE).run(linear_energy, bad)


# ------------------------------------------------------------------ trust regions
def test_hamming_trust_region_grows_shrinks_restarts_and_caps():
    tr = HammingTrustRegion(initial_ratio=0.05, factor=2.0, min_radius=2.0).start(100)
    assert tr.radius == 5 and tr.max_distance == 5
    tr.update(True)
    assert tr.radius == 10
    tr.update(False)
    tr.update(False)
    assert tr.radius == 2.5 and tr.max_distance == 3
    tr.update(False)
    assert tr.radius == 1.25
    tr.update(False)  # 0.625 < 1: restart
    assert tr.radius == 5 and tr.restarts == 1
    for _ in range(10):
        tr.update(True)
    assert tr.radius == 100  # never above d
    small = HammingTrustRegion(initial_ratio=0.01, min_radius=3.0).start(50)
    assert small.radius == 3  # min_radius wins over ceil(0.5)
    with pytest.raises(RuntimeError, match="start"):
        _ = HammingTrustRegion().radius
    for bad in ({"initial_ratio": 0.0}, {"factor": 1.0}, {"min_radius": 0.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HammingTrustRegion(**bad)


def test_fixed_trust_region_never_changes():
    tr = HammingTrustRegion.fixed(3).start(100)
    assert tr.radius == 3 and tr.max_distance == 3
    for improved in (True, False, False, False, False, True):
        tr.update(improved)
        assert tr.radius == 3
    assert tr.restarts == 0
    with pytest.raises(ValueError, match="radius"):
        HammingTrustRegion.fixed(0)


def test_pruned_count_cap():
    X = np.ones((4, 20), dtype=bool)
    X[0, :2] = False      # front, inside: 2 pruned
    X[1, :6] = False      # front, inside: 6 pruned
    X[2, :15] = False     # front but outside the reference box: does not count
    X[3, :10] = False     # dominated: does not count
    Y = np.array([[0.1, 0.5], [0.3, 0.2], [1.5, 0.0], [0.5, 0.6]])
    state = crafted_state(Y, X=X)
    assert PrunedCountCap(growth=0.5).cap(state) == 9  # max(6 + 2, ceil(1.5 * 6))
    assert PrunedCountCap(growth=0.0).cap(state) == 8
    assert PrunedCountCap(growth=1.0).cap(state) == 12
    outside = crafted_state(np.array([[1.5, 0.0], [0.0, 1.5]]), X=X[[2, 0]])  # none inside: whole front
    assert PrunedCountCap(growth=0.5).cap(outside) == 23
    space = HeadSpace.binary(20)
    assert PrunedCountCap(growth=0.5).limit(space, state).max_pruned == 9
    tight = HeadSpace.binary(20, max_pruned_fraction=0.2)
    assert PrunedCountCap(growth=0.5).limit(tight, state) is tight
    with pytest.raises(ValueError, match="growth"):
        PrunedCountCap(growth=-1.0)


# ------------------------------------------------------------------ Thompson
def test_thompson_select_uses_joint_draws_and_picks_distinct_rows():
    space, state = acquisition_state(n=12)
    gp = SURROGATES.create("gp", seed=0).fit(state.X, state.Y)
    pool = np.unique(space.sample(60, np.random.default_rng(3)), axis=0)[:30]
    calls = []
    real_sample = gp.sample

    def sample(X, n, rng):
        calls.append((len(X), n))
        return real_sample(X, n, rng)

    gp.sample = sample
    acq = ThompsonSampling().setup(state, 2, np.random.default_rng(0))
    sel = acq.select(gp, pool, 8, np.random.default_rng(1))
    assert calls == [(len(pool), 8)]  # one joint draw over the whole pool per pick
    assert len(set(sel.rows)) == 8
    again = ThompsonSampling().setup(state, 2, np.random.default_rng(0)).select(gp, pool, 8, np.random.default_rng(1))
    assert again.rows == sel.rows


def test_mlp_sample_spread_matches_predict_std():
    space, state = acquisition_state(n=40)
    mlp = SURROGATES.create("mlp", seed=0, n_members=4, hidden=(16,), max_epochs=30).fit(state.X, state.Y)
    pool = space.sample(20, np.random.default_rng(2))
    mean, std = mlp.predict(pool)
    draws = mlp.sample(pool, 400, np.random.default_rng(0))
    assert draws.shape == (400, 20, 2)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=1e-4 + 0.05 * float(std.max()))
    ratio = draws.std(axis=0).mean() / std.mean()
    assert 0.7 < ratio < 1.4, ratio
    assert math.isfinite(ratio)
