"""The strategy contract: ask/tell over a binary space.

The framework loop owns the budget, caching and checkpointing; a strategy only proposes
masks and learns from their values.  A strategy never sees which model or data a problem
uses: it gets the :class:`~framework.space.HeadSpace`, the objective names, reference point
and bounds (a :class:`ProblemInfo`).

Determinism is part of the contract: given the same ``rng`` and the same told values, a
strategy must ask the same masks.  ``headrepair resume`` relies on it (it replays the run,
answering from the store, then continues).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from framework.space import HeadSpace

__all__ = ["BudgetTooSmall", "ProblemInfo", "Strategy", "StrategyNotApplicable"]


class StrategyNotApplicable(ValueError):
    """Raised by :meth:`Strategy.setup` when a strategy cannot run on this problem or budget at
    all (a strategy that needs head sensitivities on a problem without them).  Benchmarks record
    such a cell as not applicable instead of failing the suite; a plain run reports the message."""


class BudgetTooSmall(StrategyNotApplicable):
    """The strategy cannot run within the budget at all (FASP needs every single-head knock-out)."""


@dataclass(frozen=True)
class ProblemInfo:
    """What a strategy may know of a problem."""

    space: HeadSpace
    objective_names: tuple[str, ...]
    ref_point: np.ndarray
    bounds: np.ndarray
    has_sensitivities: bool = False  # the problem answers sensitivity requests (one evaluation each)
    bias_objective: int = 0  # the objective a repair lowers (Problem.bias_objective)
    cost_objectives: tuple[int, ...] = (1,)  # the utility costs it keeps within a limit (Problem.cost_objectives)

    @classmethod
    def of(cls, problem) -> ProblemInfo:
        return cls(problem.space, tuple(problem.objective_names),
                   np.asarray(problem.ref_point, dtype=float), np.asarray(problem.bounds, dtype=float),
                   bool(getattr(problem, "has_sensitivities", False)),
                   int(getattr(problem, "bias_objective", 0)),
                   tuple(int(j) for j in getattr(problem, "cost_objectives", (1,))))

    @property
    def n_objectives(self) -> int:
        return len(self.objective_names)

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Objectives mapped by the bounds: ideal -> 0, nadir -> 1."""
        lo, hi = self.bounds
        return (np.asarray(values, dtype=float) - lo) / np.where(hi > lo, hi - lo, 1.0)


class Strategy(ABC):
    """Base class of every search strategy.

    Constructors take keyword-only options with documented defaults (they are what
    ``--set key=value`` sets).  ``setup`` is called once before the first ``ask``.

    ``ask(n)`` returns ``bool[n, d]`` masks that satisfy the space's constraints; the loop
    evaluates them (or answers from the store) and calls ``tell`` with the same masks and
    ``float[n, m]`` values.  Rows of ``values`` may be NaN where an evaluation failed.
    Masks the strategy was already told about may be asked again; they cost nothing.

    Head sensitivities (optional, only where ``problem.has_sensitivities``): before every
    ``ask`` the loop calls :meth:`sensitivity_request`; a returned mask ``bool[d]`` is answered
    with :meth:`tell_sensitivities` (a :class:`~framework.problem.Sensitivities`), at the cost of
    one real evaluation of the budget (free when the run already received that mask's
    sensitivities), and the loop asks again until the strategy returns ``None``.

    Asking while evaluations are pending: with an evaluator that runs several batches at once
    (``--executor ray``), the loop asks a strategy whose class sets ``asks_while_pending = True``
    for the next batch before the values of the previous ones arrived (up to ``--pending``
    batches), and tells each batch when its values arrive, in arrival order, which can differ
    from run to run.  Declare it only when ``ask`` works without a ``tell`` in between and what it
    asks does not depend on the order of tells (``random`` does: its asks depend on its seed
    alone); then a run gives the same evaluations and front as one evaluated in process.  Every
    other strategy (the default ``False``) is asked again only after its batch was told.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: the loop may ask again before the last batch was told (see above)
    asks_while_pending: ClassVar[bool] = False

    problem: ProblemInfo
    budget: int
    rng: np.random.Generator

    def setup(self, problem: ProblemInfo, budget: int, rng: np.random.Generator) -> None:
        """Remember the problem, the budget of real evaluations and the random generator."""
        self.problem = problem
        self.budget = int(budget)
        self.rng = rng
        self._setup()

    def _setup(self) -> None:  # noqa: B027 - optional hook
        """Hook for subclasses, called at the end of :meth:`setup`."""

    @abstractmethod
    def ask(self, n: int) -> np.ndarray:
        """Propose ``n`` masks ``bool[n, d]``."""

    @abstractmethod
    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        """Learn the ``float[n, m]`` values of ``bool[n, d]`` masks (NaN rows: failed)."""

    def sensitivity_request(self) -> np.ndarray | None:
        """A mask ``bool[d]`` whose head sensitivities the strategy wants before its next ask, or
        ``None`` (default: never)."""
        return None

    def tell_sensitivities(self, sensitivities) -> None:  # noqa: B027 - optional hook
        """Learn the :class:`~framework.problem.Sensitivities` of the requested mask."""

    def options(self) -> dict:
        """The constructor's options of this instance, exactly (recorded in ``result.json``;
        ``STRATEGIES.create(name, **strategy.options())`` rebuilds the same strategy): each
        keyword of ``__init__`` read from the attribute of the same name."""
        import inspect

        out = {}
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, p.name):
                raise AttributeError(f"{type(self).__name__} keeps no attribute {p.name!r} for its option of that "
                                     f"name: options() cannot record it (store each option under its own name)")
            value = getattr(self, p.name)
            out[p.name] = dict(value) if isinstance(value, dict) else list(value) if isinstance(value, tuple) else value
        return out
