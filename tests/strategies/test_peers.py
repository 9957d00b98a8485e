"""Strategy-specific tests of the peer strategies: nsga2, qnehvi/qnparego, fasp, and the
example plug-in greedy-flip.  The shared contract is in ``test_contract.py``."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from framework.loop import optimize
from framework.problem import Problem
from framework.registry import PROBLEMS, STRATEGIES
from framework.space import HeadSpace, as_masks
from strategies.bayesopt import QNEHVI, QNParEGO, default_initial_design_size
from strategies.fasp import FASP, _coarse_to_fine
from strategies.nsga2 import NSGA2Strategy, default_population_size

FASP_SCORES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fasp" / "head_contributions.json"
FAST_BO = {"num_restarts": 1, "raw_samples": 32, "mc_samples": 16, "fit_maxiter": 30}


class LinearProblem(Problem):
    """Objective ``o`` = sum of ``weights[o, i]`` over pruned heads ``i``: single knock-outs
    measure each head exactly, so FASP's choices can be computed by hand."""

    name = "linear-test"

    def __init__(self, weights: np.ndarray, space: HeadSpace, fail_heads: tuple[int, ...] = ()) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.space = space
        self.objective_names = tuple(f"o{i}" for i in range(len(self.weights)))
        lo = np.minimum(self.weights, 0).sum(axis=1)
        hi = np.maximum(self.weights, 0).sum(axis=1)
        self.bounds = np.stack([lo, hi])
        self.ref_point = hi + 0.1 * (hi - lo)
        self.fail_heads = fail_heads

    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray:
        pruned = ~as_masks(masks, self.space.dim)
        values = pruned.astype(float) @ self.weights.T
        for h in self.fail_heads:  # the knock-out of head h alone fails
            alone = pruned[:, h] & (pruned.sum(axis=1) == 1)
            values[alone] = np.nan
        return values

    def describe(self) -> dict:
        return {"weights": self.weights.tolist(), "fail_heads": list(self.fail_heads)}


def small_problem(**kw) -> Problem:
    opts = {"n_bits": 16, "k": 1, "rho": -0.5, "seed": 0, "max_pruned_fraction": 0.5, "protected": [1, 6]}
    return PROBLEMS.create("rho-mnk", **{**opts, **kw})


# ----------------------------------------------------------------------------- nsga2
def test_population_size_follows_the_budget():
    assert [default_population_size(b) for b in (10, 40, 100, 300, 1000, 100_000)] == [6, 12, 20, 34, 64, 100]
    s = NSGA2Strategy()
    optimize(small_problem(), s, 40, batch_size=5)
    assert s.population_size == 12
    assert len(s._algorithm.pop) == 12  # survival keeps pop_size even when generations were topped up


