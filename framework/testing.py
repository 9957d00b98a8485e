"""Contract suites that any repository can run: for strategies, surrogates and problems.

Like Optuna's ``optuna.testing``, the checks that every built-in must pass are pytest test
classes here, so that a plug-in's own repository runs exactly the same ones.  Subclass a suite
in a test file (its name must start with ``Test``), say which registered names to check and,
where the defaults are sized for real runs, cheaper options::

    from framework.testing import StrategyContractSuite

    class TestMyStrategy(StrategyContractSuite):
        strategy_names = ["greedy-flip"]
        fast_options = {}

Every test of the suite is then parametrized over those names (test ids carry the name, so
``-k greedy-flip`` selects one).  The names are looked up in the registries
(:data:`~framework.registry.STRATEGIES`, :data:`~framework.registry.SURROGATES`,
:data:`~framework.registry.PROBLEMS`), so the package that provides them must be installed
(its entry point registered) or registered in the test module with ``Registry.register``.

* :class:`StrategyContractSuite`: never exceeds the budget, asks exactly ``n`` valid ``bool``
  masks, deterministic for a seed, batch sizes 1 and > 1, resumes after an interruption without
  paying twice, survives failed (NaN) evaluations, runs or refuses clearly without head
  sensitivities; the strategies named in ``expected_to_beat_random`` must beat random search
  on a problem with learnable structure (a ``slow`` test).
* :class:`SurrogateContractSuite`: keyword-only options with defaults and a ``seed``, the
  ``fit``/``predict``/``predict_torch`` shapes and types, one objective, determinism, non-finite
  rows dropped, clear errors, and a fit clearly better than predicting the mean.
* :class:`AcquisitionContractSuite`: ``setup``/``energy``/``score``/``observed``/``select`` shapes
  and types with a real fitted surrogate, vectorized scoring equal to row-by-row scoring,
  determinism for a seed, clear errors for bad options and ``n_members < 1``, and ``options()``
  that round-trip through the registry.
* :class:`ProblemContractSuite`: consistent declarations (space, objective names, reference
  point, bounds, splits), ``float[n, m]`` values for batches of 1 and more, determinism,
  finite values for the keep-all mask, splits, clear errors for bad masks and splits, a stable
  fingerprint that changes with the settings, JSON-able ``describe`` and infos, and
  sensitivities consistent with the evaluation.

The ``slow`` test (``test_beats_random_on_learnable_structure``) is deselected by ``-m "not slow"``;
load this module as a plug-in (``pytest_plugins = ["framework.testing"]`` in a ``conftest.py``)
to have the marker registered (no unknown-mark warning, ``--strict-markers`` passes).

This module imports pytest (a test extra: ``pip install 'headrepair[test]'``); nothing else in
``framework`` imports it.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("framework.testing holds pytest contract suites and needs pytest, which is a test extra of "
                      "headrepair: install it with `pip install 'headrepair[test]'` (or `pip install pytest`)"
                      ) from exc

import numpy as np

from framework.loop import OptimizationResult, RunProgress, optimize
from framework.problem import SEARCH, NoSensitivities, Problem, Sensitivities
from framework.registry import ACQUISITIONS, PROBLEMS, STRATEGIES, SURROGATES, RegistryError, option_names
from framework.space import HeadSpace, as_masks
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy, StrategyNotApplicable
from framework.surrogate import Surrogate

__all__ = [
    "StrategyContractSuite", "SurrogateContractSuite", "ProblemContractSuite", "AcquisitionContractSuite",
    "CheckedStrategy", "acquisition_state", "FlakyProblem", "contract_problem", "structured_problem",
]


def pytest_configure(config) -> None:
    """Registers the ``slow`` marker when this module is loaded as a pytest plug-in
    (``pytest_plugins = ["framework.testing"]`` in a ``conftest.py``, or ``-p framework.testing``)."""
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _parametrize(metafunc, argname: str, values: Sequence[str], scope: str | None = None) -> None:
    if argname in metafunc.fixturenames:
        metafunc.parametrize(argname, list(values), ids=[str(v) for v in values], scope=scope)


def _names_or_fail(suite: object, attr: str) -> list[str]:
    names = list(getattr(suite, attr) or ())
    if not names:
        raise pytest.UsageError(f"{type(suite).__name__}: set `{attr}` to the registered names to check, "
                                f"e.g. {attr} = ['my-name']")
    return names


# =============================================================================== strategies
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


# =============================================================================== surrogates
SURROGATE_DIM = 60


def structured_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``bool[n, 60]`` and two objectives with learnable structure.

    ``y0``: additive head effects plus a few strong pairwise interactions; ``y1``: a saturating
    function of other additive effects plus one interaction.  The weights are fixed (seed 0),
    ``seed`` only draws the masks (pruning ratio 5-50% per mask).
    """
    D = SURROGATE_DIM
    weights = np.random.default_rng(0)
    w0, w1 = weights.normal(size=D), np.abs(weights.normal(size=D))
    pairs, strength = weights.choice(D, size=(6, 2), replace=False), weights.normal(scale=2.0, size=6)
    rng = np.random.default_rng(seed)
    X = rng.random((n, D)) >= rng.uniform(0.05, 0.5, size=(n, 1))
    pruned = (~X).astype(float)
    y0 = pruned @ w0 + (strength * pruned[:, pairs[:, 0]] * pruned[:, pairs[:, 1]]).sum(axis=1)
    y1 = np.log1p(pruned @ w1) + 0.5 * pruned[:, 0] * pruned[:, 1]
    return X, np.stack([y0, y1], axis=1)


