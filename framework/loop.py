"""The optimization loop: ask, evaluate (or answer from the store), commit, tell.

The loop owns the budget: it counts the distinct masks whose real evaluation a run
receives, whether the evaluation was paid now or found in the store (a *cache hit*, paid
by an earlier run or by this run before it was interrupted).  A mask the run already
received is answered from the run's own history and costs nothing.  So a run never
receives more than ``budget`` real evaluations, and a resumed run (which replays its
strategy, served by the store) spends exactly what an uninterrupted one would.

Head sensitivities (:meth:`Strategy.sensitivity_request`) cost one budget unit per distinct
mask, are stored in their own table and served from it on resume, the same way.  The budget
counts evaluations plus sensitivity calls; ``hv_curve`` has one entry per budget unit (a
sensitivity call repeats the hypervolume before it).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from framework.history import pack_mask
from framework.pareto import hypervolume, hypervolume_curve, non_dominated
from framework.problem import SEARCH, Problem
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy

__all__ = ["optimize", "OptimizationResult", "RunProgress", "StrategyStalled", "curve_by_budget",
           "run_hypervolume_curve"]


class StrategyStalled(RuntimeError):
    """The strategy kept proposing masks it had already received."""


@dataclass
class RunProgress:
    """State handed to callbacks after every batch."""

    n_evaluations: int        # budget units spent: evaluations received plus sensitivity calls
    budget: int
    n_computed: int
    n_cache_hits: int
    best: np.ndarray          # float[m]: best value of each objective so far
    hypervolume: float        # of the normalized front against the normalized reference point
    last_masks: np.ndarray
    last_values: np.ndarray


@dataclass
class OptimizationResult:
    """Everything a run produced.

    ``masks``/``values``/``cache_hit``/``status`` hold the run's real evaluations in the order
    received; ``hv_curve[i]`` is the (normalized) hypervolume after ``i + 1`` budget units
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


