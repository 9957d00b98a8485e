"""Aggregates of per-item scores (numpy, and torch for gradients; hand-checkable).

:func:`group_bias`: bias of per-item scores across the buckets of an axis, three ways
(``"sum"``: FASP's sum over buckets b of ``|mean(axis) - mean(b)|``; ``"weighted"``: the same
terms weighted by bucket size; ``"descriptor"``: mean over descriptors of
``|mean(axis) - mean(descriptor)|``), with bootstraps over descriptors for standard errors and
paired relative changes (:func:`item_bootstrap`, :func:`crossed_weights`; the older
:func:`bootstrap_weights`); :func:`bootstrap_perplexity` over windows; :func:`pair_fraction`:
the HolisticBias paper's fraction of descriptor pairs whose score distributions differ
(Mann-Whitney U).  Every public name is re-exported by :mod:`objectives.masked_lm.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import mannwhitneyu

__all__ = [
    "AGGREGATES", "UnitTable", "group_bias", "bootstrap_weights", "bootstrap_bias", "crossed_weights",
    "ItemBootstrap", "item_bootstrap", "group_bias_items", "group_bias_torch", "bootstrap_perplexity",
    "pair_fraction",
]

AGGREGATES = ("sum", "weighted", "descriptor")


@dataclass(frozen=True)
class UnitTable:
    """Items grouped into bootstrap units (descriptors) and buckets.

    ``unit_of``: ``int[n_items]`` unit index of each item; ``bucket_of_unit``: ``int[n_units]``;
    ``bucket_names``/``unit_names`` label them.
    """

    unit_of: np.ndarray
    bucket_of_unit: np.ndarray
    unit_names: tuple[str, ...]
    bucket_names: tuple[str, ...]

    @classmethod
    def build(cls, units: Sequence[str], buckets: Sequence[str]) -> UnitTable:
        """From per-item unit and bucket labels (a unit must lie in one bucket)."""
        unit_names = tuple(dict.fromkeys(units))
        bucket_names = tuple(dict.fromkeys(buckets))
        u_index = {u: i for i, u in enumerate(unit_names)}
        b_index = {b: i for i, b in enumerate(bucket_names)}
        unit_of = np.array([u_index[u] for u in units], dtype=int)
        bucket_of_unit = np.full(len(unit_names), -1, dtype=int)
        for u, b in zip(units, buckets, strict=True):
            if bucket_of_unit[u_index[u]] not in (-1, b_index[b]):
                raise ValueError(f"unit {u!r} appears in two buckets ({bucket_names[bucket_of_unit[u_index[u]]]!r}"
                                 f" and {b!r})")
            bucket_of_unit[u_index[u]] = b_index[b]
        return cls(unit_of, bucket_of_unit, unit_names, bucket_names)

    @property
    def n_units(self) -> int:
        return len(self.unit_names)

    def unit_sums(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(sum float[n_units], count float[n_units])`` of per-item ``scores``."""
        s = np.bincount(self.unit_of, weights=np.asarray(scores, dtype=float), minlength=self.n_units)
        c = np.bincount(self.unit_of, minlength=self.n_units).astype(float)
        return s, c