_FITTED: dict[tuple[type, str], Surrogate] = {}


class SurrogateContractSuite:
    """The surrogate contract, checked for every name in :attr:`surrogate_names`.

    Class attributes a subclass sets:

    * ``surrogate_names``: registered surrogate names to check (required);
    * ``surrogate_options``: ``{name: {option: value}}`` used for the fits (default: none, i.e.
      the surrogate's defaults, which is what strategies get); the constructor check always
      builds the surrogate without options.

    Data: :func:`structured_problem`, 200 training and 100 test masks of 60 heads.  The fit on
    the 200 points is made once per suite class and name.
    """

    surrogate_names: ClassVar[Sequence[str]] = ()
    surrogate_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def pytest_generate_tests(self, metafunc) -> None:
        _parametrize(metafunc, "surrogate_name", _names_or_fail(self, "surrogate_names"))

    def make_surrogate(self, name: str, **kw) -> Surrogate:
        return SURROGATES.create(name, **{**self.surrogate_options.get(name, {}), **kw})

    @pytest.fixture(scope="class")
    @classmethod
    def surrogate_train_test(cls):
        X, Y = structured_problem(300, seed=1)
        return (X[:200], Y[:200]), (X[200:], Y[200:])

    @pytest.fixture
    def fitted_surrogate(self, surrogate_name, surrogate_train_test):
        """The surrogate with its options fitted on the 200 training points (once per suite class)."""
        key = (type(self), surrogate_name)
        if key not in _FITTED:
            (X, Y), _ = surrogate_train_test
            _FITTED[key] = self.make_surrogate(surrogate_name, seed=0).fit(X, Y)
        return _FITTED[key]

    # -------------------------------------------------------------------- tests
    def test_constructor_is_keyword_only_with_defaults_and_a_seed(self, surrogate_name):
        name = surrogate_name
        factory = SURROGATES.get(name).factory
        params = [p for p in inspect.signature(factory).parameters.values() if p.name != "self"]
        assert "seed" in [p.name for p in params]
        for p in params:
            assert p.kind is p.KEYWORD_ONLY, f"{name}: option {p.name!r} must be keyword-only"
            assert p.default is not p.empty, f"{name}: option {p.name!r} needs a default"
        assert isinstance(SURROGATES.create(name), Surrogate)

    def test_fit_returns_self_and_predict_has_the_contract_shapes(self, surrogate_name, surrogate_train_test):
        (X, Y), (X_test, _) = surrogate_train_test
        model = self.make_surrogate(surrogate_name, seed=0)
        assert model.fit(X[:40], Y[:40]) is model
        mean, std = model.predict(X_test[:7])
        for arr in (mean, std):
            assert isinstance(arr, np.ndarray) and arr.shape == (7, 2) and arr.dtype.kind == "f"
            assert np.isfinite(arr).all()
        assert (std >= 0).all()
        empty_mean, empty_std = model.predict(np.zeros((0, SURROGATE_DIM), dtype=bool))
        assert empty_mean.shape == empty_std.shape == (0, 2)

    def test_single_objective_is_supported(self, surrogate_name, surrogate_train_test):
        (X, Y), (X_test, _) = surrogate_train_test
        mean, std = self.make_surrogate(surrogate_name, seed=0).fit(X[:40], Y[:40, :1]).predict(X_test[:5])
        assert mean.shape == std.shape == (5, 1)

    def test_predict_torch_agrees_with_predict_for_float_and_bool_tensors(self, fitted_surrogate,
                                                                          surrogate_train_test):
        import torch

        _, (X_test, _) = surrogate_train_test
        mean, std = fitted_surrogate.predict(X_test)
        for tensor in (torch.from_numpy(X_test).to(torch.float32), torch.from_numpy(X_test)):
            t_mean, t_std = fitted_surrogate.predict_torch(tensor)
            assert t_mean.dtype == t_std.dtype == torch.float32
            assert t_mean.shape == t_std.shape == (len(X_test), 2)
            assert not t_mean.requires_grad and not t_std.requires_grad
            np.testing.assert_allclose(t_mean.numpy(), mean, rtol=1e-4, atol=1e-4 * np.abs(mean).max())
            np.testing.assert_allclose(t_std.numpy(), std, rtol=1e-4, atol=1e-4 * std.max())

    def test_learns_structure_clearly_better_than_predicting_the_mean(self, surrogate_name, fitted_surrogate,
                                                                      surrogate_train_test):
        from scipy.stats import kendalltau

        (_, Y), (X_test, Y_test) = surrogate_train_test
        mean, _ = fitted_surrogate.predict(X_test)
        for j in range(Y.shape[1]):
            sse_model = ((Y_test[:, j] - mean[:, j]) ** 2).sum()
            sse_constant = ((Y_test[:, j] - Y[:, j].mean()) ** 2).sum()  # the training mean, as a fit would give
            r2 = 1 - sse_model / sse_constant
            tau = kendalltau(Y_test[:, j], mean[:, j]).statistic
            assert r2 > 0.6, f"{surrogate_name}: objective {j} R^2 vs the mean predictor {r2:.3f}"
            assert tau > 0.5, f"{surrogate_name}: objective {j} Kendall tau {tau:.3f}"

    def test_same_seed_same_data_gives_the_same_predictions(self, surrogate_name, surrogate_train_test):
        (X, Y), (X_test, _) = surrogate_train_test
        first = self.make_surrogate(surrogate_name, seed=3).fit(X[:60], Y[:60]).predict(X_test)
        second = self.make_surrogate(surrogate_name, seed=3).fit(X[:60], Y[:60]).predict(X_test)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_rows_with_non_finite_values_are_dropped(self, surrogate_name, surrogate_train_test):
        (X, Y), (X_test, _) = surrogate_train_test
        Y_bad = Y[:50].copy()
        Y_bad[[3, 17], 0] = np.nan
        Y_bad[29, 1] = np.inf
        keep = np.isfinite(Y_bad).all(axis=1)
        with_failures = self.make_surrogate(surrogate_name, seed=0).fit(X[:50], Y_bad).predict(X_test)
        clean = self.make_surrogate(surrogate_name, seed=0).fit(X[:50][keep], Y_bad[keep]).predict(X_test)
        for a, b in zip(with_failures, clean, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_refuses_bad_shapes_and_use_before_fit(self, surrogate_name, fitted_surrogate, surrogate_train_test):
        import torch

        D = SURROGATE_DIM
        (X, Y), _ = surrogate_train_test
        fresh = self.make_surrogate(surrogate_name)
        with pytest.raises(RuntimeError, match="not fitted"):
            fresh.predict(X[:2])
        with pytest.raises(ValueError, match="2-D"):
            fresh.fit(X[:20], Y[:20, 0])  # 1-D targets
        with pytest.raises(ValueError, match="same number of rows"):
            fresh.fit(X[:20], Y[:19])
        with pytest.raises(ValueError, match="2-D"):
            fresh.fit(X[:20].reshape(20, 6, 10), Y[:20])
        with pytest.raises(ValueError, match="boolean or 0/1"):
            fresh.fit(np.full((20, D), 2), Y[:20])
        Y_few = Y[:20].copy()
        Y_few[2:] = np.nan
        with pytest.raises(ValueError, match="at least 3 rows with finite Y"):
            fresh.fit(X[:20], Y_few)
        with pytest.raises(ValueError, match=str(D)):
            fitted_surrogate.predict(X[:3, :-1])
        with pytest.raises(ValueError, match=str(D)):
            fitted_surrogate.predict_torch(torch.ones(3, D + 1))


# ================================================================================= problems
def _json_roundtrip(obj: Any, what: str) -> None:
    try:
        json.dumps(obj)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"{what} is not JSON-serializable: {exc}")


