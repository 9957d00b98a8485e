"""Scalarizations of optimistic predictions: threshold, augmented Chebyshev, their mixture, and a
weighted lower confidence bound.

Each scores ``y = mean - beta * std`` (the optimistic mean: ``beta = 0`` trusts the mean,
larger values favour masks the surrogate is unsure about), in normalized units.  Members
(annealing chains) get their own parameters: thresholds spread geometrically between a low
and a high relative limit, weight vectors spread over the simplex.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from acquisition.base import Acquisition

__all__ = ["ChebyshevScalarization", "LowerConfidenceBound", "MixedScalarization", "ThresholdScalarization",
           "spread_weights"]

CHEBYSHEV_AUGMENT = 0.05  # weight of the sum term of the augmented Chebyshev scalarization


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def spread_weights(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``float[n, m]`` weight vectors: evenly spread in ``[0.05, 0.95]`` for two objectives
    (the middle one for ``n = 1``), Dirichlet(1) draws for more."""
    if m == 2:
        a = np.linspace(0.05, 0.95, n) if n > 1 else np.array([0.5])
        return np.stack([a, 1.0 - a], axis=1)
    return rng.dirichlet(np.ones(m), size=n)


class ThresholdScalarization(Acquisition):
    """The bias objective plus ``penalty`` per normalized unit a cost objective exceeds its
    threshold; member ``i`` allows ``y <= (1 + t_i) * y(unpruned)`` on every cost (raw units;
    ``y(unpruned) + t_i`` in normalized units where the unpruned value is not positive), ``t_i``
    spread geometrically over ``thresholds = (low, high)``.  The paper's objective (Attention
    Pruning: bias under a perplexity limit)."""

    name = "threshold"
    summary = "bias + penalty above relative cost thresholds (geometric spread over members)"

    def __init__(self, *, thresholds: tuple[float, float] = (0.01, 0.30), penalty: float = 10.0,
                 beta: float = 0.0) -> None:
        if isinstance(thresholds, str):  # "0.01,0.3" from a command line
            thresholds = thresholds.split(",")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 2 or not 0.0 <= thresholds[0] <= thresholds[1]:
            raise ValueError(f"thresholds must be (low, high) with 0 <= low <= high, got {thresholds}")
        if not penalty > 0:
            raise ValueError(f"penalty must be > 0, got {penalty}")
        self.thresholds = thresholds
        self.penalty = float(penalty)
        self.beta = _check_beta(beta)

    def _setup(self, rng: np.random.Generator) -> None:
        s, n = self.state, self.n_members
        lo, hi = np.asarray(s.bounds, dtype=float)
        span = np.where(hi > lo, hi - lo, 1.0)
        low, high = max(self.thresholds[0], 1e-6), max(self.thresholds[1], 1e-6)
        ts = np.geomspace(low, high, n) if n > 1 else np.array([math.sqrt(low * high)])
        thr = np.full((n, s.n_objectives), np.inf)
        costs = list(s.costs)
        for i, t in enumerate(ts):
            rel = ((1.0 + t) * s.baseline_raw - lo) / span
            thr[i, costs] = np.where(s.baseline_raw[costs] > 0, rel[costs], s.baseline[costs] + t)
        self._thr = torch.as_tensor(thr, dtype=torch.float32)

    def score(self, mean, std, member):
        y = mean - self.beta * std
        thr = self._thr[member]
        excess = (y - thr).clamp(min=0.0)
        excess = torch.where(torch.isfinite(thr), excess, torch.zeros_like(excess))
        return y[:, self.state.bias] + self.penalty * excess.sum(dim=1)


class ChebyshevScalarization(Acquisition):
    """Augmented Chebyshev: ``max_j w_j (y_j - ideal_j) / scale_j + 0.05 * sum_j ...``, ideal and
    scale from the told front, member ``i`` with its own weights (:func:`spread_weights`)."""

    name = "chebyshev"
    summary = "augmented Chebyshev scalarization, weights spread over members"

    def __init__(self, *, beta: float = 0.0) -> None:
        self.beta = _check_beta(beta)

    def _setup(self, rng: np.random.Generator) -> None:
        front = self.state.front()
        ideal = front.min(axis=0)
        self._ideal = torch.as_tensor(ideal, dtype=torch.float32)
        self._scale = torch.as_tensor(np.maximum(front.max(axis=0) - ideal, 0.05), dtype=torch.float32)
        self._w = torch.as_tensor(spread_weights(self.n_members, self.state.n_objectives, rng), dtype=torch.float32)

    def score(self, mean, std, member):
        wd = self._w[member] * (mean - self.beta * std - self._ideal) / self._scale
        return wd.max(dim=1).values + CHEBYSHEV_AUGMENT * wd.sum(dim=1)


class LowerConfidenceBound(Acquisition):
    """Weighted sum of the optimistic means ``sum_j w_j (mean_j - beta * std_j)``, member ``i``
    with its own weights (:func:`spread_weights`): the random-scalarization LCB of Paria et al.
    (UAI 2019) with linear scalarizations."""

    name = "lcb"
    summary = "optimistic mean (lower confidence bound), linear weights spread over members"

    def __init__(self, *, beta: float = 1.0) -> None:
        self.beta = _check_beta(beta)

    def _setup(self, rng: np.random.Generator) -> None:
        self._w = torch.as_tensor(spread_weights(self.n_members, self.state.n_objectives, rng), dtype=torch.float32)

    def score(self, mean, std, member):
        return ((mean - self.beta * std) * self._w[member]).sum(dim=1)


class MixedScalarization(Acquisition):
    """The first ``floor(threshold_share * n)`` members use :class:`ThresholdScalarization`, the
    others :class:`ChebyshevScalarization` (a share of 0 or 1 gives one kind only): chains that
    hold the cost under a limit beside chains spread over the front."""

    name = "mixed"
    summary = "threshold scalarization on a share of the members, augmented Chebyshev on the rest"

    def __init__(self, *, threshold_share: float = 0.5, thresholds: tuple[float, float] = (0.01, 0.30),
                 penalty: float = 10.0, beta: float = 0.0) -> None:
        if not 0.0 <= threshold_share <= 1.0:
            raise ValueError(f"threshold_share must be in [0, 1], got {threshold_share}")
        self.threshold_share = float(threshold_share)
        self._threshold = ThresholdScalarization(thresholds=thresholds, penalty=penalty, beta=beta)
        self._chebyshev = ChebyshevScalarization(beta=beta)
        self.thresholds, self.penalty, self.beta = self._threshold.thresholds, self._threshold.penalty, float(beta)

    def _setup(self, rng: np.random.Generator) -> None:
        n = self.n_members
        n_thr = n if self.threshold_share >= 1.0 else int(self.threshold_share * n)
        self._n_thr = n_thr
        if n_thr:
            self._threshold.setup(self.state, n_thr, rng)
        if n - n_thr:
            self._chebyshev.setup(self.state, n - n_thr, rng)

    def score(self, mean, std, member):
        out = torch.empty(len(member), dtype=torch.float32)
        thr = member < self._n_thr
        if thr.any():
            out[thr] = self._threshold.score(mean[thr], std[thr], member[thr])
        if (~thr).any():
            out[~thr] = self._chebyshev.score(mean[~thr], std[~thr], member[~thr] - self._n_thr)
        return out
