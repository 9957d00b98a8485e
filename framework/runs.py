"""Run directories: start, resume and finish a run, writing everything a user reads.

A run directory holds::

    run.json             the run's settings (what ``headrepair resume`` needs)
    evaluations.sqlite   every real evaluation (unless ``store`` points elsewhere)
    result.json          problem, strategy, seed, budget, n_evaluations, hypervolume, hv_curve, front, ...
    front.csv            the non-dominated evaluations
    all.csv              every evaluation of the run, in order
    chosen_mask.json     the picked mask (or the unpruned one when nothing qualified), its figures on every
                         split with paired standard errors, and the verdict (problems with a baseline)
    heldout.json         the front re-evaluated on the held-out split
    front.png, hv.png    plots
    report.md            the run in words and numbers
    model/               the exported artefact of the chosen mask (only when a mask qualified)
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig, check_run_config
from framework.loop import OptimizationResult, RunProgress, evaluate_guarded, optimize
from framework.pareto import hypervolume
from framework.problem import HELDOUT, SEARCH, Problem
from framework.registry import PROBLEMS, STRATEGIES
from framework.store import EvaluationStore, check_store, run_fingerprints
from framework.verdict import (
    VALIDATION,
    change,
    cost_splits,
    fallback_note,
    judge,
    reason_bias,
    reason_cost,
    reason_failed,
    reason_screened,
    reason_unpruned,
    roles,
    rule_sentence,
)

__all__ = ["start_run", "resume_run", "finish_run", "choose_mask", "verify_choice", "Choice", "result_to_json",
           "evaluate_on_split", "split_hypervolume", "RUN_FILE", "ProgressLines", "read_run_config", "finished_run",
           "check_prunable", "check_same_problem", "setting_differences", "format_duration", "EXECUTOR_SETTINGS"]

RUN_FILE = "run.json"


def _default_out(cfg: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{cfg.problem}-{cfg.strategy}-s{cfg.seed}-{stamp}")


def start_run(cfg: RunConfig, *, progress: bool | None = None, progress_lines: bool = False,
              callbacks: Sequence[Callable[[RunProgress], None]] = (), log: Callable[[str], None] = print) -> Path:
    """Create the run directory, run the search, then :func:`finish_run`.  Returns the directory.

    Everything is checked before anything is written: the settings, names and option types
    (:func:`~framework.config.check_run_config`, before the problem is built, so before a model
    loads), then the problem itself is built (a model that cannot be loaded or masked, data that
    cannot be read fail here) and must leave at least one head to prune.  ``progress``: the
    progress bar (``None``: when stderr is a terminal); ``progress_lines``: one plain line per
    batch on stdout (:class:`ProgressLines`)."""
    check_run_config(cfg)
    cfg.out = cfg.out or _default_out(cfg)
    out = Path(cfg.out)
    if (out / RUN_FILE).exists():
        raise FileExistsError(f"{out} already holds a run; continue it with `headrepair resume {out}`, "
                              "or choose another --out")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file; expected a directory for the run")
    if cfg.store is not None:
        _check_store_path(cfg.store)
    STRATEGIES.create(cfg.strategy, **cfg.strategy_options)  # cheap: checks its options and its components'
    problem = PROBLEMS.create(cfg.problem, **cfg.problem_options)  # a model loads here
    try:
        check_prunable(problem, cfg.problem)
        out.mkdir(parents=True, exist_ok=True)
        cfg.run_id = cfg.run_id or uuid.uuid4().hex[:12]
        cfg.store = cfg.store or str(out / "evaluations.sqlite")
        (out / RUN_FILE).write_text(json.dumps(cfg.to_json(), indent=2))
        return _execute(cfg, out, problem, progress=progress, progress_lines=progress_lines, callbacks=callbacks,
                        log=log)
    finally:
        problem.close()


def _check_store_path(path: str) -> None:
    """A ``--store`` that is a directory, not SQLite, another program's database or a store of a
    newer schema is refused before anything is written (an older schema is migrated on opening)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"--store {path!r} is a directory; expected an SQLite file (new or existing)")
    if p.is_file():
        check_store(p, label=f"--store {path!r}")


