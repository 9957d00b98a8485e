"""The optimization loop: ask, evaluate (or answer from the store), commit, tell.

The loop owns the budget: it counts the distinct masks whose real evaluation a run
receives, whether the evaluation was paid now or found in the store.  A mask found in the
store is a *cache hit* when another run paid it; one that this run paid before it was
interrupted is *resumed* (its own evaluation: a resumed run reports the cache hits an
uninterrupted one would).  A mask the run already received is answered from the run's own
history and costs nothing.  So a run never receives more than ``budget`` real evaluations,
and a resumed run (which replays its strategy, served by the store) spends exactly what an
uninterrupted one would.

Head sensitivities (:meth:`Strategy.sensitivity_request`) cost one budget unit per distinct
mask, are stored in their own table and served from it on resume, the same way.  The budget
counts evaluations plus sensitivity calls; ``hv_curve`` has one entry per budget unit (a
sensitivity call repeats the hypervolume before it).

Failed evaluations: a mask whose evaluation raises (a batch that raises is evaluated again
mask by mask, so only the masks that fail are failed) or returns a non-finite value is stored
as failed with its reason (``ValueError: ...``, ``non-finite objective: bias=nan``), counts
against the budget, and the strategy is told NaN for it; the run goes on.  After
``max_failures`` (default :data:`MAX_FAILURES`) failed evaluations in a row the run stops with
:class:`EvaluationsFailed` (checked after each batch, so at most ``max_failures + batch_size
- 1`` in a row are paid), every evaluation committed.  A stored failure is final: a resumed
run, or another run on the same store, receives it again rather than paying for it twice.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from framework.evaluators import BatchResult, Evaluator, LocalEvaluator
from framework.faults import fault_point
from framework.history import pack_mask
from framework.pareto import hypervolume
from framework.problem import SEARCH, Problem
from framework.results import OptimizationResult, _normalized_ref, run_hypervolume_curve
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy

__all__ = ["optimize", "RunProgress", "StrategyStalled", "EvaluationsFailed", "MAX_FAILURES"]

#: Failed evaluations in a row after which :func:`optimize` stops (:class:`EvaluationsFailed`).
MAX_FAILURES = 10


class StrategyStalled(RuntimeError):
    """The strategy kept proposing masks it had already received."""


class EvaluationsFailed(RuntimeError):
    """``max_failures`` evaluations in a row failed: the problem cannot evaluate masks (its message
    is one line naming the last reason; every evaluation is committed to the store)."""


@dataclass
class RunProgress:
    """State handed to callbacks after every batch."""

    n_evaluations: int        # budget units spent: evaluations received plus sensitivity calls
    budget: int
    n_computed: int           # evaluations paid by this run (now, or before it was interrupted)
    n_cache_hits: int         # evaluations other runs paid
    best: np.ndarray          # float[m]: best value of each objective so far
    hypervolume: float        # of the normalized front against the normalized reference point
    last_masks: np.ndarray
    last_values: np.ndarray


def optimize(problem: Problem, strategy: Strategy, budget: int, *, batch_size: int = 1, seed: int = 0,
             store: EvaluationStore | None = None, callbacks: Sequence[Callable[[RunProgress], None]] = (),
             run_id: str | None = None, progress: bool | None = None, strategy_name: str | None = None,
             max_stall: int = 50, max_failures: int = MAX_FAILURES, evaluator: Evaluator | None = None,
             max_pending: int | None = None) -> OptimizationResult:
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
        max_failures: failed evaluations in a row (in the order received) before
            :class:`EvaluationsFailed` is raised, after the batch is committed and told.
        evaluator: where the batches are evaluated (:mod:`framework.evaluators`); default: in this
            process (:class:`~framework.evaluators.LocalEvaluator`).  The loop binds it to ``problem``;
            the caller closes it.
        max_pending: batches asked and not yet told, at most, for a strategy that asks while
            evaluations are pending (:attr:`Strategy.asks_while_pending`); default: the evaluator's
            ``slots``.  Other strategies always wait for each batch (one pending).

    With several batches pending, each is committed to the store and told when its evaluation
    arrives (arrival order); the budget counts the masks in flight too, so a run never receives
    more than ``budget`` evaluations.  A run that stops (failures in a row) abandons the batches
    still in flight: they were never received and count nothing.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_failures < 1:
        raise ValueError(f"max_failures must be >= 1, got {max_failures}")
    if max_pending is not None and max_pending < 1:
        raise ValueError(f"max_pending must be >= 1, got {max_pending}")
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
    evaluator = evaluator if evaluator is not None else LocalEvaluator()
    evaluator.bind(problem)
    pending_cap = max(1, max_pending or evaluator.slots) if getattr(strategy, "asks_while_pending", False) else 1

    seen: dict[bytes, int] = {}          # packed mask -> index in the run's history
    masks: list[np.ndarray] = []
    values: list[np.ndarray] = []
    hits: list[bool] = []
    n_resumed = 0
    failures_in_row, last_failure = 0, ""
    sens_seen: dict[bytes, object] = {}  # packed mask -> Sensitivities received by this run
    sens_masks: list[np.ndarray] = []
    sens_spent: list[int] = []
    stalls = 0
    stop_reason = "budget"
    bar = _progress_bar(budget, progress)
    batches: list[_Batch] = []           # asked and not yet told, in the order asked
    by_ticket: dict[int, _Batch] = {}    # batches whose evaluation is in flight
    inflight: dict[bytes, int] = {}      # packed mask -> ticket of the batch evaluating it

    def spent() -> int:
        return len(masks) + len(sens_masks)

    def room() -> int:
        """Budget units left after what is received and what is in flight."""
        return budget - spent() - len(inflight)

    def serve_sensitivities() -> float:
        """Answer the strategy's sensitivity requests (each new mask: one budget unit)."""
        nonlocal strategy_time, evaluation_cost
        used, repeats = 0.0, 0
        while room() > 0:
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
                hit = False
                if sens is not None:
                    wall, payer = store.sensitivity_payment(fingerprint, req) or (0.0, None)
                    evaluation_cost += wall
                    hit = payer != run_id   # paid by this run before it was interrupted: its own
                else:
                    t0 = time.perf_counter()
                    sens = evaluator.sensitivities(problem, req, SEARCH)
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

    def commit(batch: _Batch, result: BatchResult | None) -> None:
        """Receive a batch's new masks (from the store, or evaluated now: stored first) into the history."""
        nonlocal evaluation_cost, n_resumed, failures_in_row, last_failure
        if not batch.new_rows:
            return
        fresh: dict[int, np.ndarray] = {}
        why: dict[int, str | None] = {}
        if result is not None:
            todo, new = batch.todo, batch.new
            evaluation_cost += sum(result.seconds)   # what the store keeps: a later run is charged the same
            fault_point("evaluate")
            store.put(fingerprint, new[todo], result.values, infos=result.infos, wall_times=result.seconds,
                      reasons=result.reasons, strategy=name, seed=seed, run_id=run_id)
            fresh = {i: v for i, v in zip(todo, result.values, strict=True)}
            why = dict(zip(todo, result.reasons, strict=True))
            for i in todo:
                inflight.pop(batch.keys[batch.new_rows[i]], None)
        start = len(masks)
        hit_now = []
        for j, row in enumerate(batch.new_rows):
            got = batch.stored[j]
            if got is None:
                v, hit = fresh[j], False
            else:
                v, hit, why[j] = got.objectives, got.run_id != run_id, got.reason
                evaluation_cost += got.wall_time
                n_resumed += not hit
            seen[batch.keys[row]] = len(masks)
            masks.append(batch.asked[row].copy())
            values.append(np.asarray(v, dtype=float))
            hits.append(hit)
            hit_now.append(hit)
            if np.all(np.isfinite(values[-1])):
                failures_in_row = 0
            else:
                failures_in_row += 1
                last_failure = why.get(j) or "non-finite objective"
        store.add_trials(run_id, start, fingerprint, batch.new, hit_now)

    def tell_ready() -> None:
        """Tell every pending batch whose masks have all been received (in the order asked)."""
        nonlocal strategy_time
        for batch in [b for b in batches if all(k in seen for k in b.keys)]:
            batches.remove(batch)
            asked = batch.asked
            answer = np.full((len(asked), problem.n_objectives), np.nan)
            for i, k in enumerate(batch.keys):
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
            if failures_in_row >= max_failures:
                n_failed = sum(not np.all(np.isfinite(v)) for v in values)
                raise EvaluationsFailed(
                    f"stopped after {failures_in_row} failed evaluations in a row ({n_failed} of {len(masks)} failed "
                    f"so far; the last: {last_failure}); every evaluation is kept in the store {store.path}: fix "
                    "the problem or its settings, then start a new run")

    try:
        while True:
            while stop_reason == "budget" and len(batches) < pending_cap and room() > 0:
                if info.has_sensitivities:
                    evaluation_time += serve_sensitivities()
                    if room() <= 0:
                        break
                want = min(batch_size, room())
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
                new_rows: list[int] = []
                for i, k in enumerate(keys):
                    if k not in seen and k not in inflight and k not in (keys[j] for j in new_rows):
                        new_rows.append(i)
                batch = _Batch(asked, keys, new_rows)
                if new_rows:
                    stalls = 0
                    batch.new = asked[new_rows]
                    batch.stored = store.get(fingerprint, batch.new)
                    batch.todo = [i for i, s in enumerate(batch.stored) if s is None]
                else:
                    stalls += 1
                    if stalls >= max_stall:
                        stop_reason = f"stalled: {max_stall} rounds without a new mask"
                        break
                batches.append(batch)
                if batch.todo:
                    ticket = evaluator.submit(batch.new[batch.todo], SEARCH)
                    by_ticket[ticket] = batch
                    for i in batch.todo:
                        inflight[keys[new_rows[i]]] = ticket
                else:
                    commit(batch, None)
                    tell_ready()
            if not by_ticket:
                break
            t0 = time.perf_counter()
            result = evaluator.next_done()
            evaluation_time += time.perf_counter() - t0
            commit(by_ticket.pop(result.ticket), result)
            tell_ready()
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
        sensitivity_spent=np.array(sens_spent, dtype=int), evaluation_cost=evaluation_cost, n_resumed=n_resumed)


@dataclass(eq=False)   # compared by identity
class _Batch:
    """A batch the strategy asked: its masks, their keys, the rows new to the run (``new`` =
    ``asked[new_rows]``), what the store held for each new row, and the new rows still to evaluate
    (``todo``, indices into ``new_rows``)."""

    asked: np.ndarray
    keys: list[bytes]
    new_rows: list[int]
    new: np.ndarray | None = None
    stored: list = field(default_factory=list)
    todo: list[int] = field(default_factory=list)


def _progress_bar(total: int, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="eval", desc="real evaluations", dynamic_ncols=True)
