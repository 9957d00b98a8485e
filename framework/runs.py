"""Run directories: start, resume and finish a run, writing everything a user reads.

A run directory holds::

    run.json             the run's settings (what ``headrepair resume`` needs)
    evaluations.sqlite   every real evaluation (unless ``store`` points elsewhere)
    result.json          problem, strategy, seed, budget, n_evaluations, hypervolume, hv_curve, front, ...
    front.csv            the non-dominated evaluations
    all.csv              every evaluation of the run, in order
    chosen_mask.json     the picked mask and its figures (problems with a baseline)
    heldout.json         the front and the chosen mask re-evaluated on the held-out split
    front.png, hv.png    plots
    report.md            the run in words and numbers
    model/               the exported repaired artefact (problems that can export)
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig
from framework.loop import OptimizationResult, RunProgress, optimize
from framework.pareto import hypervolume
from framework.problem import HELDOUT, SEARCH, Problem
from framework.registry import PROBLEMS, STRATEGIES
from framework.store import EvaluationStore

__all__ = ["start_run", "resume_run", "finish_run", "choose_mask", "Choice", "result_to_json", "evaluate_on_split",
           "split_hypervolume", "RUN_FILE"]

RUN_FILE = "run.json"


def _default_out(cfg: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{cfg.problem}-{cfg.strategy}-s{cfg.seed}-{stamp}")


def start_run(cfg: RunConfig, *, progress: bool | None = None,
              callbacks: Sequence[Callable[[RunProgress], None]] = (), log: Callable[[str], None] = print) -> Path:
    """Create the run directory, run the search, then :func:`finish_run`.  Returns the directory."""
    cfg.out = cfg.out or _default_out(cfg)
    out = Path(cfg.out)
    if (out / RUN_FILE).exists():
        raise FileExistsError(f"{out} already holds a run; use `headrepair resume {out}` or another --out")
    out.mkdir(parents=True, exist_ok=True)
    cfg.run_id = cfg.run_id or uuid.uuid4().hex[:12]
    cfg.store = cfg.store or str(out / "evaluations.sqlite")
    # validate names and options before writing anything a resume would trust
    PROBLEMS.get(cfg.problem)
    STRATEGIES.get(cfg.strategy)
    (out / RUN_FILE).write_text(json.dumps(cfg.to_json(), indent=2))
    return _execute(cfg, out, progress=progress, callbacks=callbacks, log=log)


def resume_run(run_dir: str | Path, *, progress: bool | None = None,
               callbacks: Sequence[Callable[[RunProgress], None]] = (), log: Callable[[str], None] = print) -> Path:
    """Continue an interrupted run to its budget: the strategy is replayed with the same seed
    and answered from the store (no evaluation is paid twice), then continues."""
    out = Path(run_dir)
    if not (out / RUN_FILE).is_file():
        raise FileNotFoundError(f"{out} is not a run directory (no {RUN_FILE})")
    cfg = RunConfig.from_json(json.loads((out / RUN_FILE).read_text()))
    return _execute(cfg, out, progress=progress, callbacks=callbacks, log=log)


def _execute(cfg: RunConfig, out: Path, *, progress, callbacks, log) -> Path:
    problem = PROBLEMS.create(cfg.problem, **cfg.problem_options)
    try:
        strategy = STRATEGIES.create(cfg.strategy, **cfg.strategy_options)
        with EvaluationStore(cfg.store) as store:
            done = len(store.trials(cfg.run_id))
            if done:
                log(f"resuming run {cfg.run_id}: {done} evaluations already paid, replaying the strategy")
            result = optimize(problem, strategy, cfg.budget, batch_size=cfg.batch_size, seed=cfg.seed, store=store,
                              callbacks=callbacks, run_id=cfg.run_id, progress=progress, strategy_name=cfg.strategy)
            write_result(out, result, cfg, strategy_diagnostics=_diagnostics(strategy))
            finish_run(out, problem, result, cfg, store, log=log)
    finally:
        problem.close()
    return out


def _diagnostics(strategy) -> dict[str, Any]:
    fn = getattr(strategy, "diagnostics", None)
    return fn() if callable(fn) else {}


# ------------------------------------------------------------------ result files
def result_to_json(result: OptimizationResult) -> dict[str, Any]:
    front = [{"mask": [int(b) for b in m], "objectives": dict(zip(result.objective_names, map(float, v), strict=True))}
             for m, v in zip(result.front_masks, result.front_values, strict=True)]
    return {
        "problem": result.problem, "strategy": result.strategy, "strategy_options": result.strategy_options,
        "seed": result.seed, "budget": result.budget, "batch_size": result.batch_size,
        "n_evaluations": result.n_evaluations, "n_cache_hits": result.n_cache_hits,
        "n_failed": int((~np.all(np.isfinite(result.values), axis=1)).sum()) if result.n_evaluations else 0,
        "objective_names": list(result.objective_names), "ref_point": result.ref_point.tolist(),
        "bounds": result.bounds.tolist(), "hypervolume": result.hypervolume,
        "hv_curve": [float(h) for h in result.hv_curve], "front": front,
        "wall_time_s": result.wall_time, "strategy_time_s": result.strategy_time,
        "evaluation_time_s": result.evaluation_time, "stop_reason": result.stop_reason, "run_id": result.run_id,
    }


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
    (out / "result.json").write_text(json.dumps(data, indent=2, default=float))
    _write_csv(out / "front.csv", result.objective_names, result.front_masks, result.front_values)
    _write_csv(out / "all.csv", result.objective_names, result.masks, result.values, extra=result.cache_hit)


# -------------------------------------------------------------------- choosing
@dataclass
class Choice:
    """The mask picked from a run, and why."""

    mask: np.ndarray
    index: int | None           # index in the run's evaluations (None: the unpruned mask)
    split: str
    values: np.ndarray          # on the pick split
    baseline: np.ndarray        # unpruned model on the pick split
    rule: str
    note: str = ""


def evaluate_on_split(problem: Problem, store: EvaluationStore, masks: np.ndarray,
                      split: str) -> tuple[np.ndarray, list]:
    """Evaluate on a non-search split through the store (free of the budget, never paid twice)."""
    fp = problem.fingerprint(split)
    store.register_problem(fp, problem.name, {"split": split, **problem.describe()})
    stored = store.get(fp, masks)
    todo = [i for i, s in enumerate(stored) if s is None]
    values = np.full((len(masks), problem.n_objectives), np.nan)
    infos: list[dict] = [{} for _ in masks]
    for i, s in enumerate(stored):
        if s is not None:
            values[i], infos[i] = s.objectives, s.info
    if todo:
        t0 = time.perf_counter()
        v, inf = problem.evaluate_with_info(masks[todo], split)
        dt = time.perf_counter() - t0
        store.put(fp, masks[todo], v, infos=inf, wall_times=[dt / len(todo)] * len(todo), strategy="verification")
        for j, i in enumerate(todo):
            values[i], infos[i] = v[j], inf[j]
    return values, infos


def split_hypervolume(problem: Problem, values: np.ndarray, split: str) -> float:
    """Hypervolume of ``values`` measured on ``split``, normalized by that split's own reference.

    The problem's reference point and bounds come from its search-split baseline; another split
    has other unpruned values (other text, other descriptors), so its reference point and bounds
    are scaled by ``baseline(split) / baseline(search)`` per objective: a front that repairs the
    model as much on held-out data as on search data gets the same hypervolume on both."""
    ref = np.asarray(problem.ref_point, dtype=float)
    lo, hi = np.asarray(problem.bounds, dtype=float)
    base_s, base_x = problem.baseline(SEARCH), problem.baseline(split)
    if split != SEARCH and base_s is not None and base_x is not None:
        scale = np.where(np.asarray(base_s) != 0, np.asarray(base_x) / np.asarray(base_s), 1.0)
        ref, lo, hi = ref * scale, lo * scale, hi * scale
    span = np.where(hi > lo, hi - lo, 1.0)
    return hypervolume((np.asarray(values, dtype=float) - lo) / span, (ref - lo) / span)


def choose_mask(problem: Problem, result: OptimizationResult, store: EvaluationStore, *,
                max_cost: float = 5.0, split: str = SEARCH) -> Choice | None:
    """Lowest objective 0 among the run's front with objective 1 at most ``max_cost`` % above the
    unpruned model, judged on ``split`` (``"validation"`` re-evaluates the front there: picking on
    search data is optimistic).  ``None`` when the problem has no baseline."""
    if split not in problem.splits:
        raise ValueError(f"cannot pick on split {split!r}: problem {problem.name!r} has {list(problem.splits)}")
    base = problem.baseline(split)
    if base is None or problem.n_objectives < 2:
        return None
    rule = (f"lowest {problem.objective_names[0]} on the {split} split with {problem.objective_names[1]} "
            f"<= {1 + max_cost / 100:.3f} x unpruned")
    idx = result.front_index
    masks = result.masks[idx]
    values = result.values[idx] if split == SEARCH else evaluate_on_split(problem, store, masks, split)[0]
    ok = np.all(np.isfinite(values), axis=1) & (values[:, 1] <= base[1] * (1 + max_cost / 100))
    ok &= values[:, 0] < base[0]
    if not ok.any():
        return Choice(problem.space.keep_all()[0], None, split, np.asarray(base), np.asarray(base), rule,
                      note="no evaluated mask met the rule and beat the unpruned model: the unpruned model is kept")
    best = np.flatnonzero(ok)[np.argmin(values[ok, 0])]
    return Choice(masks[best], int(idx[best]), split, values[best], np.asarray(base), rule)


# ------------------------------------------------------------------- finishing
def finish_run(out: Path, problem: Problem, result: OptimizationResult, cfg: RunConfig, store: EvaluationStore,
               *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pick, verify on held-out data, export, plot and write the report.  Returns the figures."""
    from framework.report import plot_front, plot_hv, write_report  # matplotlib only when finishing

    figures: dict[str, Any] = {"result": json.loads((out / "result.json").read_text())}
    choice = choose_mask(problem, result, store, max_cost=cfg.max_cost, split=cfg.pick_split) \
        if result.n_evaluations else None
    heldout: dict[str, Any] | None = None
    if HELDOUT in problem.splits and result.n_evaluations:
        log("verifying the front and the chosen mask on the held-out split (not counted in the budget)")
        front_masks = result.front_masks
        h_values, h_infos = evaluate_on_split(problem, store, front_masks, HELDOUT)
        heldout = {
            "front": [{"index": int(i), "search": result.values[i].tolist(), "heldout": hv.tolist(), "info": inf}
                      for i, hv, inf in zip(result.front_index, h_values, h_infos, strict=True)],
            "hypervolume_search": split_hypervolume(problem, result.front_values, SEARCH),
            "hypervolume_heldout": split_hypervolume(problem, h_values, HELDOUT),
        }
    if choice is not None:
        chosen = _verify_choice(problem, result, store, choice)
        figures["chosen"] = chosen
        (out / "chosen_mask.json").write_text(json.dumps(chosen, indent=2, default=float))
        if cfg.export and choice.index is not None:
            try:
                path = problem.export(choice.mask, str(out / "model"), {"chosen": chosen, "run_id": result.run_id})
                figures["exported"] = str(path)
                log(f"exported the repaired model to {path}")
            except NotImplementedError as exc:
                figures["exported"] = None
                log(str(exc))
    if heldout is not None:
        (out / "heldout.json").write_text(json.dumps(heldout, indent=2, default=float))
        figures["heldout"] = heldout
    plot_front(out / "front.png", problem.objective_names, result, choice, baseline=problem.baseline(SEARCH),
               heldout=heldout, baseline_heldout=problem.baseline(HELDOUT) if heldout is not None else None)
    plot_hv(out / "hv.png", result)
    write_report(out / "report.md", problem, result, cfg, figures)
    log(f"report: {out / 'report.md'}")
    return figures


