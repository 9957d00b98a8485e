"""What a run produced: :class:`OptimizationResult` (a run's evaluations in the order received, its
anytime hypervolume curve, timings and front), and that curve computed from a run's raw values
(:func:`run_hypervolume_curve`), one entry per budget unit (:func:`curve_by_budget`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from framework.pareto import hypervolume_curve, non_dominated
from framework.problem import Problem

__all__ = ["OptimizationResult", "curve_by_budget", "run_hypervolume_curve"]


@dataclass
class OptimizationResult:
    """Everything a run produced.

    ``masks``/``values``/``cache_hit`` hold the run's real evaluations in the order received
    (``cache_hit``: paid by another run; ``n_resumed`` of them this run paid before it was
    interrupted, ``n_failed`` failed); ``hv_curve[i]`` is the (normalized) hypervolume after ``i + 1`` budget units
    (evaluations and sensitivity calls); ``sensitivity_masks[j]`` is the mask of the run's
    ``j``-th sensitivity call, made after ``sensitivity_spent[j]`` budget units.
    """

    problem: str
    strategy: str
    seed: int
    budget: int
    batch_size: int
    objective_names: tuple[str, ...]
    ref_point: np.ndarray
    bounds: np.ndarray
    masks: np.ndarray
    values: np.ndarray
    cache_hit: np.ndarray
    hv_curve: np.ndarray
    wall_time: float
    strategy_time: float
    evaluation_time: float
    run_id: str
    strategy_options: dict = field(default_factory=dict)
    stop_reason: str = "budget"
    sensitivity_masks: np.ndarray | None = None
    sensitivity_spent: np.ndarray | None = None
    # seconds the received evaluations and sensitivity calls cost when they were paid, by this run or
    # (cache hits) by an earlier one: unlike evaluation_time, it does not depend on who paid first
    evaluation_cost: float = 0.0
    n_resumed: int = 0

    @property
    def n_failed(self) -> int:
        return int((~np.all(np.isfinite(self.values), axis=1)).sum()) if len(self.values) else 0

    @property
    def n_evaluations(self) -> int:
        return len(self.masks)

    @property
    def n_sensitivity_calls(self) -> int:
        return 0 if self.sensitivity_masks is None else len(self.sensitivity_masks)

    @property
    def budget_spent(self) -> int:
        return self.n_evaluations + self.n_sensitivity_calls

    @property
    def n_cache_hits(self) -> int:
        return int(self.cache_hit.sum())

    @property
    def hypervolume(self) -> float:
        return float(self.hv_curve[-1]) if len(self.hv_curve) else 0.0

    @property
    def front_index(self) -> np.ndarray:
        """Indices of the non-dominated evaluations (ties kept once: first occurrence)."""
        idx = np.flatnonzero(non_dominated(self.values))
        _, first = np.unique(self.values[idx], axis=0, return_index=True)
        return idx[np.sort(first)]

    @property
    def front_masks(self) -> np.ndarray:
        return self.masks[self.front_index]

    @property
    def front_values(self) -> np.ndarray:
        return self.values[self.front_index]


def curve_by_budget(hv_per_evaluation: np.ndarray, sensitivity_spent: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """Expand a per-evaluation hypervolume curve to one entry per budget unit: a sensitivity
    call made after ``k`` units repeats the hypervolume reached then (0 before any evaluation)."""
    hv = np.asarray(hv_per_evaluation, dtype=float)
    calls = sorted(int(k) for k in (sensitivity_spent if sensitivity_spent is not None else ()))
    out, i, unit = [], 0, 0
    for k in calls:
        while unit < k and i < len(hv):
            out.append(hv[i])
            i, unit = i + 1, unit + 1
        out.append(out[-1] if out else 0.0)
        unit += 1
    out.extend(hv[i:])
    return np.array(out, dtype=float)


def _normalized_ref(problem: Problem) -> np.ndarray:
    return problem.normalize(np.asarray(problem.ref_point, dtype=float))


def run_hypervolume_curve(problem: Problem, values: np.ndarray,
                          sensitivity_spent: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """The anytime hypervolume of a run's raw ``values`` (in the order received), one entry per
    budget unit: normalized objectives clipped at the ideal bound, against the normalized
    reference point."""
    return curve_by_budget(hypervolume_curve(problem.normalize(values, clip=True), _normalized_ref(problem)),
                           sensitivity_spent)
