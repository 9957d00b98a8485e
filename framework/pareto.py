"""Pareto tools: non-dominated filtering and quality indicators (all objectives minimized).

The computations are moocore's and pymoo's; this module only normalizes inputs, handles
failed (non-finite) rows and points outside the reference box, and builds anytime curves.
"""

from __future__ import annotations

import moocore
import numpy as np
from pymoo.indicators.igd_plus import IGDPlus

__all__ = ["non_dominated", "hypervolume", "igd_plus", "hypervolume_curve"]


def non_dominated(values: np.ndarray) -> np.ndarray:
    """``bool[n]``: True for finite rows that no other finite row dominates.
    Duplicated points are all kept."""
    y = np.asarray(values, dtype=float)
    out = np.zeros(len(y), dtype=bool)
    ok = np.all(np.isfinite(y), axis=1) if y.size else np.zeros(0, dtype=bool)
    if ok.any():
        out[np.flatnonzero(ok)] = moocore.is_nondominated(y[ok], keep_weakly=True)
    return out


def hypervolume(values: np.ndarray, ref_point: np.ndarray) -> float:
    """Hypervolume dominated by the finite rows of ``values`` and bounded by ``ref_point``.
    Points that do not strictly dominate the reference point contribute nothing."""
    y = np.asarray(values, dtype=float).reshape(-1, len(ref_point))
    ref = np.asarray(ref_point, dtype=float)
    y = y[np.all(np.isfinite(y), axis=1)]
    y = y[np.all(y < ref, axis=1)]
    if len(y) == 0:
        return 0.0
    return float(moocore.hypervolume(y, ref=ref))


def igd_plus(values: np.ndarray, reference_front: np.ndarray) -> float:
    """IGD+ of the finite rows of ``values`` against ``reference_front`` (pymoo)."""
    y = np.asarray(values, dtype=float)
    y = y[np.all(np.isfinite(y), axis=1)]
    if len(y) == 0:
        return float("inf")
    return float(IGDPlus(np.asarray(reference_front, dtype=float))(y))


def hypervolume_curve(values: np.ndarray, ref_point: np.ndarray) -> np.ndarray:
    """``float[n]``: hypervolume of the first ``i+1`` rows, for every ``i`` (anytime curve)."""
    y = np.asarray(values, dtype=float)
    curve = np.zeros(len(y))
    front = np.empty((0, y.shape[1] if y.ndim == 2 else len(ref_point)))
    hv = 0.0
    for i, row in enumerate(y):
        if np.all(np.isfinite(row)) and np.all(row < ref_point):
            if not len(front) or not np.any(np.all(front <= row, axis=1)):
                front = np.vstack([front[~np.all(row <= front, axis=1)], row])
                hv = hypervolume(front, ref_point)
        curve[i] = hv
    return curve
