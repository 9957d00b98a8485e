"""Random search: the floor every other strategy must beat."""

from __future__ import annotations

import numpy as np

from framework.strategy import Strategy

__all__ = ["RandomSearch"]


class RandomSearch(Strategy):
    """Random valid masks, pruning ratio drawn per mask from U(0, max_ratio)."""

    summary = "random valid masks, pruning ratio drawn per mask (the baseline floor)"
    asks_while_pending = True  # its asks depend on its seed alone, never on what it was told

    def __init__(self, *, max_ratio: float | None = None) -> None:
        """Args:
            max_ratio: largest pruning ratio drawn; ``None`` = the space's ``max_pruned_fraction``.
        """
        if max_ratio is not None and not 0.0 < max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
        self.max_ratio = max_ratio

    def ask(self, n: int) -> np.ndarray:
        return self.problem.space.sample(n, self.rng, max_ratio=self.max_ratio)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        """Random search learns nothing."""
