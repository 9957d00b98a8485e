"""Pareto local search by single bit flips: the example strategy of ``docs/writing-a-strategy.md``."""

from __future__ import annotations

import numpy as np
from framework.history import History, pack_mask, unpack_mask
from framework.strategy import Strategy

__all__ = ["GreedyFlip"]


class GreedyFlip(Strategy):
    """Pareto local search: propose unexplored one-bit neighbours of the non-dominated masks.

    The run starts with the keep-all mask and ``n_random_starts`` random valid masks.  Each
    later mask is a single-bit flip of a mask on the current non-dominated set of told
    values (round-robin over that set, least explored first; bit order random per mask).
    When every valid neighbour of the set has been proposed, a random valid mask restarts
    the search.  Failed (NaN) evaluations never enter the set.
    """

    summary = "Pareto local search: unexplored single-bit flips of the non-dominated masks (example plug-in)"

    def __init__(self, *, n_random_starts: int = 4, max_ratio: float | None = None) -> None:
        """Args:
            n_random_starts: random valid masks proposed after the keep-all mask, before any search.
            max_ratio: largest pruning ratio of random masks; ``None`` = the space's limit.
        """
        if n_random_starts < 0:
            raise ValueError(f"n_random_starts must be >= 0, got {n_random_starts}")
        if max_ratio is not None and not 0.0 < max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
        self.n_random_starts = n_random_starts
        self.max_ratio = max_ratio

    def _setup(self) -> None:
        space = self.problem.space
        self._free = np.flatnonzero(~space.protected_mask)
        # told masks and raw values (no normalize: the front is taken on the values as told)
        self._told = History(space.dim, self.problem.n_objectives)
        self._proposed: set[bytes] = set()
        self._flip_order: dict[bytes, list[int]] = {}                  # key -> bits still to flip
        starts = [space.keep_all(1)[0]]
        if self.n_random_starts:
            starts += list(space.sample(self.n_random_starts, self.rng, max_ratio=self.max_ratio))
        self._starts = starts

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        while self._starts and len(out) < n:
            self._propose(self._starts.pop(0), out)
        archive = self._archive()
        while len(out) < n:
            progressed = False
            for key in archive:  # one neighbour per archive mask per pass: a diverse batch
                if len(out) == n:
                    break
                neighbour = self._next_neighbour(key)
                if neighbour is not None:
                    self._propose(neighbour, out)
                    progressed = True
            if not progressed:  # the archive is a local optimum: restart at random
                self._propose(self._random_new(), out)
        return np.array(out, dtype=bool)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        self._told.add(masks, values)

    # ------------------------------------------------------------ internals
    def _propose(self, mask: np.ndarray, out: list[np.ndarray]) -> None:
        self._proposed.add(pack_mask(mask))
        out.append(mask)

    def _archive(self) -> list[bytes]:
        """Keys of the non-dominated told masks, least explored first (ties: oldest first)."""
        front = [pack_mask(x) for x in self._told.front()[0]]  # finite rows only, in told order
        explored = {k: len(self._free) - len(self._flip_order.get(k, self._free)) for k in front}
        return sorted(front, key=lambda k: explored[k])  # stable sort keeps insertion order on ties

    def _next_neighbour(self, key: bytes) -> np.ndarray | None:
        """The next valid, never proposed one-bit flip of the told mask ``key``, or ``None``."""
        space = self.problem.space
        base = unpack_mask(key, space.dim)
        order = self._flip_order.setdefault(key, list(self.rng.permutation(self._free)))
        while order:
            x = base.copy()
            bit = order.pop(0)
            x[bit] = ~x[bit]
            if pack_mask(x) not in self._proposed and space.is_valid(x)[0]:
                return x
        return None

    def _random_new(self) -> np.ndarray:
        """A random valid mask, new if one is found in a few tries (re-asking a told mask is free)."""
        space = self.problem.space
        for _ in range(20):
            x = space.sample(1, self.rng, max_ratio=self.max_ratio)[0]
            if pack_mask(x) not in self._proposed:
                return x
        return x
