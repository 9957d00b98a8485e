"""NSGA-II (pymoo) on the binary head space, driven through pymoo's ask/tell.

pymoo proposes whole generations; the framework loop asks for batches of any size and keeps
the budget.  This module bridges the two: a generation is handed out batch by batch, and a
batch that needs more masks than the generation has left is topped up with extra offspring
of the current parents (extra initial samples in the first generation).  Once every mask of
a generation has been told, the generation goes back to pymoo (``tell``), whose survival
(non-dominated rank and crowding) merges it with the parents.  Extra offspring simply make
that generation larger; survival still keeps ``pop_size``.

Operators: the initial population is sampled by the space (a random pruning ratio per mask,
so sparse and dense masks are both represented), crossover is two-point or HUX, mutation
flips bits, a repair operator enforces the space's constraints (protected heads kept, at
most ``max_pruned`` pruned), and duplicate elimination rejects any mask this run has already
proposed, not only those in the current population.
"""

from __future__ import annotations

import math

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.core.problem import Problem as PymooProblem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.hux import HalfUniformCrossover
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.bitflip import BitflipMutation
from pymoo.problems.static import StaticProblem

from framework.history import History, pack_mask
from framework.space import HeadSpace
from framework.strategy import Strategy

__all__ = ["NSGA2Strategy", "default_population_size"]

# Normalized objective value given to failed (NaN) evaluations: far beyond the nadir (1.0),
# so failed masks land in the last non-dominated front and die out.
_FAILED_VALUE = 1e3

_CROSSOVERS = {"two-point": TwoPointCrossover, "hux": HalfUniformCrossover}


def default_population_size(budget: int) -> int:
    """Population size used when none is given: ``2 * round(sqrt(budget))`` clipped to
    ``[6, 100]``, so a run lasts about ``sqrt(budget) / 2`` generations (budget 40 -> 12,
    100 -> 20, 300 -> 34, 1000 -> 64)."""
    return int(min(100, max(6, 2 * round(math.sqrt(max(budget, 1))))))


class _BinaryProblem(PymooProblem):
    """pymoo's view of the space: ``d`` boolean variables, ``m`` objectives.  Never
    evaluated by pymoo (the framework loop evaluates)."""

    def __init__(self, dim: int, n_objectives: int) -> None:
        super().__init__(n_var=dim, n_obj=n_objectives, xl=0, xu=1, vtype=bool)

    def _evaluate(self, x, out, *args, **kwargs):  # pragma: no cover - guarded
        raise RuntimeError("the framework loop evaluates masks; pymoo must not")


class _SpaceSampling(Sampling):
    """Initial masks from :meth:`HeadSpace.sample`: pruning ratio ``~ U(0, max_ratio)`` per mask."""

    def __init__(self, space: HeadSpace, max_ratio: float | None) -> None:
        super().__init__()
        self.space = space
        self.max_ratio = max_ratio

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return self.space.sample(n_samples, random_state, max_ratio=self.max_ratio)


class _SpaceRepair(Repair):
    """Restore protected heads and undo excess pruning at random (:meth:`HeadSpace.repair`)."""

    def __init__(self, space: HeadSpace) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem, X, random_state=None, **kwargs):
        return self.space.repair(np.asarray(X, dtype=bool), random_state)


class _NoRepeats(DuplicateElimination):
    """Duplicates within a population, against other populations, and against every mask
    already in a generation of this run (``proposed``)."""

    def __init__(self, proposed: set[bytes]) -> None:
        super().__init__()
        self.proposed = proposed

    def _do(self, pop, other, is_duplicate):
        keys = [pack_mask(x) for x in np.asarray(pop.get("X"), dtype=bool)]
        if other is None:
            seen: set[bytes] = set()
            for i, k in enumerate(keys):
                if k in self.proposed or k in seen:
                    is_duplicate[i] = True
                seen.add(k)
        else:
            others = {pack_mask(x) for x in np.asarray(other.get("X"), dtype=bool)}
            for i, k in enumerate(keys):
                if k in others:
                    is_duplicate[i] = True
        return is_duplicate