def check_prunable(problem: Problem, name: str | None = None) -> None:
    """Raise ``ValueError`` when ``problem``'s space lets no head be pruned (every head protected,
    or a pruned fraction that rounds to no head): such a run could only evaluate the unpruned model."""
    space = problem.space
    if space.max_pruned >= 1:
        return
    label = f"problem {name or problem.name!r}"
    if len(space.protected) >= space.dim:
        why = f"all {space.dim} heads are protected"
    else:
        why = (f"max_pruned_fraction={space.max_pruned_fraction:g} of {space.dim} heads rounds down to 0 "
               f"({len(space.protected)} protected)")
    raise ValueError(f"{label} leaves no head to prune: {why}; protect fewer heads or raise max_pruned_fraction")


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The settings of the run directory ``run_dir`` (its ``run.json``); errors name what is wrong."""
    out = Path(run_dir)
    expected = "expected a run directory written by `headrepair run`"
    if not out.exists():
        raise FileNotFoundError(f"{out} does not exist; {expected}")
    if not (out / RUN_FILE).is_file():
        raise FileNotFoundError(f"{out} is not a run directory (no {RUN_FILE}); {expected}")
    try:
        data = json.loads((out / RUN_FILE).read_text())
    except ValueError as exc:
        raise ValueError(f"{out / RUN_FILE} is not valid JSON ({exc}); the run directory is damaged") from None
    if not isinstance(data, dict):
        raise ValueError(f"{out / RUN_FILE} holds {type(data).__name__}, not the run's settings")
    return RunConfig.from_json(data)


def finished_run(run_dir: str | Path) -> str | None:
    """A sentence saying that ``run_dir`` is a finished run (its budget spent, or its strategy
    stalled, and its report written), or ``None`` when it is not finished."""
    out = Path(run_dir)
    result, report = out / "result.json", out / "report.md"
    if not (result.is_file() and report.is_file()):
        return None
    try:
        saved = json.loads(result.read_text())
        cfg = read_run_config(out)
    except (ValueError, OSError):
        return None
    spent = int(saved.get("budget_spent", saved.get("n_evaluations", 0)))
    stop = saved.get("stop_reason", "budget")
    if spent < cfg.budget and stop == "budget":
        return None
    how = f"{spent} of {cfg.budget} budget units spent" + ("" if stop == "budget" else f", stopped: {stop}")
    return f"{out} is a finished run ({how}); nothing to resume (report: {report})"


#: The run settings that say where evaluations run (``resume`` may change them: they change no value).
EXECUTOR_SETTINGS = ("executor", "address", "workers", "worker_cpus", "pending")


def resume_run(run_dir: str | Path, *, progress: bool | None = None, progress_lines: bool = False,
               callbacks: Sequence[Callable[[RunProgress], None]] = (), log: Callable[[str], None] = print,
               executor: dict[str, Any] | None = None) -> Path:
    """Continue an interrupted run to its budget: the strategy is replayed with the same seed
    and answered from the store (no evaluation is paid twice), then continues.

    ``executor``: settings among :data:`EXECUTOR_SETTINGS` to resume with instead of the run's
    (``{"executor": "ray", "workers": 4}``); a new ``executor`` drops the run's other executor
    settings.  Default: where the run evaluated.

    A finished run (:func:`finished_run`) is left as it is (logged).  A run whose problem no longer
    has the fingerprint of its stored evaluations (the model, data or metric settings changed) is
    refused, naming the settings that differ."""
    out = Path(run_dir)
    cfg = read_run_config(out)
    note = finished_run(out)
    if note is not None:
        log(note)
        return out
    given = {k: v for k, v in (executor or {}).items() if v is not None}
    unknown = sorted(set(given) - set(EXECUTOR_SETTINGS))
    if unknown:
        raise ValueError(f"resume: unknown executor settings {unknown} (known: {', '.join(EXECUTOR_SETTINGS)})")
    if "executor" in given:
        for key in EXECUTOR_SETTINGS:
            setattr(cfg, key, RunConfig.__dataclass_fields__[key].default)
    for key, value in given.items():
        setattr(cfg, key, value)
    from framework.evaluators import check_executor

    check_executor(cfg.executor, address=cfg.address, workers=cfg.workers, worker_cpus=cfg.worker_cpus,
                   pending=cfg.pending)
    problem = PROBLEMS.create(cfg.problem, **cfg.problem_options)
    try:
        check_same_problem(out, cfg, problem)
        return _execute(cfg, out, problem, progress=progress, progress_lines=progress_lines, callbacks=callbacks,
                        log=log)
    finally:
        problem.close()


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _short(value: Any, width: int = 40) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


_ABSENT = object()


def setting_differences(old: dict, new: dict) -> list[str]:
    """``["key: old -> new", ...]`` for every (dotted) setting that differs between two descriptions."""
    a, b = _flat(old), _flat(json.loads(json.dumps(new, sort_keys=True, default=str)))
    return [f"{k}: {_short(a.get(k, _ABSENT))} -> {_short(b.get(k, _ABSENT))}"
            for k in sorted(set(a) | set(b)) if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def check_same_problem(out: Path, cfg: RunConfig, problem: Problem) -> None:
    """Refuse (``ValueError``) to continue a run whose stored evaluations were made on a problem
    with another fingerprint than ``problem``'s (reads the store, changes nothing)."""
    if not cfg.store or not Path(cfg.store).is_file():
        return
    stored = run_fingerprints(cfg.store, cfg.run_id or "")
    fp = problem.fingerprint(SEARCH)
    other = {k: v for k, v in stored.items() if k != fp}
    if not other:
        return
    diffs = setting_differences(next(iter(other.values())) or {}, problem.describe())
    what = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "") if diffs else \
        "the head space or the objectives differ"
    raise ValueError(f"refusing to resume {out}: the problem's settings changed since the run began ({what}), "
                     "so its stored evaluations do not match them; restore the settings, or start a new run "
                     "with `headrepair run`")


