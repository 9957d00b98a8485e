"""Synthetic binary problems: fast, seeded stand-ins for the real model.

Two bi-objective (by default) problems over a plain binary space (``HeadSpace.binary``),
cheap enough to run whole strategy comparisons on a CPU, with an exact reference front for
small instances:

* ``rho-mnk`` (:class:`RhoMNKProblem`): rho-MNK landscapes (Aguirre & Tanaka 2004 MNK;
  Verel, Liefooghe, Jourdan & Dhaenens 2013 rho-MNK), tunable ruggedness ``k`` and
  correlation ``rho`` between objectives.
* ``knapsack`` (:class:`KnapsackProblem`): the multi-objective 0/1 knapsack of Zitzler &
  Thiele (1999) with two profit vectors and one capacity constraint, made unconstrained for
  the strategies by the Zitzler-Thiele greedy repair.

Every objective is minimized; the mask bit ``x_j`` is the ``bool`` entry ``j`` of the mask
(``True`` = keep = 1).  Evaluation is vectorized numpy and deterministic.  Roles (for the pick
rule and plots of a run, :class:`~framework.problem.Problem`): objective 0 stands in for the
bias, the other objective(s) for the utility cost.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from scipy.special import ndtr

from framework.pareto import non_dominated
from framework.problem import SEARCH, Problem
from framework.space import HeadSpace
from objectives.noisy_sensitivities import NoisyFlipSensitivities, noise_entry, noise_ratios

__all__ = ["RhoMNKProblem", "KnapsackProblem"]

# Masks evaluated per block in brute force (bounds the memory of the [n, N, K+1] gathers).
_BLOCK = 1 << 15


def _all_masks(n_bits: int, start: int, stop: int) -> np.ndarray:
    """``bool[stop-start, n_bits]``: the masks whose integer codes are ``start..stop-1``
    (bit ``j`` of the code is mask entry ``j``)."""
    codes = np.arange(start, stop, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_bits, dtype=np.int64)) & 1).astype(bool)


def _brute_force_front(space: HeadSpace, values_of: Callable[[np.ndarray], np.ndarray], m: int) -> np.ndarray:
    """Non-dominated objective vectors ``float[k, m]`` (unique rows, sorted) of every valid
    mask of ``space``, found by evaluating all ``2^d`` masks with ``values_of``
    (``bool[n, d]`` -> ``float[n, m]``, the problem's evaluation without per-mask info)."""
    d = space.dim
    best = np.empty((0, m))
    for start in range(0, 1 << d, _BLOCK):
        masks = _all_masks(d, start, min(start + _BLOCK, 1 << d))
        masks = masks[space.is_valid(masks)]
        if len(masks):
            cand = np.vstack([best, values_of(masks)])
            best = cand[non_dominated(cand)]
    return np.unique(best, axis=0)


def _burn_cpu(seconds: float) -> None:
    """Keep this thread busy for ``seconds`` of its own CPU time (not wall time: two such loops
    sharing one core take twice as long, as real evaluations would)."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        x += 1


def _instance_sha(*arrays: np.ndarray) -> str:
    """Short hash of the generated instance (so a fingerprint also changes if the generator's
    random stream ever changes, not only when the settings do)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class RhoMNKProblem(NoisyFlipSensitivities, Problem):
    """rho-MNK landscape: ``m`` NK-landscape objectives over ``N`` bits with ``K`` epistatic
    links per bit and correlation ``rho`` between the objectives' contributions.

    Construction (Verel et al. 2013, random neighbourhoods):

    * bit ``j`` interacts with itself and ``K`` other bits drawn uniformly without
      replacement: ``links[j] = (j, j_1, ..., j_K)`` (``int[N, K+1]``);
    * objective ``o`` has a contribution table ``tables[o, j, :]`` of ``2^(K+1)`` values per
      bit; the value used is ``tables[o, j, idx]`` with ``idx = sum_t x[links[j, t]] << t``
      (so for ``K = 0``, ``idx`` is the bit itself and the landscape is additive);
    * for each ``(j, idx)`` the ``m`` contributions are one draw of a Gaussian copula: a
      multivariate normal with unit variances and equal pairwise correlation
      ``r = 2 sin(pi * rho / 6)``, mapped to ``[0, 1]`` by the normal CDF.  This ``r`` makes
      the *Pearson* correlation of the uniform contributions exactly ``rho`` (Pearson's
      identity ``corr(Phi(X), Phi(Y)) = (6/pi) arcsin(r/2)``), each contribution uniform.
    * fitness ``f_o(x) = (1/N) sum_j tables[o, j, idx_j(x)]`` is maximized in the literature;
      the objective here is ``1 - f_o(x)`` (minimized, in ``[0, 1]``).

    Bounds: row 0 is ``1 - mean_j max_idx tables[o, j]`` (a lower bound on the objective,
    attained when ``K = 0``), row 1 ``1 - mean_j min_idx tables[o, j]`` (an upper bound), so
    every mask normalizes into ``[0, 1]``; the reference point is ``1.1`` in normalized units.
    """

    name = "rho-mnk"
    summary = "rho-MNK landscape: m correlated NK objectives over N bits with K epistatic links (synthetic)"
    bias_objective = 0             # roles: objective 0 stands in for the bias; the cost objectives are the others

    def __init__(self, *, n_bits: int = 64, k: int = 2, rho: float = 0.0, n_objectives: int = 2, seed: int = 0,
                 max_pruned_fraction: float = 1.0, protected: Iterable[int] = (),
                 sensitivity_noise: float | list[float] | None = None, cost_seconds: float = 0.0) -> None:
        """Args:
            n_bits: number of bits ``N`` (mask length), ``>= 1``.
            k: epistatic links per bit ``K``, ``0 <= K < N`` (``0`` = additive objectives).
            rho: target correlation between the objectives' contributions, in
                ``(-1/(m-1), 1]`` (``[-1, 1]`` for ``m = 2``).
            n_objectives: number of objectives ``m >= 2``.
            seed: seed of the instance (links and tables).
            max_pruned_fraction: passed to the space: at most this fraction of bits set False.
            protected: bit indices that must stay True (passed to the space).
            sensitivity_noise: offer noisy head sensitivities with this noise ratio (one value or
                one per objective; :mod:`objectives.noisy_sensitivities`); ``None``: none.
            cost_seconds: CPU seconds each mask's evaluation burns in a busy loop, a stand-in for the
                cost of a real evaluation (throughput and fault tests of the evaluators); it changes
                no value, so it is not part of the fingerprint.
        """
        if not (isinstance(cost_seconds, int | float) and cost_seconds >= 0):
            raise ValueError(f"cost_seconds must be >= 0, got {cost_seconds!r}")
        self.cost_seconds = float(cost_seconds)
        self.n_bits, self.k, self.rho = int(n_bits), int(k), float(rho)
        self.m, self.seed = int(n_objectives), int(seed)
        self.sensitivity_noise = noise_ratios(sensitivity_noise, self.m)
        if self.n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        if not 0 <= self.k < self.n_bits:
            raise ValueError(f"k must be in [0, n_bits) = [0, {self.n_bits}), got {k}")
        if self.k > 16:
            raise ValueError(f"k={k} would need tables of 2^{self.k + 1} values per bit; use k <= 16")
        if self.m < 2:
            raise ValueError(f"n_objectives must be >= 2, got {n_objectives}")
        if not -1.0 / (self.m - 1) < self.rho <= 1.0 and not (self.m == 2 and self.rho == -1.0):
            raise ValueError(f"rho must be in (-1/(m-1), 1] = ({-1.0 / (self.m - 1):.4g}, 1] for m={self.m}, got {rho}")

        self.space = HeadSpace.binary(self.n_bits, max_pruned_fraction=max_pruned_fraction,
                                      protected=frozenset(int(i) for i in protected))
        self.objective_names = tuple(f"one_minus_f{o + 1}" for o in range(self.m))

        rng = np.random.default_rng(self.seed)
        links = np.empty((self.n_bits, self.k + 1), dtype=np.intp)
        for j in range(self.n_bits):
            others = np.delete(np.arange(self.n_bits), j)
            links[j] = [j, *rng.choice(others, size=self.k, replace=False)]
        self.links = links
        r = 2.0 * np.sin(np.pi * self.rho / 6.0)
        cov = np.full((self.m, self.m), r) + (1.0 - r) * np.eye(self.m)
        z = rng.multivariate_normal(np.zeros(self.m), cov, size=(self.n_bits, 1 << (self.k + 1)), method="eigh")
        self.tables = np.ascontiguousarray(np.moveaxis(ndtr(z), -1, 0))  # float[m, N, 2^(K+1)]
        self._powers = (1 << np.arange(self.k + 1)).astype(np.intp)

        lo = 1.0 - self.tables.max(axis=2).mean(axis=1)
        hi = 1.0 - self.tables.min(axis=2).mean(axis=1)
        self.bounds = np.stack([lo, hi])
        self.ref_point = lo + 1.1 * (hi - lo)
        self._front: np.ndarray | None = None

    def contribution_index(self, masks: np.ndarray) -> np.ndarray:
        """``int[n, N]``: the table column ``idx_j`` each bit uses for validated ``bool[n, N]`` masks."""
        gathered = masks[:, self.links]  # bool[n, N, K+1]
        return gathered.astype(np.intp) @ self._powers

    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray:
        out = np.empty((len(masks), self.m))
        cols = np.arange(self.n_bits)
        for start in range(0, len(masks), _BLOCK):
            idx = self.contribution_index(masks[start:start + _BLOCK])
            for o in range(self.m):
                out[start:start + len(idx), o] = 1.0 - self.tables[o, cols, idx].mean(axis=1)
        if self.cost_seconds:
            _burn_cpu(self.cost_seconds * len(masks))
        return out

    def describe(self) -> dict[str, Any]:
        return {"n_bits": self.n_bits, "k": self.k, "rho": self.rho, "n_objectives": self.m, "seed": self.seed,
                "construction": "random-links, gaussian-copula r=2sin(pi*rho/6), objective 1-f",
                "instance_sha": _instance_sha(self.links, self.tables), **noise_entry(self)}

    def reference_front(self) -> np.ndarray | None:
        """Exact front over the valid masks by brute force when ``N <= 16``, else ``None``."""
        if self.n_bits > 16:
            return None
        if self._front is None:
            self._front = _brute_force_front(self.space, lambda x: self._evaluate(x, SEARCH), self.m)
        return self._front.copy()


class KnapsackProblem(NoisyFlipSensitivities, Problem):
    """Bi-objective 0/1 knapsack (Zitzler & Thiele 1999 instances, one capacity constraint).

    Items: ``n`` items with integer weights ``w`` and two integer profit vectors ``p1, p2``,
    all drawn uniformly from ``[10, 100]``; capacity ``C = floor(capacity_ratio * sum(w))``.
    Mask bit ``j`` True means item ``j`` is in the knapsack (``True`` = keep).

    Constraint handling (greedy repair, Zitzler & Thiele): a mask whose selected weight
    exceeds ``C`` is evaluated as the feasible subset obtained by removing its selected items
    in increasing order of ``max_o p_o[j] / w[j]`` (ties: lower index first) until the weight
    fits; protected items are removed last, so never (their total weight must fit).  The
    mask itself is not changed; ``evaluate_with_info`` reports ``feasible`` and ``n_removed``.
    A repaired value is the value of a feasible subset, so no infeasible mask can look better
    than the feasible front.

    Objectives (minimized): ``1 - P_o / sum(p_o)`` with ``P_o`` the profit of the (repaired)
    selection, in ``[0, 1]``.  Bounds: row 0 is ``1 - OPT_o / sum(p_o)`` with ``OPT_o`` the
    single-objective optimum (dynamic programming, ignoring the space's pruning limits, so a
    lower bound), row 1 is ``1`` (empty knapsack, the classic zero-profit reference); the
    reference point is ``1.1`` in normalized units.
    """

    name = "knapsack"
    summary = "bi-objective 0/1 knapsack, one capacity constraint, greedy repair (synthetic)"
    bias_objective = 0             # roles: profit 1 stands in for the bias, profit 2 for the cost
    cost_objectives = (1,)

    def __init__(self, *, n_items: int = 64, capacity_ratio: float = 0.5, seed: int = 0,
                 max_pruned_fraction: float = 1.0, protected: Iterable[int] = (),
                 sensitivity_noise: float | list[float] | None = None) -> None:
        """Args:
            n_items: number of items (mask length), ``>= 1``.
            capacity_ratio: capacity as a fraction of the total weight, in ``(0, 1]``.
            seed: seed of the instance (weights, profits).
            max_pruned_fraction: passed to the space: at most this fraction of items left out.
            protected: items that are always selected (passed to the space); their total
                weight must fit in the capacity.
            sensitivity_noise: noisy head sensitivities (see :class:`RhoMNKProblem`); ``None``: none.
        """
        self.n_items, self.capacity_ratio, self.seed = int(n_items), float(capacity_ratio), int(seed)
        self.sensitivity_noise = noise_ratios(sensitivity_noise, 2)
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        if not 0.0 < self.capacity_ratio <= 1.0:
            raise ValueError(f"capacity_ratio must be in (0, 1], got {capacity_ratio}")
        self.space = HeadSpace.binary(self.n_items, max_pruned_fraction=max_pruned_fraction,
                                      protected=frozenset(int(i) for i in protected))
        self.objective_names = ("one_minus_profit1", "one_minus_profit2")

        rng = np.random.default_rng(self.seed)
        self.weights = rng.integers(10, 101, size=self.n_items).astype(np.int64)
        self.profits = rng.integers(10, 101, size=(2, self.n_items)).astype(np.int64)  # int[2, n]
        self.capacity = int(np.floor(self.capacity_ratio * self.weights.sum()))
        prot = self.space.protected_mask
        if self.weights[prot].sum() > self.capacity:
            raise ValueError(f"protected items weigh {int(self.weights[prot].sum())} > capacity {self.capacity}")
        # Removal order of the repair: protected last, then by ascending max profit/weight ratio.
        ratio = (self.profits / self.weights).max(axis=0)
        self._order = np.lexsort((np.arange(self.n_items), ratio, prot))
        self._totals = self.profits.sum(axis=1)

        best = np.array([self._single_objective_optimum(p) for p in self.profits])
        self.bounds = np.stack([1.0 - best / self._totals, np.ones(2)])
        self.ref_point = self.bounds[0] + 1.1 * (self.bounds[1] - self.bounds[0])
        self._front: np.ndarray | None = None

    def _single_objective_optimum(self, profits: np.ndarray) -> int:
        """Largest total of ``profits`` over subsets that fit the capacity (0/1 knapsack DP)."""
        best = np.zeros(self.capacity + 1, dtype=np.int64)  # best[c]: max profit within weight c
        for w, p in zip(self.weights, profits, strict=True):
            if w <= self.capacity:
                best[w:] = np.maximum(best[w:], best[:-w] + p)
        return int(best[-1])

    def repair(self, masks: np.ndarray) -> np.ndarray:
        """``bool[n, N]``: the selections ``masks`` (validated ``bool[n, N]``) are evaluated as."""
        sel = masks[:, self._order]
        load = sel * self.weights[self._order]
        # Items are removed from the front of the order; item at position q survives iff the
        # selected weight from q to the end fits (that weight only shrinks as q grows).
        suffix = np.cumsum(load[:, ::-1], axis=1)[:, ::-1]
        kept = np.empty_like(masks)
        kept[:, self._order] = sel & (suffix <= self.capacity)
        return kept

    def _values(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objectives ``float[n, 2]``, repaired selections ``bool[n, N]`` and their profits ``int[n, 2]``."""
        kept = self.repair(masks)
        profit = kept.astype(np.int64) @ self.profits.T
        return 1.0 - profit / self._totals, kept, profit

    def _evaluate(self, masks: np.ndarray, split: str) -> tuple[np.ndarray, list[dict]]:
        values, kept, profit = self._values(masks)
        removed = masks.sum(axis=1) - kept.sum(axis=1)
        weight = kept.astype(np.int64) @ self.weights
        info = [{"feasible": bool(r == 0), "n_removed": int(r), "profit": [int(a), int(b)], "weight": int(wt)}
                for r, (a, b), wt in zip(removed, profit, weight, strict=True)]
        return values, info

    def describe(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "capacity_ratio": self.capacity_ratio, "seed": self.seed,
                "capacity": self.capacity,
                "construction": "zitzler-thiele U{10..100}, greedy repair by max profit/weight, objective 1-P/sum(p)",
                "instance_sha": _instance_sha(self.weights, self.profits), **noise_entry(self)}

    def reference_front(self) -> np.ndarray | None:
        """Exact front over the valid masks by brute force when ``n_items <= 20``, else ``None``."""
        if self.n_items > 20:
            return None
        if self._front is None:
            self._front = _brute_force_front(self.space, lambda x: self._values(x)[0], 2)
        return self._front.copy()
