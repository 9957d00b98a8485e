"""Trust regions: keep an acquisition optimizer where the surrogate has seen data.

Far from the told masks a surrogate's optimism is unfounded and a few wild predictions wreck a
batch.  Two parts any strategy can use:

- :class:`PrunedCountCap`: no mask prunes more than a little beyond the most heads pruned by
  a told front mask (the space's own limit otherwise);
- :class:`HammingTrustRegion`: each chain stays within a Hamming radius of its start; the
  radius grows after a round that improved the told front and shrinks after one that did
  not, and restarts at its initial size when it collapses below one flip.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from acquisition.base import SearchState
from framework.pareto import non_dominated
from framework.space import HeadSpace

__all__ = ["HammingTrustRegion", "PrunedCountCap"]


class PrunedCountCap:
    """At most ``max(k + 2, ceil((1 + growth) * k))`` heads pruned, ``k`` the most heads pruned by a
    told non-dominated mask inside the reference box (any front mask, if none is inside).

    Args:
        growth: how far beyond ``k`` the cap reaches (>= 0).
    """

    def __init__(self, *, growth: float = 0.5) -> None:
        if not (math.isfinite(growth) and growth >= 0):
            raise ValueError(f"growth must be a finite number >= 0, got {growth}")
        self.growth = float(growth)

    def cap(self, state: SearchState) -> int:
        """The pruned-count limit for the told data ``state``."""
        X, Y = state.X, state.Y
        front = non_dominated(Y)
        inside = front & np.all(Y < state.ref, axis=1)
        front = inside if inside.any() else front  # masks that count, else the whole front
        k = int((~X[front]).sum(axis=1).max()) if front.any() else 0
        return max(k + 2, int(math.ceil((1.0 + self.growth) * k)))

    def limit(self, space: HeadSpace, state: SearchState) -> HeadSpace:
        """``space`` with its pruned-count limit lowered to :meth:`cap` (unchanged if already lower)."""
        cap = self.cap(state)
        return dataclasses.replace(space, max_pruned_fraction=cap / space.dim) if cap < space.max_pruned else space


class HammingTrustRegion:
    """An adaptive Hamming radius: initially ``max(min_radius, ceil(initial_ratio * d))``, times
    ``factor`` after a round that improved the told front, divided by it after one that did not,
    back to the initial radius when it falls below one flip, never above ``d``.

    Args:
        initial_ratio: initial radius as a share of the heads, in (0, 1].
        factor: growth and shrink factor (> 1).
        min_radius: smallest initial radius (>= 1).
        adaptive: ``False`` keeps the initial radius for good (:meth:`fixed`).
    """

    def __init__(self, *, initial_ratio: float = 0.02, factor: float = 1.5, min_radius: float = 2.0,
                 adaptive: bool = True) -> None:
        if not 0.0 < initial_ratio <= 1.0:
            raise ValueError(f"initial_ratio must be in (0, 1], got {initial_ratio}")
        if not factor > 1.0:
            raise ValueError(f"factor must be > 1, got {factor}")
        if not min_radius >= 1.0:
            raise ValueError(f"min_radius must be >= 1, got {min_radius}")
        self.initial_ratio = float(initial_ratio)
        self.factor = float(factor)
        self.min_radius = float(min_radius)
        self.adaptive = bool(adaptive)
        self._dim: int | None = None
        self._initial = self._radius = None
        self.restarts = 0

    @classmethod
    def fixed(cls, radius: int) -> HammingTrustRegion:
        """A region of ``radius`` flips that never adapts (BoTorch local searches' ``max_flips``)."""
        if radius < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        return cls(initial_ratio=1.0, min_radius=float(radius), adaptive=False)

    def start(self, dim: int) -> HammingTrustRegion:
        """Reset the radius for a space of ``dim`` heads; returns ``self``."""
        self._dim = int(dim)
        self._initial = (max(self.min_radius, math.ceil(self.initial_ratio * dim)) if self.adaptive
                         else self.min_radius)
        self._radius = self._initial
        self.restarts = 0
        return self

    @property
    def radius(self) -> float:
        if self._radius is None:
            raise RuntimeError("call start(dim) before using the trust region")
        return self._radius

    @property
    def max_distance(self) -> int:
        """The radius as a whole number of flips (what an optimizer's ``max_distance`` takes)."""
        return int(math.ceil(self.radius))

    def update(self, improved: bool) -> None:
        """Grow after a round that improved the told front, shrink after one that did not."""
        if not self.adaptive:
            return
        r = self.radius * self.factor if improved else self.radius / self.factor
        if r < 1.0:
            r = self._initial
            self.restarts += 1
        self._radius = min(r, float(self._dim))
