"""A run's result files: ``result.json`` (the run's figures, settings and strategy diagnostics),
``front.csv`` (the non-dominated evaluations) and ``all.csv`` (every evaluation, in order), and the
JSON form of the numpy values that ``json`` cannot write itself."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig
from framework.results import OptimizationResult

__all__ = ["result_to_json", "write_result"]


def result_to_json(result: OptimizationResult) -> dict[str, Any]:
    front = [{"mask": [int(b) for b in m], "objectives": dict(zip(result.objective_names, map(float, v), strict=True))}
             for m, v in zip(result.front_masks, result.front_values, strict=True)]
    return {
        "problem": result.problem, "strategy": result.strategy, "strategy_options": result.strategy_options,
        "seed": result.seed, "budget": result.budget, "batch_size": result.batch_size,
        "n_evaluations": result.n_evaluations, "n_cache_hits": result.n_cache_hits, "n_resumed": result.n_resumed,
        "n_sensitivity_calls": result.n_sensitivity_calls, "budget_spent": result.budget_spent,
        "n_failed": result.n_failed,
        "objective_names": list(result.objective_names), "ref_point": result.ref_point.tolist(),
        "bounds": result.bounds.tolist(), "hypervolume": result.hypervolume,
        "hv_curve": [float(h) for h in result.hv_curve], "front": front,
        "wall_time_s": result.wall_time, "strategy_time_s": result.strategy_time,
        "evaluation_time_s": result.evaluation_time, "evaluation_cost_s": result.evaluation_cost,
        "stop_reason": result.stop_reason, "run_id": result.run_id,
    }


def _json_value(obj):
    """JSON form of what ``json`` cannot write itself: numpy arrays as lists (a strategy option
    may be an array), numpy scalars as Python numbers."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__float__"):  # e.g. a 0-d tensor
        return float(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _write_csv(path: Path, names: Sequence[str], masks: np.ndarray, values: np.ndarray, extra=None) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", *names, "n_pruned", "pruned_heads", *([] if extra is None else ["cache_hit"])])
        for i, (m, v) in enumerate(zip(masks, values, strict=True)):
            row = [i, *(f"{x:.6g}" for x in v), int((~m).sum()), " ".join(map(str, np.flatnonzero(~m)))]
            w.writerow(row + ([] if extra is None else [int(extra[i])]))


def write_result(out: Path, result: OptimizationResult, cfg: RunConfig, *, strategy_diagnostics: dict) -> None:
    data = result_to_json(result)
    data["strategy_diagnostics"] = strategy_diagnostics
    data["config"] = cfg.to_json()
    (out / "result.json").write_text(json.dumps(data, indent=2, default=_json_value))
    _write_csv(out / "front.csv", result.objective_names, result.front_masks, result.front_values)
    _write_csv(out / "all.csv", result.objective_names, result.masks, result.values, extra=result.cache_hit)
