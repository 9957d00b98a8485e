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

try:
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("framework.testing holds pytest contract suites and needs pytest, which is a test extra of "
                      "headrepair: install it with `pip install 'headrepair[test]'` (or `pip install pytest`)"
                      ) from exc

from framework.testing.acquisitions import AcquisitionContractSuite, acquisition_state
from framework.testing.problems import ProblemContractSuite
from framework.testing.strategies import CheckedStrategy, FlakyProblem, StrategyContractSuite, contract_problem
from framework.testing.surrogates import SurrogateContractSuite, structured_problem

__all__ = [
    "StrategyContractSuite", "SurrogateContractSuite", "ProblemContractSuite", "AcquisitionContractSuite",
    "CheckedStrategy", "acquisition_state", "FlakyProblem", "contract_problem", "structured_problem",
]


def pytest_configure(config) -> None:
    """Registers the ``slow`` marker when this module is loaded as a pytest plug-in
    (``pytest_plugins = ["framework.testing"]`` in a ``conftest.py``, or ``-p framework.testing``)."""
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
