"""Benchmark runner: every strategy of a suite on every problem, same budgets, seeds, reference points.

Suites (the TOML format, ``name@variant`` entries, the cells they plan) are :mod:`benchmarks.suite`.
Each (problem, budget, strategy, seed) cell is written to ``cells/<key>.json`` when it
finishes, so an interrupted suite resumes where it stopped (finished cells are not rerun).  A
cell's run is named after its key, so a cell killed mid-way is replayed from the evaluations it
had committed (its own, received again, not paid twice and not counted as cache hits; the
record's ``n_resumed``): its record, and ``results.csv``, equal an uninterrupted suite's except
the time columns (``wall_time_s``, ``strategy_time_s``, ``evaluation_time_s``,
``evaluation_cost_s``).
Every strategy of a problem shares one evaluation store (``stores/<label>.sqlite``): a mask
evaluated for one strategy is not paid again for another, and budgets still count it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.suite import Cell, Suite, base_strategy, plan_cells

__all__ = ["run_suite", "run_cell", "cell_threads", "collect_results", "check_bench_executor"]

RESULT_FIELDS = ["problem", "budget", "strategy", "seed", "hv_final", "hv_25", "hv_50", "hv_100", "igd_plus",
                 "hv_front_search", "hv_front_heldout", "n_evaluations", "n_sensitivity_calls", "n_cache_hits",
                 "wall_time_s", "strategy_time_s", "evaluation_time_s", "evaluation_cost_s", "stop_reason"]


def _at_fraction(curve: list[float], budget: int, frac: float) -> float:
    i = int(np.ceil(frac * budget)) - 1
    return float(curve[min(i, len(curve) - 1)]) if curve else 0.0


@contextmanager
def cell_threads(n: int | None):
    """Run a block with ``n`` threads in torch and in every BLAS and OpenMP pool loaded (numpy's
    BLAS, scikit-learn's OpenMP: ``replay``'s regressors), then restore them; ``None``: as they are.
    A cell sharing the cores with others would otherwise spin one thread per core in each pool
    (``replay`` fitted its regressors 4x slower beside two busy cells: 44 s against 11 s)."""
    from threadpoolctl import threadpool_limits

    from acquisition.composed import torch_threads

    with torch_threads(n or None), (threadpool_limits(limits=n) if n else nullcontext()):
        yield


def run_cell(cell: Cell, threads: int | None = None) -> dict[str, Any]:
    """Run one cell in this process with ``threads`` threads in torch, BLAS and OpenMP
    (:func:`cell_threads`; ``None``: as they are; restored after) and return its record (also what
    ``cells/<key>.json`` holds)."""
    with cell_threads(threads):
        return _run_cell(cell)


def _run_cell(cell: Cell) -> dict[str, Any]:
    from framework.choice import evaluate_on_split, split_hypervolume
    from framework.loop import optimize
    from framework.pareto import igd_plus
    from framework.problem import HELDOUT, SEARCH
    from framework.registry import PROBLEMS, STRATEGIES
    from framework.store import EvaluationStore
    from framework.strategy import StrategyNotApplicable
    from framework.verdict import roles

    problem = PROBLEMS.create(cell.problem.name, **cell.problem.options)
    try:
        strategy = STRATEGIES.create(base_strategy(cell.strategy), **cell.strategy_options)
        with EvaluationStore(cell.store) as store:
            try:
                res = optimize(problem, strategy, cell.budget, batch_size=cell.batch_size, seed=cell.seed,
                               store=store, run_id=f"bench-{cell.key}", progress=False, strategy_name=cell.strategy)
            except StrategyNotApplicable as exc:
                # recorded (so it is not retried) and listed as not applicable, never scored
                return {"problem": cell.problem.label, "budget": cell.budget, "strategy": cell.strategy,
                        "seed": cell.seed, "hv_final": None, "n_evaluations": 0, "stop_reason": "not-applicable",
                        "skipped": str(exc), "hv_curve": [], "front": [], "cell": asdict(cell)}
            curve = [float(h) for h in res.hv_curve]
            record: dict[str, Any] = {
                "problem": cell.problem.label, "budget": cell.budget, "strategy": cell.strategy, "seed": cell.seed,
                "hv_final": res.hypervolume, "hv_25": _at_fraction(curve, cell.budget, 0.25),
                "hv_50": _at_fraction(curve, cell.budget, 0.5), "hv_100": _at_fraction(curve, cell.budget, 1.0),
                "igd_plus": None, "hv_front_search": None, "hv_front_heldout": None,
                "n_evaluations": res.n_evaluations, "n_cache_hits": res.n_cache_hits, "n_resumed": res.n_resumed,
                "n_sensitivity_calls": res.n_sensitivity_calls, "wall_time_s": res.wall_time,
                "strategy_time_s": res.strategy_time, "evaluation_time_s": res.evaluation_time,
                "evaluation_cost_s": res.evaluation_cost,
                "stop_reason": res.stop_reason, "hv_curve": curve, "front": res.front_values.tolist(),
                "front_masks": [np.flatnonzero(~m).tolist() for m in res.front_masks],
                "objective_names": list(problem.objective_names), "cell": asdict(cell),
                "roles": dict(zip(("bias", "cost"), roles(problem), strict=True))
                if len(problem.objective_names) >= 2 else None,
            }
            ref_front = problem.reference_front()
            if ref_front is not None:
                record["igd_plus"] = igd_plus(problem.normalize(res.front_values, clip=True),
                                               problem.normalize(ref_front, clip=True))
            if HELDOUT in problem.splits:
                # the final front re-evaluated on data the search never saw: a strategy that fits noise shows it
                h_values, _ = evaluate_on_split(problem, store, res.front_masks, HELDOUT)
                record["hv_front_search"] = split_hypervolume(problem, res.front_values, SEARCH)
                record["hv_front_heldout"] = split_hypervolume(problem, h_values, HELDOUT)
                record["front_heldout"] = h_values.tolist()
    finally:
        problem.close()
    return record


def _write_cell(out: Path, cell: Cell, record: dict[str, Any]) -> None:
    path = out / "cells" / f"{cell.key}.json"
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(record, default=float))
    tmp.replace(path)  # atomic: a killed suite never leaves a half-written cell


def _record_stand_in_accuracy(out: Path, problems, log) -> None:
    """``problems/<label>.json``: the stand-in accuracy of every problem that reports one (once per
    benchmark directory; only problem classes that override the hook are built for it)."""
    from framework.problem import Problem
    from framework.registry import PROBLEMS

    for spec in problems:
        path = out / "problems" / f"{spec.label}.json"
        cls = PROBLEMS.get(spec.name).factory
        if path.exists() or getattr(cls, "stand_in_accuracy", None) is Problem.stand_in_accuracy:
            continue
        problem = PROBLEMS.create(spec.name, **spec.options)
        try:
            rows = problem.stand_in_accuracy()
        finally:
            problem.close()
        if rows is not None:
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({"label": spec.label, "stand_in_accuracy": rows}, indent=1, default=float))
            log(f"{spec.label}: stand-in accuracy recorded ({len(rows)} rows)")


def collect_results(out: Path) -> list[dict[str, Any]]:
    """All finished cell records of a benchmark directory; rewrites ``results.csv``."""
    records = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=RESULT_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)
    return records


def _run_cell_in(cwd: str, cell: Cell, threads: int | None) -> dict[str, Any]:
    """:func:`run_cell` in the directory ``cwd`` (the driver's, where it exists on this node), so that
    relative paths (the benchmark directory, data files) mean what they mean to the driver."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return run_cell(cell, threads)


def check_bench_executor(executor: str, *, jobs: int = 1, address: str | None = None,
                         workers: int | None = None) -> None:
    """One-line ``ValueError`` for executor settings ``run_suite`` cannot use (before anything is written)."""
    from framework.evaluators import check_executor

    if jobs < 1:
        raise ValueError(f"jobs (--jobs) must be >= 1, got {jobs}")
    check_executor(executor, address=address, workers=workers)
    if executor == "ray" and jobs != 1:
        raise ValueError("--jobs runs cells in local processes; with --executor ray the cells spread over the Ray "
                         "cluster's CPUs instead (--workers for a local Ray instance): drop --jobs")


def run_suite(suite: Suite, out: str | Path, *, seeds: int | None = None, jobs: int = 1, threads: int | None = None,
              problems: list[str] | None = None, strategies: list[str] | None = None,
              budgets: list[int] | None = None, log=None, progress: str = "auto", executor: str = "local",
              address: str | None = None, workers: int | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``suite`` (or of the chosen problems, strategies and budgets)
    into ``out``; returns all records of ``out``.  ``threads``: torch, BLAS and OpenMP threads per
    cell (:func:`cell_threads`; default: the cores shared out among the jobs; 1 with ``ray``).
    ``progress``: ``"bar"`` (tqdm on stderr), ``"lines"`` (one line per finished cell through
    ``log``: cells done/total, elapsed, estimated remaining), ``"off"``, or ``"auto"`` (the bar
    when stderr is a terminal, else lines).

    ``executor="ray"``: every cell is a Ray task reserving ``threads`` CPUs, spread over the cluster
    at ``address`` (``ray start --head`` prints it), or over a local Ray instance of ``workers``
    CPUs (default: this machine's) started and shut down here.  Cells are independent, so the
    records equal a serial run's except the time columns (and ``n_cache_hits`` where two cells of
    one problem evaluate the same mask: which pays first depends on timing, as with ``jobs``).  On
    a cluster of several machines, ``out`` (it holds the per-problem stores) and every data file
    must be reachable at the same path on every node."""
    from framework.progress import format_duration

    if progress not in ("auto", "bar", "lines", "off"):
        raise ValueError(f"progress must be 'auto', 'bar', 'lines' or 'off', got {progress!r}")
    check_bench_executor(executor, jobs=jobs, address=address, workers=workers)
    log = log or (lambda msg: print(msg, flush=True))  # flushed: progress shows in a redirected log too
    out = Path(out)
    cells = plan_cells(suite, out, seeds=seeds, problems=problems, strategies=strategies, budgets=budgets)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "stores").mkdir(exist_ok=True)
    (out / "suite.json").write_text(json.dumps(asdict(suite), indent=2))
    threads = threads or (1 if executor == "ray" else max(1, (os.cpu_count() or 1) // max(1, jobs)))
    with cell_threads(threads):  # other suites may be running beside this one
        _record_stand_in_accuracy(out, {c.problem.label: c.problem for c in cells}.values(), log)
    todo = [c for c in cells if not (out / "cells" / f"{c.key}.json").exists()]
    how = f"with {jobs} job(s)" if executor == "local" else (
        f"as Ray tasks on {address}" if address else f"as Ray tasks on a local Ray instance ({workers or 'all'} CPUs)")
    log(f"suite {suite.name}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run {how}")
    if progress == "auto":
        progress = "bar" if sys.stderr.isatty() else "lines"
    bar = None
    if progress == "bar" and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="cell", desc=f"bench {suite.name}")
    t0 = time.perf_counter()
    finished = 0

    def done(cell: Cell, record: dict[str, Any]) -> None:
        nonlocal finished
        _write_cell(out, cell, record)
        finished += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(cell.key)
        elif progress == "lines":
            elapsed = time.perf_counter() - t0
            remaining = elapsed / finished * (len(todo) - finished)
            what = (f"not applicable ({record['skipped']})" if record.get("skipped") else
                    f"hv={record['hv_final']:.4f}, {record['wall_time_s']:.1f} s")
            log(f"bench {suite.name}: {len(cells) - len(todo) + finished}/{len(cells)} cells done, elapsed "
                f"{format_duration(elapsed)}, remaining ~{format_duration(remaining)} (last: {cell.key}: {what})")

    try:
        if executor == "ray":
            from framework.evaluators import ray_session

            with ray_session(address, workers) as ray:
                task = ray.remote(_run_cell_in).options(num_cpus=threads)
                refs = {task.remote(os.getcwd(), c, threads): c for c in todo}
                while refs:
                    ready, _ = ray.wait(list(refs), num_returns=1)
                    done(refs.pop(ready[0]), ray.get(ready[0]))
        elif jobs <= 1:
            for cell in todo:
                done(cell, run_cell(cell, threads))
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(run_cell, c, threads): c for c in todo}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    finally:
        if bar is not None:
            bar.close()
    log(f"suite {suite.name}: {len(todo)} cells in {time.perf_counter() - t0:.1f} s")
    return collect_results(out)