class ProblemContractSuite:
    """The problem contract, checked for every name in :attr:`problem_names`.

    Class attributes a subclass sets:

    * ``problem_names``: registered problem names to check (required);
    * ``problem_options``: ``{name: {option: value}}``, cheap settings (small data, a tiny model);
      options that need files built at test time come from :meth:`problem_options_for`, which a
      subclass overrides (it gets a temporary directory per name);
    * ``changed_options``: ``{name: {option: value}}``, settings that change the objective values,
      so the fingerprint must change; default: the next ``seed`` when the problem takes one.

    Each problem is built once per suite class (a class-scoped fixture, closed afterwards) and
    evaluated on a handful of masks: the keep-all mask and three random valid ones.
    """

    problem_names: ClassVar[Sequence[str]] = ()
    problem_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    changed_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: relative tolerance of ``sensitivities(mask).values`` against ``evaluate(mask)``
    sensitivity_values_rtol: ClassVar[float] = 1e-5

    def pytest_generate_tests(self, metafunc) -> None:
        _parametrize(metafunc, "problem_name", _names_or_fail(self, "problem_names"), scope="class")

    # ------------------------------------------------------------------ hooks
    def problem_options_for(self, name: str, workdir: Path) -> dict[str, Any]:
        """Options to build ``name`` with; ``workdir`` is a fresh directory for files the options
        point to.  Default: ``problem_options.get(name, {})``."""
        return dict(self.problem_options.get(name, {}))

    def make_problem(self, name: str, workdir: Path, **overrides: Any) -> Problem:
        return PROBLEMS.create(name, **{**self.problem_options_for(name, workdir), **overrides})

    def changed_options_for(self, name: str, workdir: Path) -> dict[str, Any] | None:
        """Overrides that change the objective values (``None``: none known, the check is skipped)."""
        if name in self.changed_options:
            return dict(self.changed_options[name])
        valid = option_names(PROBLEMS.get(name).factory)
        if valid is None or "seed" in valid:
            return {"seed": int(self.problem_options_for(name, workdir).get("seed", 0)) + 1}
        return None

    # --------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def problem_workdir(cls, problem_name, tmp_path_factory) -> Path:
        return tmp_path_factory.mktemp(re.sub(r"[^\w.-]", "_", problem_name))

    @pytest.fixture(scope="class")
    @classmethod
    def problem(cls, problem_name, problem_workdir):
        problem = cls().make_problem(problem_name, problem_workdir)
        yield problem
        problem.close()

    @pytest.fixture(scope="class")
    @classmethod
    def problem_masks(cls, problem) -> np.ndarray:
        """``bool[4, d]``: the keep-all mask, then three random valid masks (seeded)."""
        space = problem.space
        return np.vstack([space.keep_all(), space.sample(3, np.random.default_rng(0))])

    @pytest.fixture(scope="class")
    @classmethod
    def problem_values(cls, problem, problem_masks) -> np.ndarray:
        """``evaluate(problem_masks)`` on the search split (once per problem)."""
        return problem.evaluate(problem_masks, SEARCH)

    # ----------------------------------------------------------- declarations
    def test_is_registered_and_builds_a_problem(self, problem_name, problem):
        try:
            PROBLEMS.get(problem_name)
        except RegistryError as exc:
            pytest.fail(f"problem {problem_name!r}: {exc}")
        assert isinstance(problem, Problem)

    def test_declarations_are_consistent(self, problem):
        space = problem.space
        assert isinstance(space, HeadSpace)
        assert space.dim == space.n_layers * space.n_heads >= 1
        names = problem.objective_names
        assert isinstance(names, tuple) and all(isinstance(n, str) and n for n in names), names
        assert len(set(names)) == len(names) == problem.n_objectives >= 2, names
        m = problem.n_objectives
        ref, bounds = np.asarray(problem.ref_point), np.asarray(problem.bounds)
        assert ref.shape == (m,) and ref.dtype.kind == "f", f"ref_point {ref!r}: expected float[{m}]"
        assert bounds.shape == (2, m) and bounds.dtype.kind == "f", f"bounds {bounds!r}: expected float[2, {m}]"
        assert np.isfinite(ref).all() and np.isfinite(bounds).all(), (ref, bounds)
        assert (bounds[0] <= bounds[1]).all(), f"bounds: ideal row {bounds[0]} above nadir row {bounds[1]}"
        assert (ref >= bounds[0]).all(), f"ref_point {ref} better than the ideal {bounds[0]}: no hypervolume"

    def test_splits_start_with_search(self, problem):
        splits = problem.splits
        assert isinstance(splits, tuple) and len(splits) >= 1 and all(isinstance(s, str) for s in splits), splits
        assert splits[0] == SEARCH, f"the first split is the one searched and must be {SEARCH!r}: {splits}"
        assert len(set(splits)) == len(splits), splits

    def test_describe_is_json_serializable_and_stable(self, problem):
        settings = problem.describe()
        assert isinstance(settings, dict)
        _json_roundtrip(settings, "describe()")
        assert json.dumps(problem.describe(), sort_keys=True) == json.dumps(settings, sort_keys=True)

    # ------------------------------------------------------------- evaluation
    def test_evaluate_returns_float_values_for_one_and_several_masks(self, problem, problem_masks, problem_values):
        n, m = len(problem_masks), problem.n_objectives
        assert isinstance(problem_values, np.ndarray) and problem_values.dtype.kind == "f"
        assert problem_values.shape == (n, m), f"evaluate gave {problem_values.shape}, expected {(n, m)}"
        for i in (0, n - 1):
            one = problem.evaluate(problem_masks[i:i + 1], SEARCH)
            assert isinstance(one, np.ndarray) and one.dtype.kind == "f" and one.shape == (1, m)
            # a mask's values do not depend on the masks evaluated beside it
            np.testing.assert_allclose(one[0], problem_values[i], rtol=1e-6, atol=1e-12)
        flat = problem.evaluate(problem_masks[-1], SEARCH)  # one mask as bool[d]
        assert flat.shape == (1, m)

    def test_evaluate_with_info_gives_one_json_able_dict_per_mask(self, problem, problem_masks, problem_values):
        values, info = problem.evaluate_with_info(problem_masks, SEARCH)
        np.testing.assert_array_equal(values, problem_values)
        assert isinstance(info, list) and len(info) == len(problem_masks)
        assert all(isinstance(i, dict) for i in info)
        _json_roundtrip(info, "evaluate_with_info(...) info")

    def test_deterministic(self, problem, problem_masks, problem_values):
        np.testing.assert_array_equal(problem.evaluate(problem_masks, SEARCH), problem_values)

    def test_keep_all_is_finite_on_every_split(self, problem):
        keep = problem.space.keep_all()
        for split in problem.splits:
            values = problem.evaluate(keep, split)
            assert values.shape == (1, problem.n_objectives) and np.isfinite(values).all(), (split, values)
            base = problem.baseline(split)
            if base is not None:  # the baseline is the keep-all mask's values
                base = np.asarray(base, dtype=float)
                assert base.shape == (problem.n_objectives,), (split, base)
                np.testing.assert_allclose(base, values[0], rtol=1e-9, err_msg=f"baseline({split!r})")

    def test_every_split_evaluates_and_unknown_splits_raise(self, problem, problem_masks):
        for split in problem.splits:
            values = problem.evaluate(problem_masks, split)
            assert values.shape == (len(problem_masks), problem.n_objectives) and values.dtype.kind == "f", split
        with pytest.raises(ValueError, match="no split"):
            problem.evaluate(problem_masks[:1], "no-such-split")

    def test_masks_of_the_wrong_shape_or_values_raise(self, problem):
        d = problem.space.dim
        for bad in (np.ones((2, d + 1), dtype=bool), np.ones((1, d - 1), dtype=bool),
                    np.ones((1, 2, d), dtype=bool)):
            with pytest.raises(ValueError, match=str(d)):
                problem.evaluate(bad)
        with pytest.raises(ValueError, match="boolean or 0/1"):
            problem.evaluate(np.full((1, d), 2))

    def test_reference_front_when_given(self, problem):
        front = problem.reference_front()
        if front is None:
            return
        front = np.asarray(front, dtype=float)
        assert front.ndim == 2 and front.shape[1] == problem.n_objectives and len(front) >= 1, front.shape
        assert np.isfinite(front).all()

    # ------------------------------------------------------------ fingerprint
    def test_fingerprint_is_stable_and_changes_with_split_and_settings(self, problem_name, problem, problem_workdir,
                                                                       problem_masks, problem_values):
        fp = problem.fingerprint()
        assert isinstance(fp, str) and fp and problem.fingerprint() == fp == problem.fingerprint(SEARCH)
        per_split = [problem.fingerprint(s) for s in problem.splits]
        assert len(set(per_split)) == len(per_split), f"splits share a fingerprint: {per_split}"
        twin = self.make_problem(problem_name, problem_workdir)  # same settings: same fingerprint, same values
        try:
            assert twin.fingerprint() == fp, "a second instance with the same settings has another fingerprint"
            np.testing.assert_array_equal(twin.evaluate(problem_masks, SEARCH), problem_values)
        finally:
            twin.close()
        changed = self.changed_options_for(problem_name, problem_workdir)
        if changed is None:
            pytest.skip(f"{problem_name}: no option known to change the values (set changed_options)")
        other = self.make_problem(problem_name, problem_workdir, **changed)
        try:
            assert other.fingerprint() != fp, f"{problem_name}: fingerprint unchanged by {changed}"
        finally:
            other.close()

    # ---------------------------------------------------------- sensitivities
    def test_sensitivities_agree_with_evaluate(self, problem, problem_masks):
        d, m = problem.space.dim, problem.n_objectives
        if not problem.has_sensitivities:
            with pytest.raises(NoSensitivities):
                problem.sensitivities(problem_masks[0])
            return
        for split, mask in [(SEARCH, problem_masks[0]), *((s, problem_masks[1]) for s in problem.splits)]:
            sens = problem.sensitivities(mask, split)
            assert isinstance(sens, Sensitivities)
            np.testing.assert_array_equal(sens.mask, mask)
            assert sens.delta.shape == sens.se.shape == (m, d), (split, sens.delta.shape, sens.se.shape)
            assert sens.values.shape == (m,)
            assert not (sens.se < 0).any(), f"negative standard errors on {split!r}"
            np.testing.assert_allclose(sens.values, problem.evaluate(mask, split)[0], rtol=self.sensitivity_values_rtol,
                                       err_msg=f"sensitivities({split!r}).values vs evaluate")
            _json_roundtrip(sens.to_json(), f"sensitivities({split!r}).to_json()")
        with pytest.raises(ValueError, match="no split"):
            problem.sensitivities(problem_masks[0], "no-such-split")
        with pytest.raises(ValueError, match=str(d)):
            problem.sensitivities(np.ones(d + 1, dtype=bool))