def optimize(problem: Problem, strategy: Strategy, budget: int, *, batch_size: int = 1, seed: int = 0,
             store: EvaluationStore | None = None, callbacks: Sequence[Callable[[RunProgress], None]] = (),
             run_id: str | None = None, progress: bool | None = None, strategy_name: str | None = None,
             max_stall: int = 50) -> OptimizationResult:
    """Run ``strategy`` on ``problem`` until ``budget`` real evaluations have been received.

    Args:
        budget: number of distinct masks evaluated for real (computed now or found in the store).
        batch_size: masks asked per round (the last round asks only what the budget allows).
        seed: seeds the strategy's ``numpy`` generator.
        store: durable store; a throw-away in-memory one when ``None``.
        callbacks: called with a :class:`RunProgress` after every round.
        run_id: names this run's history in the store (``headrepair resume`` passes the old one).
        progress: show a progress bar; ``None`` = only when stderr is a terminal.
        max_stall: rounds in a row with no new mask before :class:`StrategyStalled` is raised.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    store = store if store is not None else EvaluationStore(":memory:")
    run_id = run_id or uuid.uuid4().hex[:12]
    name = strategy_name or getattr(strategy, "name", "") or type(strategy).__name__
    fingerprint = problem.fingerprint(SEARCH)
    store.register_problem(fingerprint, problem.name, problem.describe())
    space = problem.space
    ref_n = _normalized_ref(problem)

    t_start = time.perf_counter()
    strategy_time = evaluation_time = evaluation_cost = 0.0
    # read before anything is paid: a strategy whose options cannot be recorded fails here, not
    # after its budget was spent (the options are fixed at construction)
    options = strategy.options()
    t0 = time.perf_counter()
    info = ProblemInfo.of(problem)
    strategy.setup(info, budget, np.random.default_rng(seed))
    strategy_time += time.perf_counter() - t0

    seen: dict[bytes, int] = {}          # packed mask -> index in the run's history
    masks: list[np.ndarray] = []
    values: list[np.ndarray] = []
    hits: list[bool] = []
    sens_seen: dict[bytes, object] = {}  # packed mask -> Sensitivities received by this run
    sens_masks: list[np.ndarray] = []
    sens_spent: list[int] = []
    stalls = 0
    stop_reason = "budget"
    bar = _progress_bar(budget, progress)

    def spent() -> int:
        return len(masks) + len(sens_masks)

    def serve_sensitivities() -> float:
        """Answer the strategy's sensitivity requests (each new mask: one budget unit)."""
        nonlocal strategy_time, evaluation_cost
        used, repeats = 0.0, 0
        while spent() < budget:
            t0 = time.perf_counter()
            req = strategy.sensitivity_request()
            strategy_time += time.perf_counter() - t0
            if req is None:
                break
            req = np.asarray(req)
            if req.dtype != np.bool_ or req.shape != (space.dim,):
                raise TypeError(f"strategy {name!r} requested sensitivities of {req.dtype} {list(req.shape)}; "
                                f"expected bool[{space.dim}]")
            key = pack_mask(req)
            if key in sens_seen:
                sens = sens_seen[key]
                repeats += 1
                if repeats > max_stall:
                    raise StrategyStalled(f"strategy {name!r} requested already received sensitivities {max_stall} "
                                          f"times in a row without asking for a mask")
            else:
                sens = store.get_sensitivities(fingerprint, req)
                hit = sens is not None
                if hit:
                    evaluation_cost += store.sensitivity_wall_time(fingerprint, req) or 0.0
                else:
                    t0 = time.perf_counter()
                    sens = problem.sensitivities(req, SEARCH)
                    dt = time.perf_counter() - t0
                    used += dt
                    evaluation_cost += dt
                    store.put_sensitivities(fingerprint, sens, wall_time=dt, strategy=name, seed=seed, run_id=run_id)
                store.add_sensitivity_trial(run_id, spent(), fingerprint, req, hit)
                sens_seen[key] = sens
                sens_spent.append(spent())
                sens_masks.append(req.copy())
                if bar is not None:
                    bar.update(spent() - bar.n)
            t0 = time.perf_counter()
            strategy.tell_sensitivities(sens)
            strategy_time += time.perf_counter() - t0
        return used

    try:
        while spent() < budget:
            if info.has_sensitivities:
                evaluation_time += serve_sensitivities()
                if spent() >= budget:
                    break
            want = min(batch_size, budget - spent())
            t0 = time.perf_counter()
            asked = np.asarray(strategy.ask(want))
            strategy_time += time.perf_counter() - t0
            if asked.dtype != np.bool_ or asked.ndim != 2 or asked.shape[1] != space.dim or len(asked) == 0:
                raise TypeError(f"strategy {name!r} asked {asked.dtype} {list(asked.shape)}; "
                                f"expected bool[1..{want}, {space.dim}]")
            if len(asked) > want:
                raise ValueError(f"strategy {name!r} asked {len(asked)} masks, only {want} allowed this round")
            bad = ~space.is_valid(asked)
            if bad.any():
                raise ValueError(f"strategy {name!r} asked {int(bad.sum())} mask(s) that break the space's "
                                 f"constraints (max {space.max_pruned} pruned, protected heads kept)")
            keys = [pack_mask(m) for m in asked]
            new_rows = []
            for i, k in enumerate(keys):
                if k not in seen and k not in (keys[j] for j in new_rows):
                    new_rows.append(i)
            answer = np.full((len(asked), problem.n_objectives), np.nan)
            if new_rows:
                stalls = 0
                new = asked[new_rows]
                stored = store.get(fingerprint, new)
                todo = [i for i, s in enumerate(stored) if s is None]
                fresh: dict[int, np.ndarray] = {}
                if todo:
                    t0 = time.perf_counter()
                    vals, infos = problem.evaluate_with_info(new[todo], SEARCH)
                    dt = time.perf_counter() - t0
                    evaluation_time += dt
                    evaluation_cost += dt
                    store.put(fingerprint, new[todo], vals, infos=infos, wall_times=[dt / len(todo)] * len(todo),
                              strategy=name, seed=seed, run_id=run_id)
                    fresh = {i: v for i, v in zip(todo, vals, strict=True)}
                start = len(masks)
                for j, row in enumerate(new_rows):
                    v = fresh[j] if j in fresh else stored[j].objectives  # type: ignore[union-attr]
                    if j not in fresh:
                        evaluation_cost += stored[j].wall_time  # type: ignore[union-attr]
                    seen[keys[row]] = len(masks)
                    masks.append(asked[row].copy())
                    values.append(np.asarray(v, dtype=float))
                    hits.append(j not in fresh)
                store.add_trials(run_id, start, fingerprint, new, [j not in fresh for j in range(len(new))])
            else:
                stalls += 1
                if stalls >= max_stall:
                    stop_reason = f"stalled: {max_stall} rounds without a new mask"
                    break
            for i, k in enumerate(keys):
                answer[i] = values[seen[k]]
            t0 = time.perf_counter()
            strategy.tell(asked, answer)
            strategy_time += time.perf_counter() - t0
            if callbacks or bar is not None:
                y = np.array(values)
                with np.errstate(invalid="ignore"):
                    best = np.nanmin(y, axis=0) if np.isfinite(y).any() else np.full(y.shape[1], np.nan)
                hv = hypervolume(problem.normalize(y, clip=True), ref_n)
                state = RunProgress(spent(), budget, len(masks) - sum(hits), sum(hits), best, hv, asked, answer)
                if bar is not None:
                    bar.update(spent() - bar.n)
                    bar.set_postfix_str(", ".join(f"{n}={b:.4g}" for n, b in zip(problem.objective_names, best,
                                                                                  strict=True)) + f", hv={hv:.4f}")
                for cb in callbacks:
                    cb(state)
    finally:
        if bar is not None:
            bar.close()

    y = np.array(values).reshape(-1, problem.n_objectives)
    return OptimizationResult(
        problem=problem.name, strategy=name, seed=seed, budget=budget, batch_size=batch_size,
        objective_names=tuple(problem.objective_names), ref_point=np.asarray(problem.ref_point, dtype=float),
        bounds=np.asarray(problem.bounds, dtype=float),
        masks=np.array(masks, dtype=bool).reshape(-1, space.dim), values=y, cache_hit=np.array(hits, dtype=bool),
        hv_curve=run_hypervolume_curve(problem, y, sens_spent),
        wall_time=time.perf_counter() - t_start, strategy_time=strategy_time, evaluation_time=evaluation_time,
        run_id=run_id, strategy_options=options, stop_reason=stop_reason,
        sensitivity_masks=np.array(sens_masks, dtype=bool).reshape(-1, space.dim),
        sensitivity_spent=np.array(sens_spent, dtype=int), evaluation_cost=evaluation_cost)


def _progress_bar(total: int, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="eval", desc="real evaluations", dynamic_ncols=True)
