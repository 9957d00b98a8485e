"""The search space: which attention heads exist, how they are grouped, and what may be pruned.

A mask is a ``bool`` array; ``True`` means *keep* the head, ``False`` means *prune* it.
Flat masks have shape ``[n, L*H]`` (layer-major: flat index ``l*H + h``); grid masks
``[n, L, H]``.  A plain binary space of size ``d`` (synthetic problems) is a space of one
"layer" with ``d`` "heads" and no structure (``structured=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np

__all__ = ["HeadSpace", "as_masks", "read_mask_file", "check_mask_file"]


def as_masks(masks: np.ndarray, dim: int) -> np.ndarray:
    """Validate and return ``masks`` as a ``bool[n, dim]`` array (a single mask becomes ``n=1``)."""
    arr = np.asarray(masks)
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"masks must be boolean or 0/1, got values {np.unique(arr)[:5]}")
        arr = arr.astype(bool)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"masks must have shape [n, {dim}], got {list(arr.shape)}")
    return arr


@dataclass(frozen=True)
class HeadSpace:
    """Heads of a transformer (or bits of a binary problem) and the pruning constraints.

    Args:
        n_layers: number of layers ``L``.
        n_heads: query heads per layer ``H``.
        n_kv_heads: key/value heads per layer (grouped-query attention); ``None`` = ``H``.
            Query head ``h`` belongs to KV group ``h // (H // n_kv_heads)``.
        max_pruned_fraction: at most ``floor(max_pruned_fraction * L*H)`` heads pruned.
        protected: flat indices of heads that are never pruned.
        structured: ``False`` for plain binary spaces (no layers or KV groups to exploit).
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    max_pruned_fraction: float = 1.0
    protected: frozenset[int] = field(default_factory=frozenset)
    structured: bool = True

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"n_layers and n_heads must be >= 1, got {self.n_layers}, {self.n_heads}")
        kv = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        if kv < 1 or self.n_heads % kv:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={kv}")
        object.__setattr__(self, "n_kv_heads", kv)
        if not 0.0 <= self.max_pruned_fraction <= 1.0:
            raise ValueError(f"max_pruned_fraction must be in [0, 1], got {self.max_pruned_fraction}")
        prot = frozenset(int(i) for i in self.protected)
        bad = [i for i in prot if not 0 <= i < self.dim]
        if bad:
            raise ValueError(f"protected head indices out of range [0, {self.dim}): {sorted(bad)[:5]}")
        object.__setattr__(self, "protected", prot)

    @classmethod
    def binary(cls, dim: int, *, max_pruned_fraction: float = 1.0,
               protected: frozenset[int] | set[int] = frozenset()) -> HeadSpace:
        """A plain binary space of ``dim`` bits, no structure."""
        return cls(1, dim, None, max_pruned_fraction, frozenset(protected), structured=False)

    # ----------------------------------------------------------------- sizes
    @property
    def dim(self) -> int:
        """Number of heads ``L*H`` (length of a flat mask)."""
        return self.n_layers * self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per KV group."""
        assert self.n_kv_heads is not None
        return self.n_heads // self.n_kv_heads

    @property
    def max_pruned(self) -> int:
        """Largest number of pruned heads a valid mask may have."""
        free = self.dim - len(self.protected)
        return min(free, int(np.floor(self.max_pruned_fraction * self.dim + 1e-9)))

    @cached_property
    def protected_mask(self) -> np.ndarray:
        """``bool[L*H]``, True where the head is protected."""
        out = np.zeros(self.dim, dtype=bool)
        out[list(self.protected)] = True
        return out

    @cached_property
    def layer_of(self) -> np.ndarray:
        """``int[L*H]``: layer of each flat head."""
        return np.repeat(np.arange(self.n_layers), self.n_heads)

    @cached_property
    def kv_group_of(self) -> np.ndarray:
        """``int[L*H]``: global KV-group id (``layer * n_kv_heads + group``) of each flat head."""
        h = np.tile(np.arange(self.n_heads), self.n_layers)
        return self.layer_of * self.n_kv_heads + h // self.group_size

    # ---------------------------------------------------------- conversions
    def to_grid(self, masks: np.ndarray) -> np.ndarray:
        """``bool[n, L*H]`` -> ``bool[n, L, H]``."""
        m = as_masks(masks, self.dim)
        return m.reshape(m.shape[0], self.n_layers, self.n_heads)

    def to_flat(self, grid: np.ndarray) -> np.ndarray:
        """``bool[n, L, H]`` (or ``[L, H]``) -> ``bool[n, L*H]``."""
        g = np.asarray(grid)
        if g.ndim == 2:
            g = g[None]
        if g.ndim != 3 or g.shape[1:] != (self.n_layers, self.n_heads):
            raise ValueError(f"grid masks must have shape [n, {self.n_layers}, {self.n_heads}], got {list(g.shape)}")
        return as_masks(g.reshape(g.shape[0], -1), self.dim)

    def keep_all(self, n: int = 1) -> np.ndarray:
        """``n`` copies of the unpruned mask."""
        return np.ones((n, self.dim), dtype=bool)

    # ----------------------------------------------------------- constraints
    def is_valid(self, masks: np.ndarray) -> np.ndarray:
        """``bool[n]``: whether each mask keeps every protected head and prunes at most ``max_pruned``."""
        m = as_masks(masks, self.dim)
        n_pruned = (~m).sum(axis=1)
        return (n_pruned <= self.max_pruned) & m[:, self.protected_mask].all(axis=1)

    def repair(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return valid copies: protected heads restored, excess pruned heads restored at random."""
        m = as_masks(masks, self.dim).copy()
        m[:, self.protected_mask] = True
        for row in m:
            pruned = np.flatnonzero(~row)
            excess = pruned.size - self.max_pruned
            if excess > 0:
                row[rng.choice(pruned, size=excess, replace=False)] = True
        return m

    def sample(self, n: int, rng: np.random.Generator, *, max_ratio: float | None = None,
               ratios: np.ndarray | None = None) -> np.ndarray:
        """``n`` random valid masks, the pruning ratio drawn per mask.

        Each mask prunes ``k`` heads chosen uniformly among the unprotected ones, with
        ``k = round(ratio * dim)`` and ``ratio ~ U(0, max_ratio)`` unless ``ratios`` gives them.
        ``max_ratio`` defaults to ``max_pruned_fraction``; ``k`` is at least 1.
        """
        top = self.max_pruned_fraction if max_ratio is None else min(max_ratio, self.max_pruned_fraction)
        r = rng.uniform(0.0, top, size=n) if ratios is None else np.asarray(ratios, dtype=float)
        free = np.flatnonzero(~self.protected_mask)
        out = np.ones((n, self.dim), dtype=bool)
        for i, ratio in enumerate(r):
            k = int(np.clip(round(ratio * self.dim), 1 if self.max_pruned else 0, self.max_pruned))
            out[i, rng.choice(free, size=k, replace=False)] = False
        return out

    # ------------------------------------------------------------- topology
    @cached_property
    def graph(self) -> nx.Graph:
        """Head topology: one node per flat head (attributes ``layer``, ``head``, ``kv_group``,
        ``protected``); edges ``kind="kv"`` join heads sharing a KV group, ``kind="layer"``
        the other heads of the same layer.  A binary space has nodes and no edges."""
        g = nx.Graph(n_layers=self.n_layers, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads)
        for i in range(self.dim):
            g.add_node(i, layer=int(self.layer_of[i]), head=i % self.n_heads,
                       kv_group=int(self.kv_group_of[i]), protected=bool(self.protected_mask[i]))
        if self.structured:
            for layer in range(self.n_layers):
                idx = range(layer * self.n_heads, (layer + 1) * self.n_heads)
                for a in idx:
                    for b in idx:
                        if a < b:
                            same = self.kv_group_of[a] == self.kv_group_of[b]
                            g.add_edge(a, b, kind="kv" if same else "layer")
        return g

    def neighbours(self, head: int, kind: str) -> np.ndarray:
        """Flat indices joined to ``head`` by edges of ``kind`` (``"kv"`` or ``"layer"``)."""
        g = self.graph
        return np.array(sorted(j for j in g.neighbors(head) if g.edges[head, j]["kind"] == kind), dtype=int)

    def describe(self) -> dict:
        """JSON-able description (part of a problem's fingerprint)."""
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "n_kv_heads": self.n_kv_heads,
                "max_pruned_fraction": self.max_pruned_fraction,
                "protected": sorted(self.protected), "structured": self.structured}