# =============================================================================== acquisitions
def acquisition_state(n: int = 40, seed: int = 0, n_bits: int = 12):
    """A small told data set for acquisition checks: ``(space, SearchState)`` from rho-MNK with
    ``n_bits`` bits (the unpruned mask first, then ``n - 1`` random valid masks), normalized."""
    from acquisition.base import SearchState

    problem = PROBLEMS.create("rho-mnk", n_bits=n_bits, k=1, rho=-0.5, seed=seed)
    rng = np.random.default_rng(seed)
    X = np.unique(np.vstack([problem.space.keep_all(1), problem.space.sample(n - 1, rng)]), axis=0)
    X = np.vstack([problem.space.keep_all(1), X[~X.all(axis=1)]])
    raw = problem.evaluate(X)
    lo, hi = np.asarray(problem.bounds, dtype=float)
    state = SearchState(X=X, Y=problem.normalize(raw), ref=problem.normalize(problem.ref_point),
                        baseline=problem.normalize(raw[0]), baseline_raw=np.asarray(raw[0], dtype=float),
                        bounds=np.stack([lo, hi]), bias=0, costs=(1,))
    problem.close()
    return problem.space, state


_ACQ_FITTED: dict = {}


class AcquisitionContractSuite:
    """The acquisition contract, checked for every name in :attr:`acquisition_names`.

    Class attributes a subclass sets:

    * ``acquisition_names``: registered acquisition names to check (required);
    * ``acquisition_options``: ``{name: {option: value}}`` used to build them (default: none);
    * ``surrogate_names``: the fitted surrogates they are checked with (small fits on 40 masks of
      a 12-bit rho-MNK problem; default ``("mlp", "gp")``), ``surrogate_options`` their options;
    * ``invalid_options``: ``{name: [(option, value), ...]}`` values that must raise a
      ``ValueError`` naming the option; by default every numeric option is tried with ``nan``.
    """

    acquisition_names: ClassVar[Sequence[str]] = ()
    acquisition_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    surrogate_names: ClassVar[Sequence[str]] = ("mlp", "gp")
    surrogate_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "mlp": {"n_members": 2, "hidden": (16,), "max_epochs": 30}}
    invalid_options: ClassVar[Mapping[str, Sequence[tuple[str, Any]]] | None] = None
    n_members: ClassVar[int] = 3

    def pytest_generate_tests(self, metafunc) -> None:
        _parametrize(metafunc, "acquisition_name", _names_or_fail(self, "acquisition_names"))
        _parametrize(metafunc, "acquisition_surrogate", list(self.surrogate_names))

    def make_acquisition(self, name: str, **kw):
        return ACQUISITIONS.create(name, **{**self.acquisition_options.get(name, {}), **kw})

    @pytest.fixture(scope="class")
    @classmethod
    def acquisition_data(cls):
        return acquisition_state()

    @pytest.fixture
    def acquisition_model(self, acquisition_surrogate, acquisition_data):
        """The surrogate fitted on the state's told data (once per suite class and surrogate)."""
        key = (type(self), acquisition_surrogate)
        if key not in _ACQ_FITTED:
            _, state = acquisition_data
            model = SURROGATES.create(acquisition_surrogate, seed=0,
                                      **self.surrogate_options.get(acquisition_surrogate, {}))
            _ACQ_FITTED[key] = model.fit(state.X, state.Y)
        return _ACQ_FITTED[key]

    def _ready(self, name: str, state, seed: int = 0, n_members: int | None = None):
        return self.make_acquisition(name).setup(state, n_members or self.n_members, np.random.default_rng(seed))

    @staticmethod
    def _pool(space: HeadSpace, k: int = 24, seed: int = 5) -> np.ndarray:
        pool = np.unique(space.sample(3 * k, np.random.default_rng(seed)), axis=0)
        return pool[:k]

    # -------------------------------------------------------------------- tests
    def test_is_registered_and_builds_with_keyword_only_options(self, acquisition_name):
        from acquisition.base import Acquisition

        factory = ACQUISITIONS.get(acquisition_name).factory
        for p in inspect.signature(factory).parameters.values():
            if p.name == "self":
                continue
            assert p.kind is p.KEYWORD_ONLY, f"{acquisition_name}: option {p.name!r} must be keyword-only"
            assert p.default is not p.empty, f"{acquisition_name}: option {p.name!r} needs a default"
        acq = self.make_acquisition(acquisition_name)
        assert isinstance(acq, Acquisition)
        assert acq.name == acquisition_name

    def test_options_round_trip_through_the_registry(self, acquisition_name):
        acq = self.make_acquisition(acquisition_name)
        options = acq.options()
        _json_roundtrip(options, f"{acquisition_name}.options()")
        again = ACQUISITIONS.create(acquisition_name, **options)
        assert again.options() == options

    def test_invalid_options_raise_a_value_error_naming_the_option(self, acquisition_name):
        if self.invalid_options is not None:
            cases = list(self.invalid_options.get(acquisition_name, ()))
        else:
            factory = ACQUISITIONS.get(acquisition_name).factory
            cases = [(p.name, float("nan")) for p in inspect.signature(factory).parameters.values()
                     if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)]
        if not cases:
            pytest.skip(f"{acquisition_name}: no numeric options to check")
        for option, value in cases:
            with pytest.raises(ValueError, match=re.escape(option)):
                self.make_acquisition(acquisition_name, **{option: value})

    def test_setup_refuses_no_members_and_returns_self(self, acquisition_name, acquisition_data):
        _, state = acquisition_data
        acq = self.make_acquisition(acquisition_name)
        with pytest.raises(ValueError, match="n_members"):
            acq.setup(state, 0, np.random.default_rng(0))
        assert acq.setup(state, 2, np.random.default_rng(0)) is acq

    def test_energy_is_finite_float_per_row_for_bool_and_float_masks(self, acquisition_name, acquisition_data,
                                                                     acquisition_model):
        import torch

        space, state = acquisition_data
        acq = self._ready(acquisition_name, state)
        x = torch.as_tensor(self._pool(space, 10))
        member = torch.arange(len(x)) % self.n_members
        e_bool = acq.energy(acquisition_model, x, member)
        e_float = acq.energy(acquisition_model, x.float(), member)
        assert isinstance(e_bool, torch.Tensor) and e_bool.shape == (len(x),), e_bool.shape
        assert e_bool.dtype.is_floating_point
        assert torch.isfinite(e_bool).all(), e_bool
        torch.testing.assert_close(e_bool.float(), e_float.float(), rtol=1e-5, atol=1e-6)
        for i in range(self.n_members):  # every member scores every row
            e = acq.energy(acquisition_model, x, torch.full((len(x),), i))
            assert e.shape == (len(x),) and torch.isfinite(e).all(), (i, e)

    def test_score_vectorized_equals_row_by_row(self, acquisition_name, acquisition_data, acquisition_model):
        import torch

        space, state = acquisition_data
        acq = self._ready(acquisition_name, state)
        mean, std = acquisition_model.predict(self._pool(space, 8))
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        member = torch.arange(len(mean)) % self.n_members
        together = acq.score(mean, std, member)
        alone = torch.cat([acq.score(mean[i:i + 1], std[i:i + 1], member[i:i + 1]) for i in range(len(mean))])
        torch.testing.assert_close(together.float(), alone.float(), rtol=1e-5, atol=1e-6)

    def test_observed_gives_one_finite_energy_per_told_row(self, acquisition_name, acquisition_data):
        _, state = acquisition_data
        acq = self._ready(acquisition_name, state)
        for i in range(self.n_members):
            e = acq.observed(state.Y, i)
            assert tuple(e.shape) == (len(state.Y),) and np.isfinite(e.numpy()).all()

    def test_deterministic_for_a_seed(self, acquisition_name, acquisition_data, acquisition_model):
        import torch

        space, state = acquisition_data
        pool = self._pool(space)
        x = torch.as_tensor(pool)
        member = torch.arange(len(x)) % self.n_members
        runs = []
        for _ in range(2):
            acq = self._ready(acquisition_name, state, seed=3)
            e = acq.energy(acquisition_model, x, member)
            sel = acq.select(acquisition_model, pool, 4, np.random.default_rng(7))
            runs.append((e, sel.rows))
        torch.testing.assert_close(runs[0][0], runs[1][0])
        assert runs[0][1] == runs[1][1]

    @pytest.mark.parametrize("n", [1, 5, 100])
    def test_select_picks_distinct_rows_of_the_pool(self, acquisition_name, acquisition_data, acquisition_model, n):
        from acquisition.base import Selection

        space, state = acquisition_data
        pool = self._pool(space)
        acq = self._ready(acquisition_name, state)
        sel = acq.select(acquisition_model, pool, n, np.random.default_rng(0))
        assert isinstance(sel, Selection)
        assert len(sel.rows) == min(n, len(pool)), (n, sel.rows)
        assert len(set(sel.rows)) == len(sel.rows), sel.rows
        assert all(isinstance(r, (int, np.integer)) and 0 <= r < len(pool) for r in sel.rows), sel.rows
        m = state.n_objectives
        assert np.shape(sel.mean) == np.shape(sel.std) == (len(pool), m)
        assert np.isfinite(sel.mean).all() and (np.asarray(sel.std) >= 0).all()