def _execute(cfg: RunConfig, out: Path, problem: Problem, *, progress, progress_lines, callbacks, log) -> Path:
    strategy = STRATEGIES.create(cfg.strategy, **cfg.strategy_options)
    if progress_lines:
        callbacks = [*callbacks, ProgressLines(problem.objective_names)]
    from framework.evaluators import make_evaluator

    with EvaluationStore(cfg.store) as store:
        done = len(store.trials(cfg.run_id)) + len(store.sensitivity_trials(cfg.run_id or ""))
        if done:
            log(f"resuming run {cfg.run_id}: {done} budget units already paid, replaying the strategy")
        evaluator = make_evaluator(cfg.executor, problem_name=cfg.problem, problem_options=cfg.problem_options,
                                   address=cfg.address, workers=cfg.workers, worker_cpus=cfg.worker_cpus)
        try:
            result = optimize(problem, strategy, cfg.budget, batch_size=cfg.batch_size, seed=cfg.seed, store=store,
                              callbacks=callbacks, run_id=cfg.run_id, progress=progress, strategy_name=cfg.strategy,
                              evaluator=evaluator, max_pending=cfg.pending)
        finally:
            evaluator.close()
        write_result(out, result, cfg, strategy_diagnostics=_diagnostics(strategy))
        finish_run(out, problem, result, cfg, store, log=log)
    return out


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``, ``8.24`` -> ``"8.2s"``."""
    if not np.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLines:
    """A callback of :func:`~framework.loop.optimize` that writes one plain line per batch (for logs,
    pipes and cluster jobs, where a progress bar is noise)::

        progress: 20/50 evaluations, best bias=0.4121 perplexity=31.07, hv=0.2871, elapsed 1m52s, remaining ~2m48s

    ``remaining`` extrapolates the time per budget unit so far.  ``write`` defaults to a flushed print."""

    def __init__(self, objective_names: Sequence[str], *, write: Callable[[str], None] | None = None) -> None:
        self.names = tuple(objective_names)
        self.write = write or (lambda line: print(line, flush=True))
        self.t0 = time.perf_counter()

    def __call__(self, state: RunProgress) -> None:
        elapsed = time.perf_counter() - self.t0
        n, total = state.n_evaluations, state.budget
        remaining = elapsed / n * max(total - n, 0) if n else float("nan")
        best = " ".join(f"{name}={b:.4g}" for name, b in zip(self.names, state.best, strict=True))
        self.write(f"progress: {n}/{total} evaluations, best {best}, hv={state.hypervolume:.4f}, "
                   f"elapsed {format_duration(elapsed)}, remaining ~{format_duration(remaining)}")


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


# -------------------------------------------------------------------- choosing
@dataclass
class Choice:
    """The mask picked from a run, and why.

    ``index`` is the mask's position in the run's evaluations, ``None`` when no front mask qualified
    (then ``mask`` is the unpruned mask: no repair was found, and nothing should be exported)."""

    mask: np.ndarray
    index: int | None
    split: str                  # the pick split
    values: np.ndarray          # float[m] on the pick split
    baseline: np.ndarray        # float[m]: the unpruned model on the pick split
    rule: str
    note: str = ""
    max_cost: float = 5.0       # % above the unpruned model allowed for the cost on each of ``cost_splits``
    cost_splits: tuple[str, ...] = ()
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every front mask, qualified or why not

    @property
    def is_repair(self) -> bool:
        return self.index is not None


def evaluate_on_split(problem: Problem, store: EvaluationStore, masks: np.ndarray,
                      split: str) -> tuple[np.ndarray, list]:
    """Evaluate on a non-search split through the store (free of the budget, never paid twice); a
    mask whose evaluation fails gets NaN values (stored as failed with its reason)."""
    fp = problem.fingerprint(split)
    store.register_problem(fp, problem.name, {"split": split, **problem.describe()})
    stored = store.get(fp, masks)
    todo = [i for i, s in enumerate(stored) if s is None]
    values = np.full((len(masks), problem.n_objectives), np.nan)
    infos: list[dict] = [{} for _ in masks]
    for i, s in enumerate(stored):
        if s is not None:
            values[i], infos[i] = s.objectives, s.info
    if todo:  # a mask whose evaluation fails is stored as failed with its reason (NaN values)
        v, inf, reasons, secs = evaluate_guarded(problem, masks[todo], split)
        store.put(fp, masks[todo], v, infos=inf, wall_times=secs, reasons=reasons, strategy="verification")
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
    # clipped at the ideal bound, as every indicator (Problem.normalize(clip=True))
    return hypervolume(np.maximum((np.asarray(values, dtype=float) - lo) / span, 0.0), (ref - lo) / span)


def _split_values(problem: Problem, store: EvaluationStore, result: OptimizationResult, idx: np.ndarray,
                  split: str) -> np.ndarray:
    """``float[len(idx), m]``: the run's evaluations ``idx`` on ``split`` (search values from the run)."""
    if split == SEARCH:
        return result.values[idx]
    return evaluate_on_split(problem, store, result.masks[idx], split)[0]