@pytest.mark.parametrize("crossover", ["two-point", "hux"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_nsga2_never_repeats_a_mask(crossover, batch_size):
    # 7 does not divide the population (12): generations are topped up with extra offspring
    problem = small_problem()
    res = optimize(problem, NSGA2Strategy(crossover=crossover), 60, batch_size=batch_size, seed=4)
    assert res.n_evaluations == 60
    assert len({m.tobytes() for m in res.masks}) == 60
    assert problem.space.is_valid(res.masks).all()


def test_nsga2_rejects_bad_options():
    with pytest.raises(ValueError, match="'uniform'"):
        NSGA2Strategy(crossover="uniform")
    with pytest.raises(ValueError, match="pop_size"):
        NSGA2Strategy(pop_size=1)


def test_nsga2_batches_do_not_change_the_search():
    # generations are the unit of search: batch sizes that divide them give the same run
    problem = small_problem()
    a = optimize(problem, NSGA2Strategy(pop_size=12), 48, batch_size=4, seed=5)
    b = optimize(problem, NSGA2Strategy(pop_size=12), 48, batch_size=12, seed=5)
    np.testing.assert_array_equal(a.masks, b.masks)


# -------------------------------------------------------------------------- botorch
def test_initial_design_size():
    assert [default_initial_design_size(b, 2) for b in (8, 24, 40, 100, 1000)] == [4, 6, 10, 20, 20]
    assert default_initial_design_size(8, 3) == 5


@pytest.mark.parametrize("cls", [QNEHVI, QNParEGO])
def test_bo_starts_with_keep_all_then_proposes_distinct_new_masks(cls):
    problem = small_problem()
    res = optimize(problem, cls(n_init=6, **FAST_BO), 18, batch_size=6, seed=0)
    assert res.masks[0].all()                       # the keep-all mask opens the initial design
    assert len({m.tobytes() for m in res.masks}) == 18  # q=6 batches: distinct and never told before
    assert problem.space.is_valid(res.masks).all()


@pytest.mark.parametrize("cls", [QNEHVI, QNParEGO])
def test_bo_handles_three_objectives(cls):
    problem = PROBLEMS.create("rho-mnk", n_bits=12, k=1, rho=0.0, n_objectives=3, seed=1)
    res = optimize(problem, cls(n_init=5, **FAST_BO), 11, batch_size=3, seed=0)
    assert res.n_evaluations == 11 and res.values.shape == (11, 3)


def test_bo_respects_a_tight_pruning_limit():
    # at most 2 of 16 bits pruned: BoTorch's own uniform starting points would all be infeasible
    problem = small_problem(max_pruned_fraction=0.125)
    res = optimize(problem, QNEHVI(n_init=4, **FAST_BO), 12, batch_size=4, seed=0)
    assert ((~res.masks).sum(axis=1) <= 2).all() and res.n_evaluations == 12


def test_bo_local_search_stops_after_max_steps():
    """Each local search takes at most max_steps steps; unbounded, the same searches walk further
    (the trust region alone does not bound them: 4 flips may be undone and redone elsewhere)."""
    problem = PROBLEMS.create("rho-mnk", n_bits=60, k=2, rho=0.0, seed=2, max_pruned_fraction=0.5)
    steps = {}
    for bound in (None, 2):
        strategy = QNEHVI(n_init=8, max_flips=8, max_steps=bound, **FAST_BO)
        optimize(problem, strategy, 20, batch_size=4, seed=0)
        steps[bound] = strategy.steps
    assert len(steps[2]) == len(steps[None]) == 12
    assert max(steps[2]) <= 2 < max(steps[None])
    with pytest.raises(ValueError, match="max_steps"):
        QNEHVI(max_steps=0)


class CliffProblem(Problem):
    """Bias falls a little with every pruned head; the perplexity-like cost explodes beyond 4
    pruned heads (normalized values up to ~2000 against a reference box of [0, 1]), as a real
    model's perplexity does when too many heads go."""

    name = "cliff-test"

    def __init__(self, d: int = 24) -> None:
        self.space = HeadSpace(n_layers=4, n_heads=d // 4, max_pruned_fraction=0.5)
        self.weights = np.random.default_rng(0).uniform(0.2, 1.0, d)
        self.objective_names = ("bias", "cost")
        self.bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
        self.ref_point = np.array([1.0, 1.0])

    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray:
        pruned = ~as_masks(masks, self.space.dim)
        k = pruned.sum(axis=1)
        return np.stack([1.0 - 0.1 * (pruned * self.weights).sum(axis=1),
                         0.05 * k + np.where(k > 4, 30.0 * (k - 4) ** 2, 0.0)], axis=1)

    def describe(self) -> dict:
        return {}


def test_bo_fits_squashed_values_so_outliers_do_not_send_its_picks_out_of_the_box():
    """Fitted to the plain normalized values, the GPs are dominated by the design's exploded
    costs and qnehvi's picks after the design land outside the reference box; squashed (the
    default, as the product's own model-based strategies), most land inside on every seed."""
    assert QNEHVI().squash_outliers and QNParEGO().squash_outliers
    inside = {}
    for squash in (True, False):
        for seed in range(3):
            problem = CliffProblem()
            res = optimize(problem, QNEHVI(n_init=10, squash_outliers=squash, **FAST_BO), 30, batch_size=5, seed=seed)
            inside[squash, seed] = np.all(res.values[10:] < problem.ref_point, axis=1).mean()
    assert all(inside[True, s] > inside[False, s] for s in range(3)), inside
    assert np.mean([inside[True, s] for s in range(3)]) >= 0.25 > np.mean([inside[False, s] for s in range(3)])


def test_bo_rejects_bad_options():
    with pytest.raises(ValueError, match="raw_samples"):
        QNEHVI(num_restarts=8, raw_samples=4)
    with pytest.raises(ValueError, match="n_init"):
        QNParEGO(n_init=0)


# ----------------------------------------------------------------------------- fasp
def test_fasp_refuses_a_budget_without_room_for_the_knockouts():
    problem = small_problem()  # 16 bits, 2 protected -> 14 knock-outs
    with pytest.raises(ValueError, match=r"needs at least 20 evaluations.*14 single-head knock-outs.*budget is 19"):
        optimize(problem, FASP(), 19)
    assert FASP.evaluations_needed(14) == 20


def test_fasp_measures_baseline_then_every_knockout():
    problem = small_problem()
    s = FASP()
    res = optimize(problem, s, 25, batch_size=4)
    assert res.masks[0].all()
    free = [i for i in range(16) if i not in (1, 6)]
    knocked = [int(np.flatnonzero(~m)[0]) for m in res.masks[1:15]]
    assert knocked == free and all((~m).sum() == 1 for m in res.masks[1:15])
    scores = s.knockout_scores
    assert np.isnan(scores[[1, 6]]).all() and np.isfinite(scores[free]).all()
    np.testing.assert_array_equal(scores[free], res.values[1:15])


def test_fasp_prunes_lowest_bias_heads_outside_the_critical_fraction():
    rng = np.random.default_rng(0)
    weights = np.stack([rng.normal(size=10), rng.uniform(0.1, 1.0, size=10)])  # bias effect, utility cost
    problem = LinearProblem(weights, HeadSpace.binary(10))
    s = FASP(alphas=[0.3], gammas=[0.2], min_sweep=1)
    optimize(problem, s, 12)
    point = s.sweep[0]
    critical = set(np.argsort(-weights[1])[:2])                     # gamma=0.2 of 10 scored heads
    expected = [h for h in np.argsort(weights[0]) if h not in critical][:3]  # alpha=0.3 of 10 heads
    assert (point.alpha, point.gamma, point.n_critical, point.n_pruned) == (0.3, 0.2, 2, 3)
    assert sorted(np.flatnonzero(~point.mask)) == sorted(expected)


def test_fasp_never_prunes_a_head_whose_knockout_failed():
    weights = np.stack([np.linspace(-1, 1, 8), np.full(8, 0.5)])
    problem = LinearProblem(weights, HeadSpace.binary(8), fail_heads=(0, 1))  # the two best for bias
    s = FASP(alphas=[0.25, 0.5], gammas=[0.0], min_sweep=2)
    res = optimize(problem, s, 14)
    assert np.isnan(s.knockout_scores[[0, 1]]).all()
    assert all(p.mask[[0, 1]].all() for p in s.sweep)
    assert res.n_evaluations == 14


def test_fasp_sweep_front_and_exhaustion():
    weights = np.stack([np.linspace(-1, 1, 6), np.linspace(1, 0.1, 6)])
    problem = LinearProblem(weights, HeadSpace.binary(6))
    s = FASP(alphas=[0.2, 0.5], gammas=[0.0, 0.5], min_sweep=1)
    res = optimize(problem, s, 200, batch_size=3)
    # every (critical, pruned) pair of 6 heads gives far fewer than 200 distinct masks: the run stops early
    assert res.stop_reason.startswith("stalled") and res.n_evaluations < 200
    points, values = s.sweep_front()
    assert len(points) == len(values) > 0
    assert [p.alpha for p in s.sweep[:3]] != [None] * 3 and s.sweep[-1].alpha is None  # grid first, then lattice


@pytest.mark.skipif(not FASP_SCORES.is_file(), reason=f"FASP's published head scores not found at {FASP_SCORES}")
def test_fasp_beats_random_on_the_published_head_scores_landscape():
    # fasp-heads: bias/perplexity built from FASP's own per-head knock-out scores of GPT-2 (144
    # heads), plus in-layer interactions: the landscape FASP's ranking rule was made for
    problem = PROBLEMS.create("fasp-heads", path=str(FASP_SCORES), model="gpt2")
    budget = FASP.evaluations_needed(problem.space.dim, 20)
    fasp = optimize(problem, FASP(min_sweep=20), budget, batch_size=8)
    random = [optimize(problem, STRATEGIES.create("random"), budget, batch_size=8, seed=s).hypervolume
              for s in range(3)]
    assert fasp.hypervolume > max(random)


def test_fasp_checks_objective_indices():
    with pytest.raises(ValueError, match="utility_objective=4"):
        optimize(small_problem(), FASP(utility_objective=4), 40)
    with pytest.raises(ValueError, match="must differ"):
        FASP(bias_objective=1, utility_objective=1)


def test_coarse_to_fine_order_covers_ends_first():
    assert _coarse_to_fine(1) == [0]
    assert _coarse_to_fine(5)[:3] == [0, 4, 2]
    assert sorted(_coarse_to_fine(10)) == list(range(10))


# ------------------------------------------------------------------- example plug-in
def test_example_plugin_is_registered_through_its_entry_point():
    assert "greedy-flip" in STRATEGIES.names(), (
        "the example plug-in is not installed: pip install -e examples/greedy_flip --no-deps")
    assert STRATEGIES.get("greedy-flip").source == "headrepair-example-greedy"
    dist = metadata.distribution("headrepair-example-greedy")
    assert any(ep.group == "headrepair.strategies" and ep.name == "greedy-flip" for ep in dist.entry_points)


def test_greedy_flip_walks_by_single_bit_flips():
    problem = small_problem()
    strategy = STRATEGIES.create("greedy-flip", n_random_starts=2)
    res = optimize(problem, strategy, 30, batch_size=3, seed=0)
    later = res.masks[3:]  # after keep-all and the 2 random starts
    one_flip = [np.any((res.masks[:3 + i] != m).sum(axis=1) == 1) for i, m in enumerate(later)]
    assert np.mean(one_flip) >= 0.8

