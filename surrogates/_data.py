"""Input checks shared by the surrogates: masks and targets in, finite rows out."""

from __future__ import annotations

import numpy as np

from framework.space import as_masks

__all__ = ["training_data", "query_masks"]


def training_data(X: np.ndarray, Y: np.ndarray, *, min_rows: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Validate a training set and drop the rows whose targets are not all finite.

    Args:
        X: ``bool[n, d]`` masks (``True`` = keep); 0/1 integers are accepted.
        Y: ``float[n, m]`` objective values; rows with NaN/inf (failed evaluations) are dropped.
        min_rows: fewest finite rows a surrogate can be fitted on.

    Returns:
        ``(X bool[n', d], Y float64[n', m])`` with ``n' >= min_rows``.
    """
    X_arr = np.asarray(X)
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D bool[n, d], got shape {list(X_arr.shape)}")
    masks = as_masks(X_arr, X_arr.shape[1])
    Y_arr = np.asarray(Y, dtype=float)
    if Y_arr.ndim != 2:
        hint = " (use Y[:, None] for a single objective)" if Y_arr.ndim == 1 else ""
        raise ValueError(f"Y must be 2-D float[n, m], got shape {list(Y_arr.shape)}{hint}")
    if Y_arr.shape[0] != masks.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got X {list(masks.shape)} "
                         f"and Y {list(Y_arr.shape)}")
    if masks.shape[1] == 0 or Y_arr.shape[1] == 0:
        raise ValueError(f"X and Y need at least one column, got X {list(masks.shape)} and Y {list(Y_arr.shape)}")
    finite = np.isfinite(Y_arr).all(axis=1)
    if int(finite.sum()) < min_rows:
        raise ValueError(f"need at least {min_rows} rows with finite Y to fit a surrogate, got {int(finite.sum())} "
                         f"(of {len(Y_arr)} rows)")
    return masks[finite], Y_arr[finite]


def query_masks(X: np.ndarray, n_bits: int | None) -> np.ndarray:
    """Validate prediction inputs against the fitted width ``n_bits`` (``None`` = not fitted yet)."""
    if n_bits is None:
        raise RuntimeError("the surrogate is not fitted: call fit(X, Y) before predict")
    X_arr = np.asarray(X)
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D bool[k, {n_bits}], got shape {list(X_arr.shape)}")
    return as_masks(X_arr, n_bits)