def _unpruned(problem: Problem, store: EvaluationStore, split: str) -> np.ndarray:
    """``float[m]``: the problem's baseline on ``split``, or the unpruned mask evaluated there."""
    base = problem.baseline(split)
    if base is None:
        base = evaluate_on_split(problem, store, problem.space.keep_all(), split)[0][0]
    return np.asarray(base, dtype=float)


def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rel(values: np.ndarray, base: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base != 0, values / base - 1.0, np.nan)


#: A front mask whose cost on the search split exceeds this multiple of ``max_cost`` is not
#: evaluated on validation and held-out for the pick (it cannot qualify unless the splits disagree
#: by more than the limit itself; perplexity changes agree across splits, Spearman +0.86).
SCREEN_FACTOR = 2.0


def choose_mask(problem: Problem, result: OptimizationResult, store: EvaluationStore | None = None, *,
                max_cost: float = 5.0, split: str = VALIDATION) -> Choice | None:
    """Pick a repair from the run's front: the rule of ``headrepair run``.

    A front mask qualifies when its cost (the cost objective, :func:`framework.verdict.roles`) is at
    most ``max_cost`` % above the unpruned model on the pick split, on validation and on held-out
    (each split against its own unpruned value; splits the problem lacks are skipped), and its bias
    is below the unpruned model's on the pick split ``split``; the unpruned mask never qualifies.
    Among qualifying masks the lowest bias on ``split`` wins.  A mask whose search cost is over
    :data:`SCREEN_FACTOR` times ``max_cost`` does not qualify and is not evaluated on other splits
    for the pick.  Non-search splits are evaluated
    through ``store`` (free of the budget, never paid twice); with ``store=None`` in a throw-away
    in-memory store.  ``split="validation"`` falls back to search for problems without a
    validation split (said in ``note``); held-out data may not pick.

    Returns a :class:`Choice` (``index is None``: no repair found, keep the unpruned model), or
    ``None`` when the problem has no baseline to compare with."""
    if split == HELDOUT:
        raise ValueError("cannot pick on the held-out split: it must stay unseen to verify the pick")
    if store is None:
        with EvaluationStore(":memory:") as tmp:
            return choose_mask(problem, result, tmp, max_cost=max_cost, split=split)
    note = ""
    if split == VALIDATION and split not in problem.splits:
        note, split = fallback_note(VALIDATION, SEARCH), SEARCH
    if split not in problem.splits:
        raise ValueError(f"cannot pick on split {split!r}: problem {problem.name!r} has {list(problem.splits)}")
    if problem.n_objectives < 2 or problem.baseline(split) is None:
        return None
    bias, cost = roles(problem)
    names = problem.objective_names
    checked = cost_splits(problem.splits, split)
    rule = rule_sentence(names[bias], names[cost], split, checked, max_cost)
    idx = result.front_index
    keep = result.masks[idx].all(axis=1) if len(idx) else np.zeros(0, dtype=bool)
    cand = idx[~keep]
    # a mask whose search cost is far over the limit is not paid for on the other splits
    search_cost = _rel(result.values[cand], _unpruned(problem, store, SEARCH))[:, cost] if len(cand) else np.zeros(0)
    screened = ~(search_cost <= SCREEN_FACTOR * max_cost / 100)
    values = {}
    for s in dict.fromkeys([split, *checked]):
        values[s] = np.full((len(cand), problem.n_objectives), np.nan)
        if (~screened).any():
            values[s][~screened] = _split_values(problem, store, result, cand[~screened], s)
    bases = {s: _unpruned(problem, store, s) for s in values}
    rels = {s: _rel(v, bases[s]) for s, v in values.items()}
    candidates: list[dict[str, Any]] = []
    ok = np.ones(len(cand), dtype=bool)
    for j, i in enumerate(cand):
        if screened[j]:
            reasons = [reason_screened(names[cost], _opt(search_cost[j]), SCREEN_FACTOR, max_cost)]
        else:
            reasons = [reason_failed(s) for s, v in values.items() if not np.all(np.isfinite(v[j]))]
        if not reasons:
            for s in checked:
                c = rels[s][j, cost]
                if not c <= max_cost / 100:   # NaN (no baseline on that split) fails too
                    reasons.append(reason_cost(names[cost], _opt(c), s, max_cost))
            if not values[split][j, bias] < bases[split][bias]:
                reasons.append(reason_bias(names[bias], _opt(rels[split][j, bias]), split))
        ok[j] = not reasons
        candidates.append({"index": int(i), "n_pruned": int((~result.masks[i]).sum()), "qualified": not reasons,
                           "reasons": reasons, "values": {s: v[j].tolist() for s, v in values.items()},
                           "relative_change": {s: [_opt(x) for x in r[j]] for s, r in rels.items()}})
    for i in idx[keep]:
        candidates.insert(0, {"index": int(i), "n_pruned": 0, "qualified": False, "reasons": [reason_unpruned()],
                              "values": {}, "relative_change": {}})
    base = bases[split]
    common = {"rule": rule, "note": note, "max_cost": float(max_cost), "cost_splits": tuple(checked),
              "candidates": candidates}
    if not ok.any():
        return Choice(problem.space.keep_all()[0], None, split, base, base, **common)
    best = np.flatnonzero(ok)[np.argmin(values[split][ok, bias])]
    return Choice(result.masks[cand[best]], int(cand[best]), split, values[split][best], base, **common)


