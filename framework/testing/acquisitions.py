"""The acquisition contract suite, and the fitted state it scores masks in."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from framework.registry import ACQUISITIONS, PROBLEMS, SURROGATES
from framework.space import HeadSpace
from framework.testing.parametrize import _names_or_fail, _parametrize
from framework.testing.problems import _json_roundtrip


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
