"""Initial designs and "fill with new masks": the masks a strategy asks before (or instead of)
a model can choose.

Built for landscapes where random pruning is costly (on the embedded 270-head model, pruning
5% of the heads at random raised perplexity by 38% on average): :func:`initial_design` starts
with the unpruned mask (the baseline of every relative threshold), then single-head and
whole-KV-group knock-outs, then low-ratio random masks whose heads are drawn least-used
first, so the design covers the heads evenly.  :func:`random_design` is the plain design of
the BoTorch strategies (random valid masks, a pruning ratio drawn per mask).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from framework.history import pack_mask
from framework.pareto import non_dominated
from framework.space import HeadSpace

__all__ = ["fill_new", "initial_design", "knockouts", "kv_group_knockouts", "random_design", "sensitivity_weights"]


def knockouts(space: HeadSpace, heads: np.ndarray) -> np.ndarray:
    """``bool[len(heads), d]``: one mask per head, that head alone pruned."""
    heads = np.asarray(heads, dtype=int)
    out = np.ones((len(heads), space.dim), dtype=bool)
    out[np.arange(len(heads)), heads] = False
    return out


def kv_group_knockouts(space: HeadSpace) -> list[np.ndarray]:
    """Unprotected head indices of every KV group of two or more heads that the space may prune
    whole (structured spaces only; empty otherwise), in group order."""
    if not space.structured:
        return []
    groups = (np.flatnonzero((space.kv_group_of == k) & ~space.protected_mask) for k in np.unique(space.kv_group_of))
    return [g for g in groups if 1 < g.size <= space.max_pruned]


PRUNED_COUNTS = ("log", "uniform", "mixed")  # how initial_design draws the pruned count of its random masks


def initial_design(space: HeadSpace, n: int, rng: np.random.Generator, *, knockout_fraction: float = 0.4,
                   group_fraction: float = 0.1, initial_max_ratio: float = 0.05,
                   head_weights: np.ndarray | None = None, pruned_counts: str = "log") -> np.ndarray:
    """``bool[n, d]`` distinct valid masks (fewer distinct only in tiny spaces): the unpruned mask;
    ``round(knockout_fraction * (n - 1))`` single-head knock-outs (heads in random order, or best
    ``head_weights`` first); ``round(group_fraction * (n - 1))`` whole-KV-group knock-outs
    (structured spaces); then random masks, pruned count log-uniform (``pruned_counts="log"``:
    most masks prune few heads), uniform (``"uniform"``: every count alike) or the two by turns
    (``"mixed"``: log-uniform on odd draws, uniform on even ones; a redrawn duplicate is a draw) in
    ``[1, max(2, round(initial_max_ratio * d))]``, heads drawn least-used first (with
    ``head_weights``: Gumbel top-k, probability ~ weight / (1 + uses))."""
    if pruned_counts not in PRUNED_COUNTS:
        raise ValueError(f"pruned_counts must be one of {PRUNED_COUNTS}, got {pruned_counts!r}")
    d, free = space.dim, np.flatnonzero(~space.protected_mask)
    out: list[np.ndarray] = [space.keep_all()[0]]
    if n <= 1 or space.max_pruned == 0 or free.size == 0:
        return np.array(out[:n], dtype=bool).reshape(-1, d)
    usage = np.zeros(d)
    rest = n - 1
    order = free[np.argsort(-head_weights[free], kind="stable")] if head_weights is not None else rng.permutation(free)
    chosen = order[:int(round(knockout_fraction * rest))]
    out += list(knockouts(space, chosen))
    usage[chosen] += 1
    groups = kv_group_knockouts(space)
    if groups:
        for k in rng.permutation(len(groups))[:int(round(group_fraction * rest))]:
            mask = np.ones(d, dtype=bool)
            mask[groups[k]] = False
            out.append(mask)
            usage[groups[k]] += 1
    k_max = max(2, int(round(initial_max_ratio * d)))
    k_max = max(1, min(k_max, space.max_pruned, free.size))
    seen = {pack_mask(m) for m in out}
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        log = pruned_counts == "log" or (pruned_counts == "mixed" and tries % 2 == 1)
        k = int(np.clip(np.floor(np.exp(rng.uniform(0.0, np.log(k_max + 1)))) if log
                        else rng.integers(1, k_max + 1), 1, k_max))
        if head_weights is not None:
            w = head_weights[free] / (1.0 + usage[free])
            drawn = free[np.argsort(-(np.log(w) + rng.gumbel(size=free.size)), kind="stable")]
        else:
            drawn = free[np.argsort(usage[free] + rng.random(free.size), kind="stable")]
        mask = np.ones(d, dtype=bool)
        mask[drawn[:k]] = False
        key = pack_mask(mask)
        if key in seen:
            continue
        seen.add(key)
        out.append(mask)
        usage[drawn[:k]] += 1
    while len(out) < n:  # tiny spaces: whatever valid masks remain
        out.append(space.sample(1, rng)[0])
    return np.array(out, dtype=bool)


def random_design(space: HeadSpace, n: int, rng: np.random.Generator, *, exclude: set[bytes] = frozenset(),
                  include_keep_all: bool = True, max_ratio: float | None = None) -> np.ndarray:
    """``bool[n, d]``: the unpruned mask first (``include_keep_all``, unless excluded), then random
    valid masks (:meth:`HeadSpace.sample`, a pruning ratio drawn per mask up to ``max_ratio``) not in
    ``exclude``; known masks fill the batch only when the space is (nearly) exhausted."""
    out: list[np.ndarray] = []
    keys = set(exclude)
    if include_keep_all:
        keep = space.keep_all(1)[0]
        if pack_mask(keep) not in keys:
            out.append(keep)
            keys.add(pack_mask(keep))
    for _ in range(20):
        if len(out) >= n:
            break
        for x in space.sample(2 * n, rng, max_ratio=max_ratio):
            if len(out) < n and pack_mask(x) not in keys:
                out.append(x)
                keys.add(pack_mask(x))
    while len(out) < n:  # tiny space: everything told already
        out.append(space.sample(1, rng, max_ratio=max_ratio)[0])
    return np.array(out, dtype=bool).reshape(n, space.dim)


def fill_new(space: HeadSpace, n: int, rng: np.random.Generator, exclude: set[bytes], *, bases: np.ndarray,
             perturb: Callable[[np.ndarray], np.ndarray] | None = None,
             initial_max_ratio: float = 0.05) -> list[np.ndarray]:
    """``n`` valid masks not in ``exclude`` (fewer new ones only when the space is nearly
    exhausted; then known masks fill the list, they cost nothing): ``perturb`` applied 1-3 times
    to rows of ``bases`` (e.g. the observed front), random masks of growing pruning ratio (from
    ``initial_max_ratio``), and at last random masks of any ratio."""
    out: list[np.ndarray] = []
    if n <= 0:
        return out
    if len(bases) == 0:
        bases = space.keep_all()
    seen = set(exclude)
    for attempt in range(21):
        if attempt < 20:
            cands: list[np.ndarray] = []
            if perturb is not None:
                x = bases[rng.integers(len(bases), size=4 * n)]
                for _ in range(1 + attempt % 3):
                    x = perturb(x)
                cands += list(x)
            cands += list(space.sample(2 * n, rng, max_ratio=min(initial_max_ratio * (1 + attempt), 1.0)))
        else:  # last resort: anywhere in the space
            cands = list(space.sample(100 * n, rng))
        for mask in cands:
            key = pack_mask(mask)
            if key not in seen:
                seen.add(key)
                out.append(mask)
                if len(out) == n:
                    return out
    while len(out) < n:
        out.append(space.sample(1, rng)[0])
    return out


def sensitivity_weights(problem, sensitivities) -> np.ndarray:
    """``float[d]`` design weights of the heads from the head sensitivities of the unpruned mask
    (:class:`~framework.problem.Sensitivities`): ``exp(-rank / 2)`` by Pareto rank of (estimated
    bias change, estimated worst cost change), both normalized by the bounds (best first); a
    tenth for heads without an estimated bias gain.  ``problem`` is a
    :class:`~framework.strategy.ProblemInfo` (bounds and roles)."""
    lo, hi = np.asarray(problem.bounds, dtype=float)
    delta = np.asarray(sensitivities.delta, dtype=float) / np.where(hi > lo, hi - lo, 1.0)[:, None]
    db = np.nan_to_num(delta[problem.bias_objective], nan=np.inf)
    costs = list(problem.cost_objectives)
    du = np.nan_to_num(np.maximum(delta[costs], 0.0), nan=np.inf).max(axis=0) if costs else np.zeros_like(db)
    pts = np.stack([db, du], axis=1)
    rank = np.full(len(db), len(db), dtype=float)
    left = np.flatnonzero(np.isfinite(pts).all(axis=1))
    r = 0
    while left.size:
        front = left[non_dominated(pts[left])]
        rank[front] = r
        left = np.setdiff1d(left, front)
        r += 1
    return np.exp(-rank / 2.0) * np.where(db < 0, 1.0, 0.1)
