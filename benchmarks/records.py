"""What the benchmark report reads from its records (one dict per cell): grouping, values, the
sample a strategy contributes to a test, and its cost per run.

A strategy whose seeds all gave the same run (same anytime curve, same front: a deterministic
strategy such as ``fasp``) counts as one sample in every test (:func:`benchmarks.stats.compare`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.stats import compare
from framework.config import DEFAULTS

__all__ = ["REFERENCE_STRATEGY", "fmt", "group", "values", "one_run", "sample", "seeds_label", "cost", "compare_rows"]

REFERENCE_STRATEGY = DEFAULTS.strategy


def fmt(x: float | None, nd: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def group(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, list[dict]]]:
    groups: dict[tuple[str, int], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[(r["problem"], int(r["budget"]))][r["strategy"]].append(r)
    return groups


def values(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)


def one_run(rows: list[dict]) -> bool:
    """True when several seeds all gave the same run (same anytime curve and front)."""
    return len(rows) > 1 and all(r.get("hv_curve") == rows[0].get("hv_curve") and r.get("front") == rows[0].get("front")
                                 for r in rows[1:])


def sample(rows: list[dict], key: str) -> np.ndarray:
    """The values of ``key`` as a statistical sample: one value for a strategy whose seeds are one run."""
    v = values(rows, key)
    return v[:1] if one_run(rows) else v


def seeds_label(rows: list[dict]) -> str:
    return f"{len(rows)} (one run)" if one_run(rows) else str(len(rows))


def cost(rows: list[dict]) -> np.ndarray:
    """Seconds per run: the strategy's own time plus what its evaluations cost when they were
    paid (whichever cell paid first: cells share a store), so the column does not depend on the
    order cells ran in.  Records made before the cost was kept fall back to their wall time."""
    return np.array([r["strategy_time_s"] + r["evaluation_cost_s"] if r.get("evaluation_cost_s") is not None
                     else r.get("wall_time_s", np.nan) for r in rows], dtype=float)


def compare_rows(ref_rows: list[dict], rows: list[dict], key: str) -> tuple[float, float]:
    """``(p, A12)`` of two strategies' runs (:func:`~benchmarks.stats.compare`).  A side with a
    single seed gets no p-value: one seed cannot tell a deterministic strategy (one run, which the
    sign test may take as fixed) from one draw of a random one (whose spread the test would ignore)."""
    a_sample, b_sample = sample(ref_rows, key), sample(rows, key)
    p, a, _ = compare(a_sample, b_sample)
    if min(len(values(ref_rows, key)), len(values(rows, key))) < 2:
        p = float("nan")
    return p, a
