"""The surrogate contract suite, and the structured data it fits surrogates on."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from framework.registry import SURROGATES
from framework.surrogate import Surrogate
from framework.testing.parametrize import _names_or_fail, _parametrize

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