def verify_choice(problem: Problem, choice: Choice, store: EvaluationStore | None = None) -> dict[str, Any]:
    """The chosen mask and the unpruned model on every split (through ``store``, free of the budget),
    with relative changes, their paired standard errors and significance, and the verdict
    (:func:`framework.verdict.judge`).  This is ``chosen_mask.json``."""
    if store is None:
        with EvaluationStore(":memory:") as tmp:
            return verify_choice(problem, choice, tmp)
    names = problem.objective_names
    bias, cost = roles(problem)
    masks = np.vstack([choice.mask[None], problem.space.keep_all()])
    per_split: dict[str, Any] = {}
    for split in problem.splits:
        values, infos = evaluate_on_split(problem, store, masks, split)
        entry: dict[str, Any] = {}
        for j, name in enumerate(names):
            v, b = float(values[0, j]), float(values[1, j])
            entry[name] = {"value": v, "se": infos[0].get(f"{name}_se"), "unpruned": b,
                           "unpruned_se": infos[1].get(f"{name}_se"), **change(v, b, infos[0], name)}
        extra = problem.verification_figures(choice.mask, split) if choice.is_repair else {}
        if extra:
            entry["other"] = extra
        per_split[split] = entry
    checked = list(choice.cost_splits) or cost_splits(problem.splits, choice.split)
    verdict = judge(per_split, bias=names[bias], cost=names[cost], pick_split=choice.split,
                    checked=checked, max_cost=choice.max_cost, is_repair=choice.is_repair)
    return {"rule": choice.rule, "pick_split": choice.split, "max_cost": choice.max_cost, "cost_splits": checked,
            "roles": {"bias": names[bias], "cost": names[cost]},
            "index": choice.index, "note": choice.note,
            "mask": problem.space.to_grid(choice.mask)[0].astype(int).tolist(),
            "n_pruned": int((~choice.mask).sum()), "pruned_heads": np.flatnonzero(~choice.mask).tolist(),
            "splits": per_split, "verdict": verdict, "candidates": choice.candidates}