def _verify_choice(problem: Problem, result: OptimizationResult, store: EvaluationStore,
                   choice: Choice) -> dict[str, Any]:
    names = problem.objective_names
    keep = problem.space.keep_all()
    masks = np.vstack([choice.mask[None], keep])
    per_split: dict[str, Any] = {}
    for split in problem.splits:
        values, infos = evaluate_on_split(problem, store, masks, split)
        entry: dict[str, Any] = {}
        for j, name in enumerate(names):
            v, b = float(values[0, j]), float(values[1, j])
            entry[name] = {"value": v, "se": infos[0].get(f"{name}_se"), "unpruned": b,
                           "unpruned_se": infos[1].get(f"{name}_se"),
                           "relative_change": (v - b) / b if b else None}
        per_split[split] = entry
    warning = None
    bias = names[0]
    s_gain = -(per_split[SEARCH][bias]["relative_change"] or 0.0)
    if HELDOUT in per_split:
        h_gain = -(per_split[HELDOUT][bias]["relative_change"] or 0.0)
        if s_gain > 0 and h_gain < s_gain / 2:
            warning = (f"the held-out {bias} reduction ({100 * h_gain:.1f}%) is under half the search reduction "
                       f"({100 * s_gain:.1f}%): the repair may not generalize")
    return {"rule": choice.rule, "pick_split": choice.split, "index": choice.index, "note": choice.note,
            "mask": problem.space.to_grid(choice.mask)[0].astype(int).tolist(),
            "n_pruned": int((~choice.mask).sum()), "pruned_heads": np.flatnonzero(~choice.mask).tolist(),
            "splits": per_split, "warning": warning}
