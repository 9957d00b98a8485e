"""The acquisition contract: how a fitted surrogate's predictions become energies.

All acquisitions are **minimized** (MCBO's convention): an optimizer (simulated annealing,
local search) lowers the energy; a batch is picked lowest-energy first.  An acquisition is set
up once per model-based round with the told data (:class:`SearchState`) and a number of
*members*: variants of the acquisition run side by side (one per annealing chain: each chain
its own threshold, weight vector or posterior sample).  Member ``i`` of ``n`` is addressed
by ``member`` indices ``long[k]`` in every call.

Objectives are normalized by the problem's bounds (0 = ideal, 1 = nadir) everywhere here; the
state says which objective is the bias (lowered) and which the costs (bounded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from framework.pareto import non_dominated

__all__ = ["Acquisition", "SearchState", "Selection"]


@dataclass(frozen=True)
class SearchState:
    """The told data an acquisition may read (finite rows only, normalized).

    Attributes:
        X: ``bool[n, d]`` told masks.
        Y: ``float[n, m]`` their normalized values (bounds: ideal -> 0, nadir -> 1).
        ref: ``float[m]`` normalized reference point (hypervolume is counted below it).
        baseline: ``float[m]`` normalized values of the unpruned mask (the column-wise best
            told value where it is unknown): the base of relative thresholds.
        baseline_raw: ``float[m]`` the same in raw units.
        bounds: ``float[2, m]`` the problem's raw bounds (to turn relative thresholds into
            normalized ones).
        bias: index of the objective to lower.
        costs: indices of the objectives to bound (utility costs).
    """

    X: np.ndarray
    Y: np.ndarray
    ref: np.ndarray
    baseline: np.ndarray
    baseline_raw: np.ndarray
    bounds: np.ndarray
    bias: int = 0
    costs: tuple[int, ...] = (1,)

    @property
    def n_objectives(self) -> int:
        return int(self.Y.shape[1])

    def front(self) -> np.ndarray:
        """``float[k, m]`` the non-dominated told values."""
        return self.Y[non_dominated(self.Y)] if len(self.Y) else self.Y

    def front_inside(self) -> np.ndarray:
        """``float[k, m]`` the non-dominated told values strictly inside the reference box."""
        front = self.front()
        return front[np.all(front < self.ref, axis=1)]


@dataclass(frozen=True)
class Selection:
    """A batch picked from a pool: ``rows`` (indices into the pool, in pick order) and the
    surrogate's ``mean``/``std`` ``float[k, m]`` for every row of the pool."""

    rows: list[int]
    mean: np.ndarray
    std: np.ndarray


class Acquisition(ABC):
    """Base class of every acquisition (lower energy is better).

    Subclasses implement :meth:`_setup` (per round) and :meth:`score` (energies from
    predictions); those that need more than ``(mean, std)`` (Thompson sampling) override
    :meth:`energy` or :meth:`select`.  Constructors take keyword-only options.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    state: SearchState
    n_members: int

    def setup(self, state: SearchState, n_members: int, rng: np.random.Generator) -> Acquisition:
        """Prepare ``n_members`` variants for the told data ``state``; returns ``self``."""
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        if len(state.Y) == 0:
            raise ValueError("an acquisition needs at least one told value")
        self.state = state
        self.n_members = int(n_members)
        self._setup(rng)
        return self

    def _setup(self, rng: np.random.Generator) -> None:  # noqa: B027 - optional hook
        """Hook: per-round parameters (thresholds, weights, front)."""

    @abstractmethod
    def score(self, mean: torch.Tensor, std: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """``float[k]`` energies of predictions ``mean``/``std`` ``float[k, m]`` (normalized units)
        under members ``member long[k]``."""

    def energy(self, model, x: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """``float[k]`` energies of masks ``x`` (``[k, d]`` 0/1) under ``model`` (a fitted
        :class:`~framework.surrogate.Surrogate`): the optimizers' objective."""
        mean, std = model.predict_torch(x)
        return self.score(mean, std, member)

    def observed(self, Y: np.ndarray, member: int) -> torch.Tensor:
        """``float[n]`` energies of told values ``Y float[n, m]`` under member ``member`` (exact
        values: zero spread), e.g. to start each annealing chain from its best told mask."""
        y = torch.as_tensor(Y, dtype=torch.float32)
        return self.score(y, torch.zeros_like(y), torch.full((len(y),), int(member)))

    def select(self, model, pool: np.ndarray, n: int, rng: np.random.Generator) -> Selection:
        """Greedy batch: up to ``n`` rows of ``pool`` (``bool[k, d]``, distinct), lowest energy of
        member 0 first, each pick passed to :meth:`condition` before the next (so acquisitions
        that account for pending picks, like hypervolume gain, spread the batch)."""
        mean, std = model.predict(pool)
        return Selection(self._greedy(mean, std, n), mean, std)

    def _greedy(self, mean: np.ndarray, std: np.ndarray, n: int, after_pick=None) -> list[int]:
        """Rows of up to ``n`` predictions ``mean``/``std`` ``float[k, m]``, lowest energy first,
        each pick passed to :meth:`condition`; ``after_pick(row)``, if given, returns the spreads
        ``float[k, m]`` the next pick sees (a rule that conditions the surrogate on its picks)."""
        rows: list[int] = []
        alive = np.ones(len(mean), dtype=bool)
        for _ in range(min(n, len(mean))):
            e = self.score_numpy(mean, std)
            e[~alive] = np.inf
            best = int(np.argmin(e))
            rows.append(best)
            alive[best] = False
            self.condition(mean[best], std[best], float(e[best]))
            if after_pick is not None:
                std = after_pick(best)
        return rows

    def score_numpy(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """:meth:`score` of member 0 on numpy predictions (batch selection)."""
        m = torch.as_tensor(mean, dtype=torch.float32)
        return self.score(m, torch.as_tensor(std, dtype=torch.float32),
                          torch.zeros(len(m), dtype=torch.long)).double().numpy()

    def condition(self, mean: np.ndarray, std: np.ndarray, energy: float) -> None:  # noqa: B027 - optional hook
        """Hook: a prediction ``float[m]`` was picked into the batch (pending)."""

    def options(self) -> dict:
        """JSON-able constructor options of this instance."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("state", "n_members")
                and isinstance(v, (int, float, str, bool, type(None), list, tuple))}