# ------------------------------------------------------------------- finishing
def _front_changes(problem: Problem, values: np.ndarray, infos: Sequence[dict], split: str) -> list[dict] | None:
    """Per front mask, ``{objective: change(...)}`` against the unpruned model on ``split``."""
    base = problem.baseline(split)
    if base is None:
        return None
    return [{n: change(v[j], base[j], inf, n) for j, n in enumerate(problem.objective_names)}
            for v, inf in zip(values, infos, strict=True)]


def finish_run(out: Path, problem: Problem, result: OptimizationResult, cfg: RunConfig, store: EvaluationStore,
               *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pick, verify on validation and held-out data, export a real repair only, plot and write the report.
    Returns the figures."""
    from framework.report import plot_front, plot_hv, write_report  # matplotlib only when finishing

    figures: dict[str, Any] = {"result": json.loads((out / "result.json").read_text())}
    front_masks = result.front_masks
    stored = store.get(problem.fingerprint(SEARCH), front_masks) if len(front_masks) else []
    front_infos = [s.info if s is not None else {} for s in stored]
    heldout: dict[str, Any] | None = None
    if HELDOUT in problem.splits and result.n_evaluations:
        log("verifying the front on the held-out split (not counted in the budget)")
        h_values, h_infos = evaluate_on_split(problem, store, front_masks, HELDOUT)
        s_changes = _front_changes(problem, result.front_values, front_infos, SEARCH)
        h_changes = _front_changes(problem, h_values, h_infos, HELDOUT)
        heldout = {
            "front": [{"index": int(i), "search": result.values[i].tolist(), "heldout": hv.tolist(), "info": inf,
                       "search_change": None if s_changes is None else s_changes[k],
                       "heldout_change": None if h_changes is None else h_changes[k]}
                      for k, (i, hv, inf) in enumerate(zip(result.front_index, h_values, h_infos, strict=True))],
            "hypervolume_search": split_hypervolume(problem, result.front_values, SEARCH),
            "hypervolume_heldout": split_hypervolume(problem, h_values, HELDOUT),
        }
    choice = choose_mask(problem, result, store, max_cost=cfg.max_cost, split=cfg.pick_split) \
        if result.n_evaluations else None
    chosen: dict[str, Any] | None = None
    if choice is not None:
        chosen = verify_choice(problem, choice, store)
        figures["chosen"] = chosen
        (out / "chosen_mask.json").write_text(json.dumps(chosen, indent=2, default=_json_value))
        log(f"verdict: {chosen['verdict']['message']}")
        if cfg.export and choice.is_repair:
            try:
                path = problem.export(choice.mask, str(out / "model"), {"chosen": chosen, "run_id": result.run_id})
                figures["exported"] = str(path)
                log(f"exported the chosen mask to {path}")
            except NotImplementedError as exc:
                figures["exported"] = None
                log(str(exc))
    if heldout is not None:
        (out / "heldout.json").write_text(json.dumps(heldout, indent=2, default=_json_value))
        figures["heldout"] = heldout
    plot_front(out / "front.png", problem, result, chosen, heldout=heldout, front_infos=front_infos,
               max_cost=cfg.max_cost)
    plot_hv(out / "hv.png", result)
    write_report(out / "report.md", problem, result, cfg, figures)
    log(f"report: {out / 'report.md'}")
    return figures
