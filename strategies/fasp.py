"""FASP (Zayed et al., "Fairness-Aware Structured Pruning in Transformers", AAAI 2024) as a strategy.

FASP needs no model of its own, only measurements:

1. the keep-all mask (the baseline);
2. every single-head knock-out (one evaluation per prunable head);
3. for a pair ``(alpha, gamma)``: the ``floor(gamma * n)`` heads whose knock-out raised the
   utility objective most (the perplexity-critical heads, ``n`` = heads with a knock-out
   score) are protected; among the others, the ``floor(alpha * d)`` heads whose knock-out
   gave the lowest bias objective are pruned (``d`` = all heads).  This is the rule of the
   authors' code (``method == "FASP"``); the swept pairs' evaluations form its front.

The strategy sees objectives only: ``bias_objective`` (default 0) and ``utility_objective``
(default 1, where higher is worse, like perplexity).  It plans ``1 + n_free`` measurements
then sweeps; it refuses (``ValueError`` at setup) a budget that cannot pay the knock-outs
and ``min_sweep`` sweep points.  Sweep order is coarse to fine over the ``alphas`` x ``gammas``
grid (so a short budget still spans it); when the grid is exhausted, the sweep continues on
every integer pair (protected count, pruned count), again coarse to fine.  Pairs that give a
mask already evaluated are skipped (they cost nothing).  A knock-out that failed (NaN)
leaves its head unscored: it is never pruned.

``scores="sensitivities"`` runs the same procedure on estimated knock-out effects instead:
one sensitivity call at the unpruned mask (one budget unit,
:meth:`~framework.problem.Problem.sensitivities`) gives every head's first-order effect,
scores are the unpruned values plus those estimates, and the rest of the budget (after the
baseline) goes to the sweep, so FASP runs at any budget of at least ``2 + min_sweep``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from framework.designs import knockouts
from framework.history import History, pack_mask
from framework.pareto import non_dominated
from framework.strategy import BudgetTooSmall, Strategy, StrategyNotApplicable

__all__ = ["FASP", "SweepPoint"]

_DEFAULT_ALPHAS = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20)
_DEFAULT_GAMMAS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SCORES = ("knockouts", "sensitivities")


@dataclass(frozen=True)
class SweepPoint:
    """One swept pair and the mask it gives (``alpha``/``gamma`` are ``None`` for points of
    the integer lattice that follows the grid)."""

    alpha: float | None
    gamma: float | None
    n_critical: int      # heads protected as utility-critical
    n_pruned: int        # heads pruned
    mask: np.ndarray     # bool[d]


def _coarse_to_fine(n: int) -> list[int]:
    """Indices ``0..n-1`` ordered so that every prefix spreads over the range: the two ends,
    then midpoints of the largest gaps (a van der Corput-like order)."""
    if n <= 0:
        return []
    order, seen = [0], {0}
    if n > 1:
        order.append(n - 1)
        seen.add(n - 1)
    gaps = [(0, n - 1)]
    while gaps:
        nxt = []
        for lo, hi in gaps:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                if mid not in seen:
                    order.append(mid)
                    seen.add(mid)
                nxt += [(lo, mid), (mid, hi)]
        gaps = nxt
    return order


def _pairs_coarse_to_fine(n_a: int, n_b: int) -> Iterator[tuple[int, int]]:
    """All index pairs of an ``n_a x n_b`` grid, nested squares of the coarse-to-fine orders."""
    ra = {i: r for r, i in enumerate(_coarse_to_fine(n_a))}
    rb = {j: r for r, j in enumerate(_coarse_to_fine(n_b))}
    pairs = sorted(((i, j) for i in range(n_a) for j in range(n_b)),
                   key=lambda p: (max(ra[p[0]], rb[p[1]]), ra[p[0]] + rb[p[1]], ra[p[0]]))
    yield from pairs


class FASP(Strategy):
    """FASP: single-head knock-outs, then a sweep of (alpha pruned, gamma protected) pairs."""

    summary = "FASP (AAAI 2024): single-head knock-outs, protect utility-critical heads, prune by bias (alpha, gamma)"

    def __init__(self, *, alphas: Sequence[float] = _DEFAULT_ALPHAS, gammas: Sequence[float] = _DEFAULT_GAMMAS,
                 min_sweep: int = 5, bias_objective: int = 0, utility_objective: int = 1,
                 scores: str = "knockouts") -> None:
        """Args:
            alphas: pruned fractions of all heads to sweep, each in ``(0, 1]``
                (``floor(alpha * d)`` heads pruned, capped by the space's ``max_pruned``).
            gammas: fractions of the scored heads protected as utility-critical, each in ``[0, 1)``.
            min_sweep: sweep points the budget must pay for beyond the knock-outs (``>= 1``).
            bias_objective: index of the objective whose knock-out value ranks heads for pruning.
            utility_objective: index of the objective whose knock-out value (higher = worse)
                marks heads as critical.
            scores: ``"knockouts"`` (the paper: one real evaluation per head) or
                ``"sensitivities"`` (estimated knock-out effects from one sensitivity call; needs
                a problem with head sensitivities).
        """
        alphas, gammas = tuple(float(a) for a in alphas), tuple(float(g) for g in gammas)
        if not alphas or any(not 0.0 < a <= 1.0 for a in alphas):
            raise ValueError(f"alphas must be a non-empty list of values in (0, 1], got {list(alphas)}")
        if not gammas or any(not 0.0 <= g < 1.0 for g in gammas):
            raise ValueError(f"gammas must be a non-empty list of values in [0, 1), got {list(gammas)}")
        if min_sweep < 1:
            raise ValueError(f"min_sweep must be >= 1, got {min_sweep}")
        if bias_objective == utility_objective:
            raise ValueError(f"bias_objective and utility_objective must differ, both are {bias_objective}")
        if scores not in SCORES:
            raise ValueError(f"scores must be one of {SCORES}, got {scores!r}")
        self.scores = scores
        self.alphas = sorted(set(alphas))
        self.gammas = sorted(set(gammas))
        self.min_sweep = min_sweep
        self.bias_objective = bias_objective
        self.utility_objective = utility_objective

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        space, m = self.problem.space, self.problem.n_objectives
        for label, idx in (("bias_objective", self.bias_objective), ("utility_objective", self.utility_objective)):
            if not 0 <= idx < m:
                raise ValueError(f"{label}={idx} is not an objective index of this problem (it has {m} objectives: "
                                 f"{list(self.problem.objective_names)})")
        if space.max_pruned < 1:
            raise ValueError("fasp cannot prune anything on this problem: the space allows 0 pruned heads")
        self._free = np.flatnonzero(~space.protected_mask)
        self._sens = None
        estimated = self.scores == "sensitivities"
        if estimated and not self.problem.has_sensitivities:
            raise StrategyNotApplicable("fasp with scores=sensitivities needs a problem with head sensitivities; "
                                        "this one has none (use scores=knockouts)")
        need = 2 + self.min_sweep if estimated else self.evaluations_needed(len(self._free), self.min_sweep)
        if estimated and self.budget < need:
            raise BudgetTooSmall(f"fasp (scores=sensitivities) needs at least {need} budget units: 1 sensitivity "
                                 f"call + 1 baseline + {self.min_sweep} sweep points; the budget is {self.budget}")
        if self.budget < need:
            raise BudgetTooSmall(
                f"fasp needs at least {need} evaluations on this problem: 1 baseline (keep-all) + "
                f"{len(self._free)} single-head knock-outs + {self.min_sweep} (alpha, gamma) sweep points "
                f"(min_sweep); the budget is {self.budget}. Raise the budget or choose another strategy.")
        singles = knockouts(space, self._free[:0] if estimated else self._free)
        self._plan = np.vstack([space.keep_all(1), singles])   # bool[1 + n_free, d]: measured first, in order
        self._planned = 0
        self._told = History.of(self.problem)
        self._asked: set[bytes] = set()
        self._sweep_iter: Iterator[SweepPoint] | None = None
        self._sweep: list[SweepPoint] = []

    @staticmethod
    def evaluations_needed(n_prunable: int, min_sweep: int = 5) -> int:
        """Smallest budget FASP accepts: baseline + one knock-out per prunable head + ``min_sweep``."""
        return 1 + int(n_prunable) + int(min_sweep)

    # ---------------------------------------------------------- sensitivities
    def sensitivity_request(self) -> np.ndarray | None:
        if self.scores == "sensitivities" and self._sens is None:
            return self.problem.space.keep_all()[0]
        return None

    def tell_sensitivities(self, sensitivities) -> None:
        if self.scores == "sensitivities" and bool(np.all(sensitivities.mask)):
            self._sens = sensitivities

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        while len(out) < n and self._planned < len(self._plan):
            out.append(self._plan[self._planned])
            self._planned += 1
        if len(out) < n and self._knockouts_told():
            for point in self._sweep_points():
                key = pack_mask(point.mask)
                if not self._told.is_new(key, self._asked):
                    continue
                self._sweep.append(point)
                out.append(point.mask)
                self._asked.add(key)
                if len(out) == n:
                    break
        while len(out) < n:  # knock-outs pending or sweep exhausted: repeat the baseline (free)
            out.append(self._plan[0])
        for x in out:
            self._asked.add(pack_mask(x))
        return np.array(out, dtype=bool)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        self._told.add(masks, values)

    # ------------------------------------------------------------- results
    @property
    def knockout_scores(self) -> np.ndarray:
        """``float[d, m]``: objective values after knocking out each head alone (NaN where not
        measured: protected heads, failed or pending knock-outs)."""
        d, m = self.problem.space.dim, self.problem.n_objectives
        out = np.full((d, m), np.nan)
        if self.scores == "sensitivities":
            if self._sens is not None:  # estimated value after each knock-out: unpruned + first-order change
                est = np.asarray(self._sens.values, dtype=float)[None, :] + np.asarray(self._sens.delta, dtype=float).T
                out[self._free] = est[self._free]
            return out
        for i, x in zip(self._free, self._plan[1:], strict=True):
            v = self._told.value(x)
            if v is not None:
                out[i] = v
        return out

    @property
    def sweep(self) -> list[SweepPoint]:
        """The sweep points asked so far, in order."""
        return list(self._sweep)

    def sweep_front(self) -> tuple[list[SweepPoint], np.ndarray]:
        """The told sweep points that no other told sweep point dominates, and their values ``float[k, m]``."""
        told = [(p, self._told.value(p.mask)) for p in self._sweep if p.mask in self._told]
        if not told:
            return [], np.zeros((0, self.problem.n_objectives))
        values = np.array([v for _, v in told])
        keep = non_dominated(values)
        return [p for (p, _), k in zip(told, keep, strict=True) if k], values[keep]

    # ------------------------------------------------------------ internals
    def _knockouts_told(self) -> bool:
        if self.scores == "sensitivities" and self._sens is None:
            return False
        return self._planned == len(self._plan) and all(x in self._told for x in self._plan)

    def _sweep_points(self) -> Iterator[SweepPoint]:
        if self._sweep_iter is None:
            self._sweep_iter = self._generate_sweep()
        return self._sweep_iter

    def _generate_sweep(self) -> Iterator[SweepPoint]:
        space = self.problem.space
        scores = self.knockout_scores
        scored = np.flatnonzero(np.all(np.isfinite(scores[:, [self.bias_objective, self.utility_objective]]), axis=1))
        n_scored = len(scored)
        if n_scored == 0:
            return
        utility = scores[scored, self.utility_objective]
        bias = scores[scored, self.bias_objective]
        # criticality rank: 0 = the knock-out that hurt utility most (ties by head index)
        by_harm = np.lexsort((scored, -utility))
        crit_rank = np.empty(n_scored, dtype=int)
        crit_rank[by_harm] = np.arange(n_scored)
        by_bias = np.lexsort((scored, bias))  # lowest bias after knock-out first

        def point(n_critical: int, n_pruned: int, alpha: float | None, gamma: float | None) -> SweepPoint | None:
            allowed = by_bias[crit_rank[by_bias] >= n_critical]
            k = min(n_pruned, space.max_pruned, len(allowed))
            if k < 1:
                return None
            mask = np.ones(space.dim, dtype=bool)
            mask[scored[allowed[:k]]] = False
            return SweepPoint(alpha, gamma, n_critical, k, mask)

        for i, j in _pairs_coarse_to_fine(len(self.alphas), len(self.gammas)):
            a, g = self.alphas[i], self.gammas[j]
            p = point(int(g * n_scored), int(a * space.dim + 1e-9), a, g)
            if p is not None:
                yield p
        # the grid is exhausted: every (n_critical, n_pruned) pair, coarse to fine
        max_k = min(space.max_pruned, n_scored)
        for c, k in _pairs_coarse_to_fine(n_scored, max_k):
            p = point(c, k + 1, None, None)
            if p is not None:
                yield p
