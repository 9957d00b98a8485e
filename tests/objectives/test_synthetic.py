"""Synthetic problems: rho-MNK landscapes and the bi-objective 0/1 knapsack."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from framework.pareto import hypervolume, non_dominated
from framework.registry import PROBLEMS
from objectives.synthetic import KnapsackProblem, RhoMNKProblem


def all_masks(n: int) -> np.ndarray:
    """Every ``bool[2^n, n]`` mask, built independently of the module's enumeration."""
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool)


def naive_front(values: np.ndarray) -> np.ndarray:
    """Unique non-dominated rows (minimization) by the O(n^2) definition, sorted."""
    v = np.unique(values, axis=0)
    keep = [not np.any(np.all(v <= row, axis=1) & np.any(v < row, axis=1)) for row in v]
    return v[np.array(keep)]


def assert_same_front(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.unique(a, axis=0), np.unique(b, axis=0)
    assert a.shape == b.shape, (a, b)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ rho-MNK
def test_registered() -> None:
    assert {"rho-mnk", "knapsack"} <= set(PROBLEMS.names())
    p = PROBLEMS.create("rho-mnk", n_bits=20, k=1, rho=0.3, seed=4)
    assert isinstance(p, RhoMNKProblem) and p.space.dim == 20
    assert isinstance(PROBLEMS.create("knapsack", n_items=12), KnapsackProblem)


def test_mnk_k0_rho0_is_additive_and_front_matches_independent_model() -> None:
    n = 10
    p = RhoMNKProblem(n_bits=n, k=0, rho=0.0, seed=3)
    assert p.tables.shape == (2, n, 2)
    x = all_masks(n)
    got = p.evaluate(x)
    # The additive model, from the per-bit contributions: c[o, j, bit].
    c0, c1 = p.tables[:, :, 0], p.tables[:, :, 1]
    additive = 1.0 - (c0.sum(axis=1) + x.astype(float) @ (c1 - c0).T) / n
    np.testing.assert_allclose(got, additive, rtol=0, atol=1e-12)
    # Additivity seen from evaluations alone: f(x) - f(0) = sum_j x_j (f(e_j) - f(0)).
    zero = p.evaluate(np.zeros(n, dtype=bool))[0]
    single = p.evaluate(np.eye(n, dtype=bool)) - zero
    np.testing.assert_allclose(got - zero, x.astype(float) @ single, rtol=0, atol=1e-12)
    # Front: brute force over the problem's evaluations == front of the independent model.
    expected = naive_front(additive)
    assert_same_front(got[non_dominated(got)], expected)
    assert_same_front(p.reference_front(), expected)
    # With K = 0 the bounds' ideal is exact: each objective's best mask reaches it.
    np.testing.assert_allclose(got.min(axis=0), p.bounds[0], atol=1e-12)
    np.testing.assert_allclose(got.max(axis=0), p.bounds[1], atol=1e-12)


def test_mnk_epistatic_evaluation_matches_a_loop_implementation() -> None:
    p = RhoMNKProblem(n_bits=12, k=3, rho=0.4, seed=1)
    assert p.links.shape == (12, 4)
    assert np.array_equal(p.links[:, 0], np.arange(12))
    for row in p.links:  # K distinct links other than the bit itself
        assert len(set(row.tolist())) == 4
    x = np.random.default_rng(0).random((50, 12)) < 0.5
    expected = np.empty((50, 2))
    for i, mask in enumerate(x):
        for o in range(2):
            total = 0.0
            for j in range(12):
                idx = sum(int(mask[p.links[j, t]]) << t for t in range(4))
                total += p.tables[o, j, idx]
            expected[i, o] = 1.0 - total / 12
    np.testing.assert_allclose(p.evaluate(x), expected, rtol=0, atol=1e-12)
    # the brute-force reference front (N <= 16) is the front of all 2^N evaluations
    everything = p.evaluate(all_masks(12))
    assert_same_front(p.reference_front(), naive_front(everything))


def test_mnk_values_within_bounds_and_ref_point_beyond() -> None:
    p = RhoMNKProblem(n_bits=40, k=2, rho=-0.5, seed=2)
    v = p.evaluate(np.random.default_rng(1).random((500, 40)) < 0.5)
    z = p.normalize(v)
    assert np.all((z >= 0) & (z <= 1))
    assert np.all(p.normalize(p.ref_point) > 1.0)
    assert np.all(p.ref_point > v.max(axis=0))
    assert p.reference_front() is None  # N > 16


@pytest.mark.parametrize(("rho", "lo", "hi"), [(0.95, 0.8, 1.0), (-0.9, -1.0, -0.75), (0.0, -0.25, 0.25)])
def test_mnk_correlation_between_objectives(rho: float, lo: float, hi: float) -> None:
    p = RhoMNKProblem(n_bits=64, k=2, rho=rho, seed=5)
    # contributions: Pearson correlation close to rho (the copula is calibrated for it)
    assert abs(np.corrcoef(p.tables[0].ravel(), p.tables[1].ravel())[0, 1] - rho) < 0.12
    v = p.evaluate(np.random.default_rng(2).random((2000, 64)) < 0.5)
    r = np.corrcoef(v[:, 0], v[:, 1])[0, 1]
    assert lo <= r <= hi, r


def test_mnk_contributions_are_uniform() -> None:
    t = RhoMNKProblem(n_bits=64, k=4, rho=0.7, seed=0).tables
    assert np.all((t >= 0) & (t <= 1))
    hist = np.histogram(t[0].ravel(), bins=10, range=(0, 1))[0] / t[0].size
    assert np.all(np.abs(hist - 0.1) < 0.03)


def test_mnk_seeded_instances_and_fingerprint() -> None:
    a, b = RhoMNKProblem(n_bits=30, seed=7), RhoMNKProblem(n_bits=30, seed=7)
    assert np.array_equal(a.tables, b.tables) and np.array_equal(a.links, b.links)
    assert a.fingerprint() == b.fingerprint()
    x = np.random.default_rng(3).random((20, 30)) < 0.5
    assert np.array_equal(a.evaluate(x), b.evaluate(x))
    c = RhoMNKProblem(n_bits=30, seed=8)
    assert not np.array_equal(a.tables, c.tables)
    assert not np.array_equal(a.evaluate(x), c.evaluate(x))
    prints = {p.fingerprint() for p in [a, c, RhoMNKProblem(n_bits=31, seed=7), RhoMNKProblem(n_bits=30, k=3, seed=7),
                                        RhoMNKProblem(n_bits=30, rho=0.5, seed=7)]}
    assert len(prints) == 5


def test_mnk_reference_front_respects_space_constraints() -> None:
    free = RhoMNKProblem(n_bits=10, k=1, seed=0)
    tied = RhoMNKProblem(n_bits=10, k=1, seed=0, max_pruned_fraction=0.2, protected={0})
    x = all_masks(10)
    ok = tied.space.is_valid(x)
    assert_same_front(tied.reference_front(), naive_front(tied.evaluate(x[ok])))
    # fewer masks allowed: the constrained front is weakly dominated by the free one
    assert hypervolume(tied.reference_front(), free.ref_point) <= hypervolume(free.reference_front(), free.ref_point)


@pytest.mark.parametrize(("options", "word"), [({"n_bits": 0}, "n_bits"), ({"n_bits": 5, "k": 5}, "k"),
                                                ({"rho": 1.5}, "rho"), ({"n_objectives": 3, "rho": -0.6}, "rho"),
                                                ({"n_objectives": 1}, "n_objectives")])
def test_mnk_rejects_bad_options(options: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        RhoMNKProblem(**options)


def test_mnk_three_objectives() -> None:
    p = RhoMNKProblem(n_bits=10, k=1, rho=0.2, n_objectives=3, seed=0)
    assert p.evaluate(np.ones((4, 10), dtype=bool)).shape == (4, 3)
    assert p.reference_front().shape[1] == 3 and p.ref_point.shape == (3,)


# ----------------------------------------------------------------------------- knapsack
def knapsack_brute_force(p: KnapsackProblem) -> np.ndarray:
    """Front of feasible subsets, from the instance's weights and profits only."""
    x = all_masks(p.n_items)
    feasible = x[x.astype(int) @ p.weights <= p.capacity]
    profits = feasible.astype(int) @ p.profits.T
    return naive_front(1.0 - profits / p.profits.sum(axis=1))


def test_knapsack_front_matches_brute_force() -> None:
    p = KnapsackProblem(n_items=10, capacity_ratio=0.5, seed=11)
    x = all_masks(10)
    values, info = p.evaluate_with_info(x)
    expected = knapsack_brute_force(p)
    assert len(expected) >= 2
    assert_same_front(values[non_dominated(values)], expected)
    assert_same_front(p.reference_front(), expected)
    # Infeasible masks never look better than the feasible front: each is weakly dominated.
    infeasible = x.astype(int) @ p.weights > p.capacity
    assert infeasible.any()
    for row in values[infeasible]:
        assert np.any(np.all(expected <= row + 1e-12, axis=1))
    assert [i["feasible"] for i in info] == (~infeasible).tolist()
    assert all(i["weight"] <= p.capacity for i in info)


def test_knapsack_repair_is_greedy_by_ratio() -> None:
    p = KnapsackProblem(n_items=16, capacity_ratio=0.3, seed=2)
    x = np.random.default_rng(4).random((200, 16)) < 0.8
    kept = p.repair(x)
    ratio = (p.profits / p.weights).max(axis=0)
    for mask, k in zip(x, kept, strict=True):
        assert np.all(k <= mask)  # only removes items
        assert k.astype(int) @ p.weights <= p.capacity
        removed = mask & ~k
        if removed.any():
            # every removed item ranks below every kept one, and the last removal was needed
            assert ratio[removed].max() <= ratio[k].min() if k.any() else True
            worst_removed = np.flatnonzero(removed)[np.argmax(ratio[removed])]
            assert (k.astype(int) @ p.weights) + p.weights[worst_removed] > p.capacity
        else:
            assert mask.astype(int) @ p.weights <= p.capacity
    # feasible masks are evaluated as they are
    feasible = x.astype(int) @ p.weights <= p.capacity
    assert np.array_equal(kept[feasible], x[feasible])


def test_knapsack_values_bounds_and_protected_items() -> None:
    p = KnapsackProblem(n_items=30, seed=0, protected={0, 1})
    v, info = p.evaluate_with_info(np.ones((3, 30), dtype=bool))
    assert np.all(p.repair(np.ones((1, 30), dtype=bool))[0, [0, 1]])  # protected items survive repair
    assert np.all(v >= p.bounds[0] - 1e-12) and np.all(v <= 1.0)
    assert not info[0]["feasible"] and info[0]["n_removed"] > 0
    np.testing.assert_allclose(p.evaluate(np.zeros(30, dtype=bool))[0], [1.0, 1.0])  # empty knapsack = nadir
    assert np.all(p.normalize(p.ref_point) > 1.0)
    assert p.reference_front() is None  # n_items > 20
    with pytest.raises(ValueError, match="capacity"):
        KnapsackProblem(n_items=10, capacity_ratio=0.1, protected=set(range(10)))


def test_knapsack_ideal_bound_is_the_single_objective_optimum() -> None:
    p = KnapsackProblem(n_items=12, capacity_ratio=0.4, seed=5)
    v = p.evaluate(all_masks(12))
    np.testing.assert_allclose(v.min(axis=0), p.bounds[0], atol=1e-12)


def test_knapsack_seeded_instances_and_fingerprint() -> None:
    a, b, c = KnapsackProblem(seed=1), KnapsackProblem(seed=1), KnapsackProblem(seed=2)
    assert np.array_equal(a.profits, b.profits) and a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.profits, c.profits) and a.fingerprint() != c.fingerprint()
    assert a.fingerprint() != KnapsackProblem(seed=1, capacity_ratio=0.4).fingerprint()
    assert a.fingerprint() != KnapsackProblem(seed=1, n_items=65).fingerprint()


@pytest.mark.parametrize("problem", [RhoMNKProblem(n_bits=12), KnapsackProblem(n_items=12)])
def test_wrong_masks_rejected(problem) -> None:
    with pytest.raises(ValueError, match="shape"):
        problem.evaluate(np.ones((3, 13), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        problem.evaluate(np.ones((2, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match="boolean"):
        problem.evaluate(np.full((2, 12), 2))
    with pytest.raises(ValueError, match="split"):
        problem.evaluate(np.ones((1, 12), dtype=bool), split="heldout")


@pytest.mark.parametrize("name, options", [("rho-mnk", {"n_bits": 64, "k": 1}), ("knapsack", {"n_items": 64})])
def test_noisy_sensitivities_follow_the_documented_noise_model(name, options) -> None:
    exact = PROBLEMS.create(name, **options, sensitivity_noise=1e-9)
    noisy = PROBLEMS.create(name, **options, sensitivity_noise=[1.0, 0.5])
    plain = PROBLEMS.create(name, **options)
    assert exact.has_sensitivities and not plain.has_sensitivities
    assert plain.fingerprint() == PROBLEMS.create(name, **options).fingerprint() != noisy.fingerprint()
    mask = np.ones(64, dtype=bool)
    mask[[3, 9]] = False
    flips = np.repeat(mask[None], 64, axis=0)
    flips[np.arange(64), np.arange(64)] = ~mask
    truth = (plain.evaluate(flips) - plain.evaluate(mask[None])).T
    np.testing.assert_allclose(exact.sensitivities(mask).delta, truth, atol=1e-8)  # sigma ~0: the exact flips
    s = noisy.sensitivities(mask)
    np.testing.assert_array_equal(s.delta, noisy.sensitivities(mask).delta)  # same mask, same noise
    np.testing.assert_allclose(s.se[:, 0], [1.0 * truth[0].std(), 0.5 * truth[1].std()])
    r = [np.corrcoef(s.delta[j], truth[j])[0, 1] for j in range(2)]
    assert 0.45 < r[0] < 0.9 and 0.8 < r[1] < 0.97  # about 1 / sqrt(1 + sigma^2): 0.71 and 0.89
    for bad in ([1.0, 2.0, 3.0], 0.0):
        with pytest.raises(ValueError, match="sensitivity_noise"):
            PROBLEMS.create(name, **options, sensitivity_noise=bad)
