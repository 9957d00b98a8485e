"""Statistics for comparing strategies across seeds: medians, IQR, Mann-Whitney U, Vargha-Delaney A12.

A deterministic strategy gives the same run for every seed: its seeds are *one* sample, and
feeding ten copies of it to Mann-Whitney would make any difference look significant (the
p-value shrinks with the number of copies).  :func:`compare` therefore tests a sample of
several runs against a single run with a two-sided sign test (how many of the runs fall above
it), and gives no p-value when both sides are single runs.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, mannwhitneyu, rankdata

__all__ = ["a12", "mann_whitney_p", "sign_test_p", "compare", "median_iqr", "average_ranks"]


def a12(a: np.ndarray, b: np.ndarray) -> float:
    """Vargha-Delaney A12: probability that a value drawn from ``a`` is larger than one from ``b``
    (ties count half).  0.5 = no difference; for hypervolume, > 0.5 favours ``a``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    greater = (a[:, None] > b[None, :]).sum()
    ties = (a[:, None] == b[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(a) * len(b)))


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (scipy); 1.0 when both samples are constant and equal."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def sign_test_p(a: np.ndarray, value: float) -> float:
    """Two-sided sign test of the runs ``a`` against one run's ``value``: under the null each run
    falls above or below it with probability 1/2 (ties dropped); 1.0 when every run ties."""
    a = np.asarray(a, dtype=float)
    above, below = int((a > value).sum()), int((a < value).sum())
    if above + below == 0:
        return 1.0
    return float(binomtest(above, above + below, 0.5).pvalue)


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """``(p, A12, test)`` of sample ``a`` against sample ``b`` (A12 > 0.5 favours ``a``).

    Pass a deterministic strategy's runs as one value.  Both of several runs: Mann-Whitney U;
    one side a single run: the sign test of the other side against it; both single runs: no
    p-value (NaN), A12 is 1, 0.5 or 0."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan"), "none"
    if len(a) == 1 and len(b) == 1:
        return float("nan"), a12(a, b), "none"
    if len(b) == 1:
        return sign_test_p(a, float(b[0])), a12(a, b), "sign"
    if len(a) == 1:
        return sign_test_p(b, float(a[0])), a12(a, b), "sign"
    return mann_whitney_p(a, b), a12(a, b), "mann-whitney"


def median_iqr(x: np.ndarray) -> tuple[float, float, float]:
    """(median, 25th percentile, 75th percentile)."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q50), float(q25), float(q75)


def average_ranks(scores: dict[str, list[float]]) -> dict[str, float]:
    """Mean rank of each strategy over problems (rank 1 = highest score on a problem).

    ``scores[strategy][i]`` is the strategy's score on problem ``i`` (same order for all)."""
    names = sorted(scores)
    table = np.array([scores[n] for n in names], dtype=float)  # [strategies, problems]
    ranks = np.vstack([rankdata(-table[:, j]) for j in range(table.shape[1])]).T
    return {n: float(r) for n, r in zip(names, ranks.mean(axis=1), strict=True)}
