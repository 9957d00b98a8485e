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

The pick and its verification live in :mod:`framework.choice`, the writing of ``result.json``,
``front.csv`` and ``all.csv`` in :mod:`framework.result_files`, the plain progress lines in
:mod:`framework.progress`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.choice import choose_mask, evaluate_on_split, split_hypervolume, verify_choice
from framework.config import RunConfig, check_run_config
from framework.loop import RunProgress, optimize
from framework.problem import HELDOUT, SEARCH, Problem
from framework.progress import ProgressLines
from framework.registry import PROBLEMS, STRATEGIES
from framework.result_files import _json_value, write_result
from framework.results import OptimizationResult
from framework.store import EvaluationStore, check_store, run_fingerprints
from framework.verdict import change

__all__ = ["start_run", "resume_run", "finish_run", "RUN_FILE", "read_run_config", "finished_run", "check_prunable",
           "check_same_problem", "setting_differences", "EXECUTOR_SETTINGS"]

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
    batch on stdout (:class:`~framework.progress.ProgressLines`)."""
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


def _diagnostics(strategy) -> dict[str, Any]:
    fn = getattr(strategy, "diagnostics", None)
    return fn() if callable(fn) else {}


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
