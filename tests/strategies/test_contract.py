"""The strategy contract, checked against every registered strategy.

The suite is parametrized over ``STRATEGIES.names()`` at collection time, so a strategy
registered later (a built-in or a plug-in installed through the ``headrepair.strategies``
entry point) is tested the moment it is registered, with its default options unless
``FAST_OPTIONS`` lists cheaper ones for it.

Contract: never exceeds the budget, asks exactly ``n`` valid ``bool`` masks, deterministic
for a seed, works for batch sizes 1 and > 1, resumes after an interruption without paying
again for an evaluation, survives failed (NaN) evaluations; and, for the strategies listed
in ``EXPECTED_TO_BEAT_RANDOM``, a better median final hypervolume than random search on a
synthetic problem with learnable structure.

The contract problem offers (noisy) head sensitivities, so strategies that ask for them are
held to the same contract, sensitivity calls counted in the budget; on a problem without
them every strategy either runs or refuses at setup with ``StrategyNotApplicable``.
"""

from __future__ import annotations

import numpy as np
import pytest

from framework.loop import OptimizationResult, RunProgress, optimize
from framework.problem import Problem
from framework.registry import PROBLEMS, STRATEGIES, option_names
from framework.space import as_masks
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy, StrategyNotApplicable

NAMES = STRATEGIES.names()

# Cheaper settings for the strategies whose defaults are sized for real runs; any other
# strategy (plug-ins included) runs with its defaults.
FAST_OPTIONS: dict[str, dict] = {
    "qnehvi": {"num_restarts": 1, "raw_samples": 32, "mc_samples": 16, "fit_maxiter": 30},
    "qnparego": {"num_restarts": 1, "raw_samples": 32, "mc_samples": 16, "fit_maxiter": 30},
    "fasp": {"alphas": (0.1, 0.2, 0.3, 0.4, 0.5), "gammas": (0.0, 0.2, 0.4), "min_sweep": 3},
    "surrogate-sa": {"n_chains": 8, "n_steps": 100,
                     "surrogate_options": {"n_members": 2, "hidden": (32,), "max_epochs": 60}},
}

# Which strategies must beat random search (median final hypervolume, 5 seeds, budget 40,
# batch 4, rho-MNK N=20 K=1 rho=-0.5, every pruning ratio allowed), and why:
EXPECTED_TO_BEAT_RANDOM = {
    # GP models of a K=1 landscape are accurate from a few dozen points; expected improvement
    # then picks masks on the front instead of anywhere.
    "qnehvi": "GP per objective + hypervolume improvement exploits the low epistasis",
    "qnparego": "GP per objective + random Chebyshev scalarizations exploit the low epistasis",
    # With K=1 a single-bit knock-out measures most of a bit's effect, so ranking bits by it
    # and pruning the best ones lands near the front.
    "fasp": "single-bit knock-outs measure nearly additive effects",
    # Three generations of rank-and-crowding selection already push the population towards
    # the front at this budget (measured: median 0.62 vs 0.58).
    "nsga2": "selection and recombination of non-dominated masks",
}
# Not expected here: ``random`` (the floor itself); ``surrogate-sa`` samples its design and
# moves at low pruning ratios (built for LLM landscapes where random pruning is costly), so
# on this landscape, whose front spans all ratios, it is not better than random at budget 40
# with the test's small ensemble (measured median 0.56 vs 0.58); plug-ins: unknown.

BUDGET = 24


def make_strategy(name: str) -> Strategy:
    options = FAST_OPTIONS.get(name, {})
    valid = option_names(STRATEGIES.get(name).factory)
    if valid is not None:  # a renamed option must not break the whole suite (test_fast_options_are_valid says)
        options = {k: v for k, v in options.items() if k in valid}
    return STRATEGIES.create(name, **options)


