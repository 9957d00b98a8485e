"""The surrogate-SA strategy: its initial design, the ask/tell contract (budget, validity,
novelty, NaN rows, determinism), both modes, and that it beats random search."""

from __future__ import annotations

import numpy as np
import pytest

from framework.history import pack_mask
from framework.loop import optimize
from framework.problem import Problem
from framework.registry import PROBLEMS, STRATEGIES, SURROGATES
from framework.space import HeadSpace
from framework.strategy import ProblemInfo
from strategies.surrogate_sa import SurrogateSA, SurrogateSAOneshot

# small surrogate and annealing settings: the tests check behaviour, not the real job's sizes
# the MLP-ensemble composition (the default before the primary-strategy benchmark, and the
# one-shot mode's surrogate), small; and the default composition (GP + EHVI), small
FAST = {"surrogate": "mlp", "acquisition": "scalarized",
        "surrogate_options": {"n_members": 3, "hidden": (32,), "max_epochs": 80, "patience": 10},
        "n_chains": 12, "n_steps": 120}
FAST_DEFAULT = {"surrogate_options": {"max_iterations": 50}, "n_chains": 12, "n_steps": 120}


@pytest.fixture(scope="module", autouse=True)
def _mlp_registered():
    if "mlp" not in SURROGATES:
        pytest.skip("surrogate 'mlp' is not registered: run `pip install -e . --no-deps` after adding its entry point")


class HeadToy(Problem):
    """Head-structured test problem: a bias-like objective with additive and in-layer pairwise
    effects, and a perplexity-like one, log-additive with in-layer interactions (1.0 unpruned)."""

    name = "head-toy"

    def __init__(self, space: HeadSpace, seed: int = 0, fail_every: int = 0) -> None:
        rng = np.random.default_rng(seed)
        d = space.dim
        same_layer = space.layer_of[:, None] == space.layer_of[None, :]
        self.space = space
        self.objective_names = ("bias", "ppl")
        self.a = rng.normal(-0.03, 0.08, d)
        self.B = np.triu(rng.normal(0, 0.06, (d, d)) * same_layer * (rng.random((d, d)) < 0.5), 1)
        self.c = np.abs(rng.normal(0, 0.05, d)) * rng.choice([0.2, 1.0, 4.0], d)
        self.C = np.triu(np.abs(rng.normal(0, 0.03, (d, d))) * same_layer, 1)
        self.bounds = np.array([[0.0, 1.0], [1.0, 2.0]])
        self.ref_point = np.array([1.0, 2.0])
        self.fail_every = fail_every
        self.calls = 0

    def _evaluate(self, masks, split):
        p = (~masks).astype(float)
        f0 = 0.8 * np.abs(1.0 + p @ self.a + np.einsum("ni,ij,nj->n", p, self.B, p))
        f1 = np.exp(p @ self.c + np.einsum("ni,ij,nj->n", p, self.C, p))
        out = np.stack([f0, f1], axis=1)
        if self.fail_every:
            for i in range(len(out)):
                self.calls += 1
                if self.calls % self.fail_every == 0:
                    out[i] = np.nan
        return out

    def describe(self):
        return {"fail_every": self.fail_every}


def setup_strategy(problem, budget, seed=0, **options):
    strat = SurrogateSA(**{**FAST, **options})
    strat.setup(ProblemInfo.of(problem), budget, np.random.default_rng(seed))
    return strat