def _mask_data(path, expected: str) -> tuple[list, list | None, list, dict]:
    """``(data, rows or None, flat values, {"layers"/"heads" given in the file})`` of a mask file, or
    an error naming the file and ``expected``: checks that need no head space."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file {str(path)!r} does not exist; expected a JSON file with {expected}")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"mask file {str(path)!r} is not valid JSON ({exc}); expected {expected}") from None
    meta: dict = {}
    if isinstance(data, dict):
        if "mask" not in data:
            raise ValueError(f"mask file {str(path)!r} holds an object without a 'mask' key; expected {expected}")
        meta = {k: data[k] for k in ("layers", "heads") if k in data}
        data = data["mask"]
    if not isinstance(data, list):
        raise ValueError(f"mask file {str(path)!r} holds {type(data).__name__}; expected {expected}")
    rows = data if data and all(isinstance(r, list) for r in data) else None
    values = [v for r in rows for v in r] if rows is not None else data
    bad = [v for v in values if isinstance(v, list | dict | str) or v not in (0, 1)]
    if bad:
        raise ValueError(f"mask file {str(path)!r} holds values other than 0/1 (e.g. {bad[0]!r}); expected {expected}")
    return data, rows, values, meta


def check_mask_file(path) -> None:
    """The checks of :func:`read_mask_file` that need no head space (the file exists, is JSON, holds
    0/1 values): run them before a model loads."""
    _mask_data(path, "a list of 0/1 values (flat and layer-major, or one list per layer)")


def read_mask_file(path, space: HeadSpace) -> np.ndarray:
    """Read a mask JSON file into ``bool[L*H]`` (layer-major, ``True`` = keep).

    Accepted contents: a flat list of ``L*H`` 0/1 (or true/false); ``L`` lists of ``H``; or an
    object with a ``"mask"`` key holding either (``head_mask.json`` as written by an export,
    whose ``layers``/``heads`` must then match).  Anything else raises ``ValueError`` naming
    what was expected.
    """
    n_layers, n_heads = space.n_layers, space.n_heads
    expected = f"a flat list of {space.dim} 0/1 values or {n_layers} lists of {n_heads} 0/1 values"
    _, rows, values, meta = _mask_data(path, expected)
    name = repr(str(path))
    for key, want in (("layers", n_layers), ("heads", n_heads)):
        if key in meta and meta[key] != want:
            raise ValueError(f"mask file {name} is for {key}={meta[key]}, expected {key}={want}")
    if rows is not None and (len(rows) != n_layers or any(len(r) != n_heads for r in rows)):
        raise ValueError(f"mask file {name} holds {len(rows)} lists of lengths {sorted({len(r) for r in rows})}; "
                         f"expected {expected}")
    if len(values) != space.dim:
        raise ValueError(f"mask file {name} holds {len(values)} values; expected {expected}")
    return np.array(values, dtype=int).astype(bool)
