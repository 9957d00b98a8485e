"""The problem contract suite."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from framework.problem import SEARCH, NoSensitivities, Problem, Sensitivities
from framework.registry import PROBLEMS, RegistryError, option_names
from framework.space import HeadSpace
from framework.testing.parametrize import _names_or_fail, _parametrize


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
