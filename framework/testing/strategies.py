"""The strategy contract suite, and the problems and wrappers it checks strategies with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from framework.loop import RunProgress, optimize
from framework.problem import Problem
from framework.registry import PROBLEMS, STRATEGIES, RegistryError, option_names
from framework.results import OptimizationResult
from framework.space import as_masks
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy, StrategyNotApplicable
from framework.testing.parametrize import _names_or_fail, _parametrize


def contract_problem(sensitivities: bool = True) -> Problem:
    """The strategy contract's problem: rho-MNK, d=16 with 2 protected bits and at most 8 pruned
    (constraints that a careless strategy breaks); noisy head sensitivities unless
    ``sensitivities=False``."""
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
    """A problem whose evaluation fails (NaN row) for about a quarter of the masks, the keep-all
    mask included: ``sum of pruned indices % 4 == 0``."""

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


class _Interrupt(Exception):
    pass


def _interrupt_after(k: int):
    def callback(state: RunProgress) -> None:
        if state.n_evaluations >= k:
            raise _Interrupt
    return callback


class StrategyContractSuite:
    """The strategy contract, checked for every name in :attr:`strategy_names`.

    Class attributes a subclass sets:

    * ``strategy_names``: registered strategy names to check (required);
    * ``fast_options``: ``{name: {option: value}}``, cheaper settings for strategies whose
      defaults are sized for real runs (any other runs with its defaults); an option the
      strategy does not take fails ``test_fast_options_are_valid`` but not the others;
    * ``expected_to_beat_random``: ``{name: reason}``, the strategies that must reach a better
      median final hypervolume than random search (5 seeds, budget 40, batch 4, rho-MNK N=20
      K=1 rho=-0.5, every pruning ratio allowed); a ``slow`` test.

    Contract: never exceeds the budget, asks exactly ``n`` valid ``bool`` masks, deterministic
    for a seed, works for batch sizes 1 and > 1, resumes after an interruption without paying
    again for an evaluation, survives failed (NaN) evaluations.  The contract problem
    (:func:`contract_problem`) offers noisy head sensitivities, so strategies that ask for them
    are held to the same contract, sensitivity calls counted in the budget; on a problem
    without them every strategy either runs or refuses at setup with
    :class:`~framework.strategy.StrategyNotApplicable`.
    """

    strategy_names: ClassVar[Sequence[str]] = ()
    fast_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    expected_to_beat_random: ClassVar[Mapping[str, str]] = {}
    budget: ClassVar[int] = 24

    def pytest_generate_tests(self, metafunc) -> None:
        names = _names_or_fail(self, "strategy_names")
        _parametrize(metafunc, "strategy_name", names)
        _parametrize(metafunc, "strategy_with_fast_options", sorted(set(self.fast_options) & set(names)))
        _parametrize(metafunc, "strategy_expected_to_beat_random",
                     sorted(set(self.expected_to_beat_random) & set(names)))

    # ------------------------------------------------------------------ helpers
    def make_strategy(self, name: str) -> Strategy:
        """The strategy ``name`` with its ``fast_options`` (those it still takes)."""
        options = dict(self.fast_options.get(name, {}))
        valid = option_names(STRATEGIES.get(name).factory)
        if valid is not None:  # a renamed option must not break the whole suite (test_fast_options_are_valid says)
            options = {k: v for k, v in options.items() if k in valid}
        return STRATEGIES.create(name, **options)

    def run_strategy(self, name: str, problem: Problem, budget: int | None = None, **kw) -> OptimizationResult:
        return optimize(problem, self.make_strategy(name), self.budget if budget is None else budget,
                        strategy_name=name, **kw)

    # -------------------------------------------------------------------- tests
    def test_is_registered_and_loads(self, strategy_name):
        try:
            entry = STRATEGIES.get(strategy_name)
        except RegistryError as exc:
            pytest.fail(f"strategy {strategy_name!r}: {exc}")
        assert isinstance(self.make_strategy(strategy_name), Strategy), f"{entry.factory} does not build a Strategy"

    def test_fast_options_are_valid(self, strategy_with_fast_options):
        name = strategy_with_fast_options
        valid = option_names(STRATEGIES.get(name).factory)
        assert valid is None or set(self.fast_options[name]) <= set(valid), \
            f"fast_options[{name!r}] has options the strategy no longer takes: " \
            f"{set(self.fast_options[name]) - set(valid)}"

    @pytest.mark.parametrize("batch_size", [1, 5])
    def test_spends_exactly_the_budget_with_valid_masks(self, strategy_name, batch_size):
        name, budget = strategy_name, self.budget
        problem = contract_problem()
        checked = CheckedStrategy(self.make_strategy(name))
        res = optimize(problem, checked, budget, batch_size=batch_size, seed=1, strategy_name=name)
        assert res.budget_spent == budget and res.stop_reason == "budget"
        assert res.n_sensitivity_calls == len({m.tobytes() for m in checked.requested}) < budget
        assert len(res.hv_curve) == budget and np.all(np.diff(res.hv_curve) >= 0)
        assert problem.space.is_valid(res.masks).all()
        assert len({m.tobytes() for m in res.masks}) == res.n_evaluations  # every evaluation a distinct mask
        sizes = [len(a) for a in checked.asked]
        assert all(s <= batch_size for s in sizes) and sizes[0] == min(batch_size, res.n_evaluations)
        # "prefer masks not already told": re-asks are free, but a strategy must not live on them
        assert checked.repeats <= sum(sizes) // 2, f"{checked.repeats} of {sum(sizes)} asked masks were already told"

    def test_deterministic_for_a_seed(self, strategy_name):
        problem = contract_problem()
        a = self.run_strategy(strategy_name, problem, batch_size=3, seed=7)
        b = self.run_strategy(strategy_name, problem, batch_size=3, seed=7)
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.sensitivity_masks, b.sensitivity_masks)

    def test_asks_while_pending_only_if_the_order_of_tells_does_not_matter(self, strategy_name):
        """A strategy that declares ``asks_while_pending`` is asked again before its batches were told,
        then told them in the order they arrive (``--executor ray``): what it asks must not depend on
        that order.  Skipped for a strategy that waits for each batch (the default)."""
        if not getattr(self.make_strategy(strategy_name), "asks_while_pending", False):
            pytest.skip(f"{strategy_name} waits for each batch (asks_while_pending is False)")
        problem = contract_problem(sensitivities=False)

        def asks(in_order: bool) -> np.ndarray:
            s = self.make_strategy(strategy_name)
            s.setup(ProblemInfo.of(problem), self.budget, np.random.default_rng(3))
            a, b = s.ask(4), s.ask(4)   # two batches pending, none told
            for m in ((a, b) if in_order else (b, a)):
                s.tell(m, problem.evaluate(m))
            return np.vstack([a, b, s.ask(4)])

        np.testing.assert_array_equal(asks(True), asks(False))

    def test_resumes_without_paying_again(self, strategy_name, tmp_path):
        name, budget = strategy_name, self.budget
        problem = contract_problem()
        fingerprint = problem.fingerprint()
        with EvaluationStore(tmp_path / "runs.sqlite") as store:
            with pytest.raises(_Interrupt):
                self.run_strategy(name, problem, batch_size=4, seed=3, store=store, run_id="r1",
                                  callbacks=[_interrupt_after(12)])
            paid_before = store.count(fingerprint)
            sens_before = len(store.sensitivity_trials("r1"))
            assert 12 <= paid_before + sens_before < budget
            resumed = self.run_strategy(name, problem, batch_size=4, seed=3, store=store, run_id="r1")
            n_sens = len(store.sensitivity_trials("r1"))
            assert store.count(fingerprint) + n_sens == budget  # nothing evaluated twice
            assert store._db.execute("SELECT COUNT(*) FROM sensitivities").fetchone()[0] == n_sens
        assert resumed.budget_spent == budget
        # what the run paid before the interruption is its own, received again (not a cache hit)
        assert resumed.n_resumed == paid_before and resumed.n_cache_hits == 0
        assert resumed.n_evaluations - resumed.n_resumed + paid_before + n_sens == budget
        uninterrupted = self.run_strategy(name, problem, batch_size=4, seed=3)
        np.testing.assert_array_equal(resumed.masks, uninterrupted.masks)
        np.testing.assert_array_equal(resumed.sensitivity_masks, uninterrupted.sensitivity_masks)
        np.testing.assert_array_equal(resumed.front_values, uninterrupted.front_values)

    def test_survives_failed_evaluations(self, strategy_name):
        problem = FlakyProblem(contract_problem())
        res = self.run_strategy(strategy_name, problem, batch_size=4, seed=2)
        assert res.budget_spent == self.budget and res.stop_reason == "budget"
        failed = ~np.all(np.isfinite(res.values), axis=1)
        assert failed.any() and not failed.all()

    def test_runs_or_refuses_clearly_without_sensitivities(self, strategy_name):
        problem = contract_problem(sensitivities=False)
        try:
            res = self.run_strategy(strategy_name, problem, batch_size=4, seed=2)
        except StrategyNotApplicable as exc:
            assert "sensitivities" in str(exc)
            return
        assert res.n_evaluations == self.budget and res.n_sensitivity_calls == 0

    @pytest.mark.slow
    def test_beats_random_on_learnable_structure(self, strategy_expected_to_beat_random):
        name = strategy_expected_to_beat_random

        def hv(strategy_name: str) -> float:
            values = []
            for seed in range(5):
                problem = PROBLEMS.create("rho-mnk", n_bits=20, k=1, rho=-0.5, seed=seed)
                values.append(self.run_strategy(strategy_name, problem, budget=40, batch_size=4, seed=seed).hypervolume)
            return float(np.median(values))

        ours, floor = hv(name), hv("random")
        assert ours > floor, f"{name}: median hypervolume {ours:.4f} <= random's {floor:.4f}"