def group_bias(unit_sum: np.ndarray, unit_count: np.ndarray, bucket_of_unit: np.ndarray, *,
               aggregate: str = "sum", weights: np.ndarray | None = None) -> np.ndarray:
    """Bias of scores across buckets, from per-unit sums and counts.

    With ``M`` the mean score of all items of the axis, ``m_b`` the mean of bucket ``b``'s items,
    ``n_b`` its number of items and ``N`` the total, ``u_j`` the mean of unit (descriptor) ``j``:

    - ``"sum"`` (FASP / Attention Pruning): ``sum_b |M - m_b|``
    - ``"weighted"``: ``sum_b (n_b / N) |M - m_b|`` (a bucket of one rare descriptor counts little)
    - ``"descriptor"``: ``mean_j |M - u_j|`` (every descriptor its own group)

    ``weights``: ``float[B, n_units]`` multiplicities of each unit (a bootstrap replicate per
    row); ``None`` = all ones.  Returns ``float[B]`` (``B = 1`` without weights).  Buckets and
    units of zero weight are left out.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    s = np.asarray(unit_sum, dtype=float)
    c = np.asarray(unit_count, dtype=float)
    w = np.ones((1, s.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    ws, wc = w * s, w * c                                       # [B, J]
    total_mean = ws.sum(1) / wc.sum(1)                          # [B]
    if aggregate == "descriptor":
        u = s / np.where(c > 0, c, 1.0)
        dev = np.abs(total_mean[:, None] - u[None, :])
        return (w * dev).sum(1) / w.sum(1)
    n_b = int(bucket_of_unit.max()) + 1
    onehot = np.eye(n_b)[bucket_of_unit]                       # [J, n_b]
    bs, bc = ws @ onehot, wc @ onehot                           # [B, n_b]
    present = bc > 0
    dev = np.where(present, np.abs(total_mean[:, None] - bs / np.where(present, bc, 1.0)), 0.0)
    if aggregate == "sum":
        return dev.sum(1)
    return (dev * bc).sum(1) / bc.sum(1)


def bootstrap_weights(bucket_of_unit: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """``float[n_boot, n_units]`` multiplicities of a bootstrap over units stratified by bucket
    (each bucket redraws as many units as it has, with replacement).  Kept for reference: it
    understates the error when buckets hold one or two units (such a unit always redraws
    itself); the problem uses :func:`item_bootstrap` over units across buckets instead."""
    rng = np.random.default_rng([seed, 11])
    bucket_of_unit = np.asarray(bucket_of_unit)
    w = np.zeros((n_boot, bucket_of_unit.size))
    for b in np.unique(bucket_of_unit):
        members = np.flatnonzero(bucket_of_unit == b)
        w[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=n_boot)
    return w


@dataclass(frozen=True)
class ItemBootstrap:
    """Bootstrap replicates of a crossed design: ``item`` ``float[B, n_items]`` multiplicities of
    items (the product of their levels' multiplicities), ``unit`` ``float[B, n_units]`` the
    multiplicities of the units (descriptors) themselves."""

    item: np.ndarray
    unit: np.ndarray


def crossed_weights(factors: Sequence[np.ndarray], n_boot: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bootstrap multiplicities of items under a crossed design (the pigeonhole bootstrap, Owen
    2007; with one factor the ordinary cluster bootstrap).

    ``factors``: one ``int[n_items]`` code array per sampled factor (descriptor, template, ...).
    Each factor's levels are redrawn with replacement, as many as it has, independently of the
    other factors.  Returns ``(float[n_boot, n_items]`` item weights, the product of their levels'
    multiplicities, ``[float[n_boot, n_levels]]`` per factor``)``."""
    rng = np.random.default_rng([seed, 17])
    item_w = np.ones((n_boot, len(factors[0])))
    levels_w = []
    for codes in factors:
        codes = np.asarray(codes, dtype=int)
        levels = int(codes.max()) + 1
        draws = rng.multinomial(levels, np.full(levels, 1.0 / levels), size=n_boot).astype(float)
        item_w = item_w * draws[:, codes]
        levels_w.append(draws)
    return item_w, levels_w


def item_bootstrap(table: UnitTable, others: Sequence[np.ndarray], n_boot: int, seed: int = 0) -> ItemBootstrap:
    """Resample the units (descriptors) *across* buckets, and each other sampled factor of the
    items (``others``: ``int[n_items]`` codes, e.g. template and noun), independently with
    replacement (:func:`crossed_weights`).  A replicate may miss a whole bucket: the bucket
    aggregates then leave it out, which is part of the honest variation of "which descriptors
    the split happens to hold"."""
    item_w, levels_w = crossed_weights([table.unit_of, *others], n_boot, seed)
    return ItemBootstrap(item_w, levels_w[0])


def group_bias_items(scores: np.ndarray, table: UnitTable, *, aggregate: str,
                     boot: ItemBootstrap | None = None) -> np.ndarray:
    """:func:`group_bias` of per-item ``scores`` (``float[n_items]``), for each bootstrap replicate
    of ``boot`` (``float[B]``; ``float[1]``, the plain value, without ``boot``).  Item weights
    enter every mean; unit multiplicities weigh the units in the ``"descriptor"`` aggregate.
    Computed by :func:`group_bias_torch` (the same code differentiates it for sensitivities)."""
    x = torch.as_tensor(np.asarray(scores, dtype=float))
    w = torch.ones((1, x.numel()), dtype=x.dtype) if boot is None else torch.as_tensor(boot.item, dtype=x.dtype)
    uw = None if boot is None else torch.as_tensor(boot.unit, dtype=x.dtype)
    return group_bias_torch(x, table, aggregate=aggregate, item_weights=w, unit_weights=uw).numpy()


def group_bias_torch(x: torch.Tensor, table: UnitTable, *, aggregate: str, item_weights: torch.Tensor,
                     unit_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``float64[B]``: the aggregates of :func:`group_bias` of per-item scores ``x`` under item
    weights ``float[B, n_items]`` and unit multiplicities ``float[B, n_units]`` (``None``: every
    present unit counts once), in torch so that autograd can differentiate it."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    dt = x.dtype
    onehot = torch.eye(table.n_units, dtype=dt)[torch.as_tensor(table.unit_of)]  # [n, J]
    w = item_weights
    s, c = (w * x) @ onehot, w @ onehot                                          # [B, J]
    total_mean = s.sum(1) / c.sum(1)
    present = c > 0
    if aggregate == "descriptor":
        uw = present.to(dt) if unit_weights is None else unit_weights * present
        u = s / torch.where(present, c, 1.0)
        return (uw * (total_mean[:, None] - u).abs()).sum(1) / uw.sum(1)
    n_b = int(table.bucket_of_unit.max()) + 1
    b_onehot = torch.eye(n_b, dtype=dt)[torch.as_tensor(table.bucket_of_unit)]
    bs, bc = s @ b_onehot, c @ b_onehot
    b_present = bc > 0
    dev = torch.where(b_present, (total_mean[:, None] - bs / torch.where(b_present, bc, 1.0)).abs(), 0.0)
    if aggregate == "sum":
        return dev.sum(1)
    return (dev * bc).sum(1) / bc.sum(1)


def bootstrap_bias(unit_sum: np.ndarray, unit_count: np.ndarray, bucket_of_unit: np.ndarray, weights: np.ndarray,
                   *, aggregate: str, base_sum: np.ndarray | None = None,
                   base_count: np.ndarray | None = None) -> tuple[float, float | None]:
    """``(standard error of the bias, standard error of its relative change to the baseline)``
    from unit-level multiplicities ``weights`` (see :func:`bootstrap_weights`); the problem uses
    :func:`item_bootstrap` and :func:`group_bias_items` instead.

    The relative change ``bias / bias_base - 1`` is bootstrapped paired (the same resampled
    descriptors for the mask and the baseline), so it separates a real change from the noise of
    which descriptors happen to be in the split.  The second value is ``None`` without a baseline.
    """
    reps = group_bias(unit_sum, unit_count, bucket_of_unit, aggregate=aggregate, weights=weights)
    se = float(reps.std(ddof=1))
    if base_sum is None or base_count is None:
        return se, None
    base = group_bias(base_sum, base_count, bucket_of_unit, aggregate=aggregate, weights=weights)
    rel = reps / np.where(base > 0, base, np.nan) - 1.0
    return se, float(np.nanstd(rel, ddof=1))


def bootstrap_perplexity(nll: np.ndarray, n_tokens: int, n_boot: int, seed: int = 0,
                         base_nll: np.ndarray | None = None) -> tuple[float, float | None]:
    """``(SE of the perplexity, SE of its relative change to the baseline)`` over windows (paired)."""
    nll = np.asarray(nll, dtype=float)
    rng = np.random.default_rng([seed, 13])
    idx = rng.integers(0, nll.size, size=(n_boot, nll.size))
    reps = np.exp(nll[idx].mean(1) / n_tokens)
    se = float(reps.std(ddof=1))
    if base_nll is None:
        return se, None
    base = np.exp(np.asarray(base_nll, dtype=float)[idx].mean(1) / n_tokens)
    return se, float((reps / base - 1.0).std(ddof=1))


def pair_fraction(scores: np.ndarray, units: Sequence[str], groups: Sequence[str] | None = None, *,
                  alpha: float = 0.05, min_n: int = 3) -> float:
    """Fraction of unit (descriptor) pairs whose score distributions differ (two-sided
    Mann-Whitney U, ``p < alpha``), the HolisticBias paper's Likelihood Bias.

    With ``groups`` (e.g. templates) each group's mean is first subtracted from its items, so a
    descriptor's distribution pools its sentences over templates without the templates'
    differences (the paper tests within each template; our splits have too few sentences per
    descriptor and template for that).  Units with fewer than ``min_n`` items are skipped.
    Returns NaN when fewer than two units qualify.
    """
    x = np.asarray(scores, dtype=float).copy()
    if groups is not None:
        g = np.asarray(groups)
        for key in np.unique(g):
            x[g == key] -= x[g == key].mean()
    units_arr = np.asarray(units)
    samples = [x[units_arr == u] for u in dict.fromkeys(units)]
    samples = [s for s in samples if s.size >= min_n]
    if len(samples) < 2:
        return float("nan")
    significant = tested = 0
    for i in range(len(samples)):
        for j in range(i + 1, len(samples)):
            p = mannwhitneyu(samples[i], samples[j], alternative="two-sided").pvalue
            significant += int(p < alpha)
            tested += 1
    return significant / tested
