"""What a strategy was told: masks and their values, one row per distinct mask.

Every built-in strategy keeps its told data in one :class:`History` (MCBO's shared data
buffer): the surrogate fits on it, trust regions read its front, designs ask it which masks
are new.  Masks are keyed by :func:`pack_mask` (the same key the evaluation store uses).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from framework.pareto import non_dominated

__all__ = ["History", "pack_mask", "squash_beyond", "unpack_mask"]


def pack_mask(mask: np.ndarray) -> bytes:
    """``bool[d]`` -> bytes (``np.packbits``, big-endian bit order): the key of a mask."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes()


def unpack_mask(blob: bytes, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_mask`: ``bool[n_bits]``."""
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n_bits).astype(bool)


def squash_beyond(yn: np.ndarray, ref_n: np.ndarray) -> np.ndarray:
    """Normalized values ``float[k, m]`` squashed (log) beyond ``max(1, ref_n)`` per objective:
    ``top + log1p(y - top)`` above ``top``, unchanged below.  What every surrogate is fitted to, so
    a few wild values (a mask that wrecks the perplexity) do not dominate the fit; monotone, and
    the identity wherever hypervolume is counted."""
    top = np.maximum(np.asarray(ref_n, dtype=float), 1.0)
    return np.where(yn > top, top + np.log1p(np.maximum(yn - top, 0.0)), yn)


class History:
    """Told masks ``bool[n, d]`` and raw values ``float[n, m]`` (NaN rows: failed), in the
    order first told; a mask told again keeps its first values.

    Args:
        dim: heads per mask ``d``.
        n_objectives: objectives per value ``m``.
        normalize: optional map of raw values to normalized ones (``ProblemInfo.normalize``),
            used by :meth:`normalized` and :meth:`front`.
    """

    def __init__(self, dim: int, n_objectives: int, normalize=None) -> None:
        self.dim = int(dim)
        self.n_objectives = int(n_objectives)
        self._normalize = normalize
        self._masks: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._index: dict[bytes, int] = {}

    @classmethod
    def of(cls, problem) -> History:
        """An empty history for a :class:`~framework.strategy.ProblemInfo`."""
        return cls(problem.space.dim, problem.n_objectives, problem.normalize)

    # ------------------------------------------------------------------ adding
    def add(self, masks: np.ndarray, values: np.ndarray) -> list[bool]:
        """Record ``bool[n, d]`` masks with ``float[n, m]`` values; returns, per row, whether the
        mask was new (rows of masks already told are ignored)."""
        masks = np.asarray(masks, dtype=bool).reshape(-1, self.dim)
        values = np.asarray(values, dtype=float).reshape(len(masks), -1)
        new = []
        for mask, value in zip(masks, values, strict=True):
            key = pack_mask(mask)
            fresh = key not in self._index
            if fresh:
                self._index[key] = len(self._masks)
                self._masks.append(mask.copy())
                self._values.append(value.copy())
            new.append(fresh)
        return new

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._masks)

    def __contains__(self, mask: np.ndarray | bytes) -> bool:
        key = mask if isinstance(mask, bytes) else pack_mask(mask)
        return key in self._index

    def is_new(self, mask: np.ndarray | bytes, *also: Iterable[bytes]) -> bool:
        """Whether ``mask`` was never told (and is in none of the key sets ``also``)."""
        key = mask if isinstance(mask, bytes) else pack_mask(mask)
        return key not in self._index and not any(key in s for s in also)

    def keys(self) -> set[bytes]:
        """Keys of every told mask (a new set: callers may add to it)."""
        return set(self._index)

    def index(self, mask: np.ndarray | bytes) -> int | None:
        """Row of ``mask`` in the history, ``None`` if never told."""
        return self._index.get(mask if isinstance(mask, bytes) else pack_mask(mask))

    def value(self, mask: np.ndarray | bytes) -> np.ndarray | None:
        """Raw values ``float[m]`` of a told mask, ``None`` if never told."""
        i = self.index(mask)
        return None if i is None else self._values[i]

    @property
    def masks(self) -> np.ndarray:
        """``bool[n, d]`` every told mask."""
        return np.array(self._masks, dtype=bool).reshape(-1, self.dim)

    @property
    def values(self) -> np.ndarray:
        """``float[n, m]`` raw values (NaN rows: failed)."""
        return np.array(self._values, dtype=float).reshape(-1, self.n_objectives)

    def finite(self) -> np.ndarray:
        """``bool[n]``: rows whose every value is finite."""
        return np.isfinite(self.values).all(axis=1) if self._values else np.zeros(0, dtype=bool)

    def n_finite(self) -> int:
        return int(self.finite().sum())

    def normalized(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite rows only: masks ``bool[k, d]`` and values ``float[k, m]`` normalized (raw
        values when the history has no ``normalize``)."""
        ok = self.finite()
        Y = self.values[ok]
        return self.masks[ok], (self._normalize(Y) if self._normalize is not None else Y)

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        """The non-dominated finite rows: masks ``bool[k, d]`` and normalized values ``float[k, m]``."""
        X, Y = self.normalized()
        if not len(Y):
            return X, Y
        keep = non_dominated(Y)
        return X[keep], Y[keep]