def contract_problem(sensitivities: bool = True) -> Problem:
    """d=16 with 2 protected bits and at most 8 pruned: constraints that a careless strategy breaks;
    noisy head sensitivities unless ``sensitivities=False``."""
    return PROBLEMS.create("rho-mnk", n_bits=16, k=1, rho=-0.5, seed=0, max_pruned_fraction=0.5, protected=[1, 6],
                           sensitivity_noise=0.5 if sensitivities else None)


class CheckedStrategy(Strategy):
    """Passes everything to ``inner`` and checks what it asks: exactly ``n`` valid bool masks."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.asked: list[np.ndarray] = []
        self.told_keys: set[bytes] = set()
        self.repeats = 0

    def setup(self, problem: ProblemInfo, budget: int, rng: np.random.Generator) -> None:
        super().setup(problem, budget, rng)
        self.inner.setup(problem, budget, rng)
        self.requested: list[np.ndarray] = []

    def sensitivity_request(self):
        req = self.inner.sensitivity_request()
        if req is not None:
            assert isinstance(req, np.ndarray) and req.dtype == np.bool_ and req.shape == (self.problem.space.dim,)
            self.requested.append(req.copy())
        return req

    def tell_sensitivities(self, sensitivities) -> None:
        assert np.array_equal(sensitivities.mask, self.requested[-1])  # the answer to the last request
        self.inner.tell_sensitivities(sensitivities)

    def ask(self, n: int) -> np.ndarray:
        masks = self.inner.ask(n)
        assert isinstance(masks, np.ndarray) and masks.dtype == np.bool_, f"asked {type(masks)} {masks.dtype}"
        assert masks.shape == (n, self.problem.space.dim), f"asked {masks.shape} for n={n}"
        assert self.problem.space.is_valid(masks).all(), "asked masks that break the space's constraints"
        self.repeats += sum(m.tobytes() in self.told_keys for m in masks)
        self.asked.append(masks.copy())
        return masks

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        self.told_keys.update(m.tobytes() for m in masks)
        self.inner.tell(masks, values)

    def options(self) -> dict:
        return self.inner.options()


class FlakyProblem(Problem):
    """A rho-MNK problem whose evaluation fails (NaN row) for about a quarter of the masks,
    the keep-all mask included: ``sum of pruned indices % 4 == 0``."""

    name = "flaky-rho-mnk"

    def __init__(self, inner: Problem) -> None:
        self.inner = inner
        self.space, self.objective_names = inner.space, inner.objective_names
        self.ref_point, self.bounds = inner.ref_point, inner.bounds

    @property
    def has_sensitivities(self) -> bool:
        return self.inner.has_sensitivities

    def _sensitivities(self, mask: np.ndarray, split: str):
        return self.inner.sensitivities(mask, split)

    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray:
        values = self.inner.evaluate(masks, split)
        pruned_sum = (~as_masks(masks, self.space.dim) * np.arange(self.space.dim)).sum(axis=1)
        values[pruned_sum % 4 == 0] = np.nan
        return values

    def describe(self) -> dict:
        return {"inner": self.inner.describe(), "fails": "pruned index sum % 4 == 0"}


class Interrupt(Exception):
    pass


def _interrupt_after(k: int):
    def callback(state: RunProgress) -> None:
        if state.n_evaluations >= k:
            raise Interrupt
    return callback


def _run(name: str, problem: Problem, budget: int = BUDGET, **kw) -> OptimizationResult:
    return optimize(problem, make_strategy(name), budget, strategy_name=name, **kw)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", sorted(set(FAST_OPTIONS) & set(NAMES)))
def test_fast_options_are_valid(name):
    valid = option_names(STRATEGIES.get(name).factory)
    assert valid is None or set(FAST_OPTIONS[name]) <= set(valid), \
        f"FAST_OPTIONS[{name!r}] has options the strategy no longer takes: {set(FAST_OPTIONS[name]) - set(valid)}"


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_spends_exactly_the_budget_with_valid_masks(name, batch_size):
    problem = contract_problem()
    checked = CheckedStrategy(make_strategy(name))
    res = optimize(problem, checked, BUDGET, batch_size=batch_size, seed=1, strategy_name=name)
    assert res.budget_spent == BUDGET and res.stop_reason == "budget"
    assert res.n_sensitivity_calls == len({m.tobytes() for m in checked.requested}) < BUDGET
    assert len(res.hv_curve) == BUDGET and np.all(np.diff(res.hv_curve) >= 0)
    assert problem.space.is_valid(res.masks).all()
    assert len({m.tobytes() for m in res.masks}) == res.n_evaluations  # every evaluation a distinct mask
    sizes = [len(a) for a in checked.asked]
    assert all(s <= batch_size for s in sizes) and sizes[0] == min(batch_size, res.n_evaluations)
    # "prefer masks not already told": re-asks are free, but a strategy must not live on them
    assert checked.repeats <= sum(sizes) // 2, f"{checked.repeats} of {sum(sizes)} asked masks were already told"


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name):
    problem = contract_problem()
    a = _run(name, problem, batch_size=3, seed=7)
    b = _run(name, problem, batch_size=3, seed=7)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.sensitivity_masks, b.sensitivity_masks)


@pytest.mark.parametrize("name", NAMES)
def test_resumes_without_paying_again(name, tmp_path):
    problem = contract_problem()
    fingerprint = problem.fingerprint()
    with EvaluationStore(tmp_path / "runs.sqlite") as store:
        with pytest.raises(Interrupt):
            _run(name, problem, batch_size=4, seed=3, store=store, run_id="r1", callbacks=[_interrupt_after(12)])
        paid_before = store.count(fingerprint)
        sens_before = len(store.sensitivity_trials("r1"))
        assert 12 <= paid_before + sens_before < BUDGET
        resumed = _run(name, problem, batch_size=4, seed=3, store=store, run_id="r1")
        n_sens = len(store.sensitivity_trials("r1"))
        assert store.count(fingerprint) + n_sens == BUDGET  # nothing evaluated twice
        assert store._db.execute("SELECT COUNT(*) FROM sensitivities").fetchone()[0] == n_sens
    assert resumed.budget_spent == BUDGET
    assert resumed.n_cache_hits == paid_before
    assert resumed.n_evaluations - resumed.n_cache_hits + paid_before + n_sens == BUDGET
    uninterrupted = _run(name, problem, batch_size=4, seed=3)
    np.testing.assert_array_equal(resumed.masks, uninterrupted.masks)
    np.testing.assert_array_equal(resumed.sensitivity_masks, uninterrupted.sensitivity_masks)
    np.testing.assert_array_equal(resumed.front_values, uninterrupted.front_values)


@pytest.mark.parametrize("name", NAMES)
def test_survives_failed_evaluations(name):
    problem = FlakyProblem(contract_problem())
    res = _run(name, problem, batch_size=4, seed=2)
    assert res.budget_spent == BUDGET and res.stop_reason == "budget"
    failed = ~np.all(np.isfinite(res.values), axis=1)
    assert failed.any() and not failed.all()


@pytest.mark.parametrize("name", NAMES)
def test_runs_or_refuses_clearly_without_sensitivities(name):
    problem = contract_problem(sensitivities=False)
    try:
        res = _run(name, problem, batch_size=4, seed=2)
    except StrategyNotApplicable as exc:
        assert "sensitivities" in str(exc)
        return
    assert res.n_evaluations == BUDGET and res.n_sensitivity_calls == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(EXPECTED_TO_BEAT_RANDOM) & set(NAMES)))
def test_beats_random_on_learnable_structure(name):
    def hv(strategy_name: str) -> float:
        values = []
        for seed in range(5):
            problem = PROBLEMS.create("rho-mnk", n_bits=20, k=1, rho=-0.5, seed=seed)
            values.append(_run(strategy_name, problem, budget=40, batch_size=4, seed=seed).hypervolume)
        return float(np.median(values))

    ours, floor = hv(name), hv("random")
    assert ours > floor, f"{name}: median hypervolume {ours:.4f} <= random's {floor:.4f}"