class NSGA2Strategy(Strategy):
    """NSGA-II (pymoo): rank-and-crowding survival, binary tournament, crossover, bit-flip
    mutation, repair to the space's constraints, no repeated masks."""

    summary = "pymoo NSGA-II on the binary space (two-point/HUX crossover, bit-flip, repair, no repeats)"

    def __init__(self, *, pop_size: int | None = None, crossover: str = "two-point", crossover_prob: float = 0.9,
                 mutation_rate: float | None = None, initial_max_ratio: float | None = None) -> None:
        """Args:
            pop_size: population size; ``None`` = :func:`default_population_size` of the budget.
            crossover: ``"two-point"`` or ``"hux"`` (half-uniform crossover).
            crossover_prob: probability that a mating pair is crossed over, in ``[0, 1]``.
            mutation_rate: probability of flipping each bit; ``None`` = ``1 / d``.
            initial_max_ratio: largest pruning ratio of the initial random masks;
                ``None`` = the space's ``max_pruned_fraction``.
        """
        if pop_size is not None and pop_size < 2:
            raise ValueError(f"pop_size must be >= 2, got {pop_size}")
        if crossover not in _CROSSOVERS:
            raise ValueError(f"crossover must be one of {sorted(_CROSSOVERS)}, got {crossover!r}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        if mutation_rate is not None and not 0.0 < mutation_rate <= 0.5:
            raise ValueError(f"mutation_rate must be in (0, 0.5], got {mutation_rate}")
        if initial_max_ratio is not None and not 0.0 < initial_max_ratio <= 1.0:
            raise ValueError(f"initial_max_ratio must be in (0, 1], got {initial_max_ratio}")
        self.pop_size = pop_size
        self.crossover = crossover
        self.crossover_prob = crossover_prob
        self.mutation_rate = mutation_rate
        self.initial_max_ratio = initial_max_ratio

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        space = self.problem.space
        self.population_size = self.pop_size or default_population_size(self.budget)
        self._proposed: set[bytes] = set()
        self._history = History.of(self.problem)   # told masks and raw values
        self._pymoo_problem = _BinaryProblem(space.dim, self.problem.n_objectives)
        prob_var = self.mutation_rate if self.mutation_rate is not None else 1.0 / space.dim
        self._algorithm = NSGA2(
            pop_size=self.population_size,
            sampling=_SpaceSampling(space, self.initial_max_ratio),
            crossover=_CROSSOVERS[self.crossover](prob=self.crossover_prob),
            mutation=BitflipMutation(prob=1.0, prob_var=min(0.5, prob_var)),
            repair=_SpaceRepair(space),
            eliminate_duplicates=_NoRepeats(self._proposed),
        )
        self._algorithm.setup(self._pymoo_problem, termination=NoTermination(),
                              seed=int(self.rng.integers(2**32)), verbose=False)
        self._generation: Population | None = None   # current generation (handed out or queued)
        self._handed = 0                              # how many of it were handed out

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        dim = self.problem.space.dim
        if self._generation is None:
            gen = self._algorithm.ask()
            self._generation = gen if gen is not None else Population.empty()
            self._handed = 0
            self._remember(self._generation)
        queued = len(self._generation) - self._handed
        if queued < n:
            extra = self._extra(n - queued)
            self._remember(extra)
            self._generation = Population.merge(self._generation, extra)
        take = self._generation[self._handed:self._handed + n]
        self._handed += len(take)
        out = list(np.asarray(take.get("X"), dtype=bool).reshape(-1, dim))
        while len(out) < n:  # the space is exhausted: repeat a known mask (costs nothing)
            out.append(self._fallback())
        return np.array(out, dtype=bool)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        self._history.add(masks, values)
        gen = self._generation
        if gen is None or self._handed < len(gen):
            return
        X = np.asarray(gen.get("X"), dtype=bool).reshape(-1, self.problem.space.dim)
        if not all(x in self._history for x in X):
            return
        self._generation = None
        if len(X) == 0:
            return
        F = self.problem.normalize(np.array([self._history.value(x) for x in X]))
        F[~np.isfinite(F)] = _FAILED_VALUE
        Evaluator().eval(StaticProblem(self._pymoo_problem, F=F), gen)
        self._algorithm.tell(infills=gen)

    # --------------------------------------------------------------- helpers
    def _remember(self, pop: Population) -> None:
        """Mark every mask of ``pop`` as proposed (duplicate elimination rejects it from now on)."""
        for x in np.asarray(pop.get("X"), dtype=bool).reshape(-1, self.problem.space.dim):
            self._proposed.add(pack_mask(x))

    def _extra(self, k: int) -> Population:
        """``k`` (or fewer) new individuals: offspring of the current parents, or initial
        samples while there are no parents yet."""
        algo = self._algorithm
        state = algo.random_state
        if algo.pop is None or len(algo.pop) == 0:
            pop = algo.initialization.do(self._pymoo_problem, k, random_state=state, algorithm=algo)
        else:
            pop = algo.mating.do(self._pymoo_problem, algo.pop, k, algorithm=algo, random_state=state)
        pop = pop[:k]
        if len(pop) < k:  # mating ran out of new masks: random valid ones
            sampled = self.problem.space.sample(4 * (k - len(pop)), state, max_ratio=self.initial_max_ratio)
            fresh, seen = [], {pack_mask(x) for x in np.asarray(pop.get("X"), dtype=bool).reshape(-1, sampled.shape[1])}
            for x in sampled:
                key = pack_mask(x)
                if key not in self._proposed and key not in seen:
                    seen.add(key)
                    fresh.append(x)
            if fresh:
                pop = Population.merge(pop, Population.new("X", np.array(fresh[:k - len(pop)])))
        return pop

    def _fallback(self) -> np.ndarray:
        """A mask already told (re-asking it is free); the keep-all mask before anything was told."""
        if len(self._history):
            return self._history.masks[0]
        return self.problem.space.keep_all(1)[0]