def test_registered_with_documented_options():
    strat = STRATEGIES.create("surrogate-sa", mode="oneshot", cooling="logarithmic")
    assert isinstance(strat, SurrogateSA) and strat.name == "surrogate-sa"
    assert strat.schedule.n_steps == 4000 and strat.schedule.cooling == "logarithmic"
    oneshot = STRATEGIES.create("surrogate-sa-oneshot", cooling="logarithmic")
    assert isinstance(oneshot, SurrogateSAOneshot) and "mode" not in oneshot.options()
    assert {**oneshot.options(), "mode": "oneshot"} == strat.options()  # mode="oneshot" is an alias
    with pytest.raises(TypeError, match="mode"):
        SurrogateSAOneshot(mode="iterative")
    it = SurrogateSA()
    assert it.mode == "iterative" and it.surrogate is None and it.schedule.n_steps == 500
    assert it._surrogate == "gp" and it.acquisition == "ehvi" and strat._surrogate == "mlp"  # None: by mode
    assert it.options()["move_weights"]["kv_swap"] == 0.5
    # options round-trip: what result.json records rebuilds the same strategy
    assert STRATEGIES.create("surrogate-sa", **strat.options()).options() == strat.options()
    for kwargs, match in (({"mode": "twice"}, "mode"), ({"cooling": "slow"}, "cooling"),
                          ({"initial_max_ratio": 0.0}, "initial_max_ratio"), ({"thresholds": (0.3, 0.1)}, "thresholds"),
                          ({"knockout_fraction": 0.8, "group_fraction": 0.5}, "knockout_fraction"),
                          ({"scalarization": "sum"}, "scalarization"), ({"move_weights": {"hop": 1}}, "unknown move"),
                          ({"trust_radius": 0.0}, "trust_radius"), ({"pruned_counts": "normal"}, "pruned_counts")):
        with pytest.raises(ValueError, match=match):
            SurrogateSA(**kwargs)


def test_initial_design_is_low_ratio_and_structure_aware():
    space = HeadSpace(10, 9, 3, max_pruned_fraction=0.5, protected=frozenset({4, 50}))
    strat = setup_strategy(HeadToy(space), budget=100, initial_fraction=0.6, initial_max_ratio=0.05,
                           knockout_fraction=0.4, group_fraction=0.1)
    assert strat.initial_design_size == 60
    design = strat.ask(60)
    assert design.shape == (60, 90) and space.is_valid(design).all()
    assert len({pack_mask(m) for m in design}) == 60
    assert design[0].all()  # the unpruned mask first: the thresholds' baseline
    pruned = (~design).sum(axis=1)
    assert pruned[1:].min() >= 1 and pruned.max() <= round(0.05 * 90)
    singles = design[pruned == 1]
    assert len(singles) >= round(0.4 * 59)
    groups = [row for row in design if (~row).sum() == 3 and len(set(space.kv_group_of[~row])) == 1]
    assert len(groups) >= round(0.1 * 59)
    usage = (~design).sum(axis=0)[~space.protected_mask]
    assert usage.max() - usage.min() <= 3  # heads covered evenly (least used first)


def test_design_left_open_is_wide_without_sensitivities_and_focused_in_oneshot_mode():
    """Options left at None: without head sensitivities the iterative design is random masks over
    pruned counts up to a quarter of the heads, no knock-outs; the one-shot mode keeps its focused
    design (knock-outs and masks of at most 5% of the heads)."""
    space = HeadSpace(10, 9, 3, max_pruned_fraction=0.5)
    wide = setup_strategy(HeadToy(space), budget=100, initial_fraction=0.6).ask(60)
    pruned = (~wide).sum(axis=1)
    assert wide[0].all() and (pruned[1:] >= 1).all() and pruned.max() <= round(0.25 * 90)
    assert pruned.max() > round(0.05 * 90) and (pruned == 1).sum() < 0.3 * 59   # no knock-out phase
    focused = setup_strategy(HeadToy(space), budget=100, initial_fraction=0.6, mode="oneshot").ask(60)
    pruned = (~focused).sum(axis=1)
    assert pruned.max() <= round(0.05 * 90) and (pruned == 1).sum() >= round(0.4 * 59)


@pytest.mark.parametrize("mode", ["iterative", "oneshot"])
def test_loop_spends_the_budget_on_new_valid_masks(mode):
    space = HeadSpace(6, 4, 2, max_pruned_fraction=0.4, protected=frozenset({0, 13}))
    problem = HeadToy(space, seed=1, fail_every=7)  # NaN rows must be survived
    strat = STRATEGIES.create("surrogate-sa", mode=mode, **FAST)
    result = optimize(problem, strat, 40, batch_size=6, seed=3)
    assert result.n_evaluations == 40 and result.stop_reason == "budget"
    assert len({pack_mask(m) for m in result.masks}) == 40
    assert space.is_valid(result.masks).all()
    assert np.isnan(result.values).any(axis=1).sum() >= 4
    n_init = strat.initial_design_size
    assert result.masks[0].all()
    assert len(strat.timings) == (1 if mode == "oneshot" else -(-(40 - n_init) // 6))


def test_oneshot_anneals_once_and_respects_its_budget():
    space = HeadSpace(6, 4, 2)
    strat = setup_strategy(HeadToy(space, seed=2), budget=30, mode="oneshot")
    problem = HeadToy(space, seed=2)
    asked = []
    while len(asked) < 30:
        masks = strat.ask(min(4, 30 - len(asked)))
        asked.extend(masks)
        strat.tell(masks, problem.evaluate(masks))
    assert len(asked) == 30 and len({pack_mask(m) for m in asked}) == 30
    assert len(strat.timings) == 1  # one fit, one annealing run
    assert strat._queue is not None


def test_same_seed_same_masks():
    space = HeadSpace(6, 4, 2)
    runs = [optimize(HeadToy(space, seed=4), STRATEGIES.create("surrogate-sa", **FAST), 24, batch_size=5, seed=9)
            for _ in range(2)]
    assert np.array_equal(runs[0].masks, runs[1].masks)


def test_three_objectives_and_a_plain_binary_space():
    problem = PROBLEMS.create("rho-mnk", n_bits=14, k=1, rho=0.0, n_objectives=3, seed=0)
    result = optimize(problem, STRATEGIES.create("surrogate-sa", **FAST), 30, batch_size=6, seed=0)
    assert result.n_evaluations == 30 and len({pack_mask(m) for m in result.masks}) == 30


def test_round_picks_improve_the_predicted_front():
    space = HeadSpace(6, 4, 2)
    problem = HeadToy(space, seed=5)
    strat = setup_strategy(problem, budget=60, initial_fraction=0.5)
    design = strat.ask(30)
    strat.tell(design, problem.evaluate(design))
    picks = strat.ask(6)
    assert len(strat.timings) == 1 and set(strat.timings[0]) == {"fit", "anneal", "select"}
    known = {pack_mask(m) for m in design}
    assert not known & {pack_mask(m) for m in picks}
    assert space.is_valid(picks).all() and len({pack_mask(m) for m in picks}) == 6


@pytest.mark.slow
@pytest.mark.parametrize("problem_name", ["head-toy", "rho-mnk"])
def test_beats_random_search_on_median_hypervolume(problem_name):
    """Same budget and seeds: surrogate-SA's median final hypervolume beats random search's."""
    hv = {"surrogate-sa": [], "random": []}
    for seed in range(5):
        problem = HeadToy(HeadSpace(6, 4, 2), seed=10 + seed) if problem_name == "head-toy" \
            else PROBLEMS.create("rho-mnk", n_bits=24, k=2, rho=0.0, seed=seed)
        for name, strat in (("surrogate-sa", STRATEGIES.create("surrogate-sa", **FAST_DEFAULT)),
                            ("random", STRATEGIES.create("random"))):
            hv[name].append(optimize(problem, strat, 64, batch_size=8, seed=seed).hypervolume)
    print(problem_name, {k: np.round(v, 4).tolist() for k, v in hv.items()})
    assert np.median(hv["surrogate-sa"]) > np.median(hv["random"])


def test_a_small_space_is_exhausted_without_stalling():
    """32 masks in all: SA soon proposes only known masks; the fallback must find the rest."""
    problem = PROBLEMS.create("rho-mnk", n_bits=5, k=1, seed=0)
    result = optimize(problem, STRATEGIES.create("surrogate-sa", **FAST), 32, batch_size=4, seed=0)
    assert result.n_evaluations == 32 and result.stop_reason == "budget"


def test_diagnostics_report_surrogate_quality_out_of_sample():
    problem = PROBLEMS.create("rho-mnk", n_bits=30, k=1, seed=2, max_pruned_fraction=0.5)
    strategy = SurrogateSA(**FAST)
    optimize(problem, strategy, 40, batch_size=8, seed=0)
    diag = strategy.diagnostics()
    assert diag["model_rounds"] >= 2 and diag["seconds"]["fit"] > 0
    oos = diag["picked_masks_out_of_sample"]
    assert oos["n"] >= 4 and set(oos) == {"n", *problem.objective_names}
    for name in problem.objective_names:
        assert set(oos[name]) == {"r2", "kendall_tau", "coverage_1sd", "coverage_2sd", "mean_abs_z"}
        assert -1.0 <= diag["k_fold_on_all_evaluations"][name]["kendall_tau"] <= 1.0
    assert diag["k_fold_on_all_evaluations"]["n"] == 40
