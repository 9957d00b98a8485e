"""What ``headrepair``'s built-in commands do once their arguments are parsed: ``list``, ``evaluate``,
``export`` and ``report``, the run configuration that ``run`` assembles from ``--config`` and its
flags (:func:`_run_config`), and a run's result rebuilt from its store (:func:`_result_from_store`).
:mod:`framework.cli` dispatches to them; nothing here is public."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig, load_config_file, parse_set, route_options
from framework.registry import ACQUISITIONS, PROBLEMS, STRATEGIES, SURROGATES
from framework.space import check_mask_file, read_mask_file

__all__: list[str] = []


def _run_config(args: argparse.Namespace) -> RunConfig:
    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    options = dict(data.pop("set", {}) or {})
    cfg = RunConfig(**{k: v for k, v in data.items()})
    for flag in ("problem", "strategy", "budget", "batch_size", "seed", "out", "store", "max_cost", "pick_split",
                 "executor", "address", "workers", "worker_cpus", "pending"):
        value = getattr(args, flag)
        if value is not None:
            setattr(cfg, flag, value)
    if args.no_export:
        cfg.export = False
    options.update(parse_set(args.set))
    for flag in ("device", "dtype"):
        if getattr(args, flag) is not None:
            options[f"problem.{flag}"] = getattr(args, flag)
    p_opts, s_opts = route_options(cfg.problem, cfg.strategy, options)
    cfg.problem_options = {**cfg.problem_options, **p_opts}
    merged = dict(cfg.strategy_options)
    for key, value in s_opts.items():  # component groups (surrogate_options...) merge key by key
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both else value
    cfg.strategy_options = merged
    return cfg


def _cmd_list(args: argparse.Namespace) -> int:
    from framework.registry import option_names

    for title, reg in (("problems", PROBLEMS), ("strategies", STRATEGIES), ("surrogates", SURROGATES),
                       ("acquisitions", ACQUISITIONS)):
        print(f"{title}:")
        for e in reg.entries():
            src = "" if e.source == "headrepair" else f"  [{e.source}]"
            print(f"  {e.name:<14} {e.summary}{src}")
            if args.options:
                print(f"  {'':<14} options: {', '.join(option_names(e.factory) or ['(any)'])}")
        for name, why in reg.broken().items():
            print(f"  {name:<14} BROKEN: {why}")
    return 0


def _masked_lm(model: str, sets: list[str], **extra: Any):
    opts = {"model": model, **parse_set(sets), **{k: v for k, v in extra.items() if v is not None}}
    return PROBLEMS.create("masked-lm", **opts)


def _read_mask(problem, path: str) -> np.ndarray:
    if path == "keep-all":
        return problem.space.keep_all()[0]
    return read_mask_file(path, problem.space)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.mask != "keep-all":
        check_mask_file(args.mask)  # before the model loads
    problem = _masked_lm(args.model, args.set, device=args.device, dtype=args.dtype)
    try:
        mask = _read_mask(problem, args.mask)
        splits = {"both": ["search", "heldout"], "all": list(problem.splits)}.get(args.split, [args.split])
        out = problem.report(mask[None], splits, axes=args.axes.split(",") if args.axes else None,
                             metrics=args.metrics.split(",") if args.metrics else None)
        print(json.dumps(out, indent=2, default=float))
    finally:
        problem.close()
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.run_dir:
        from framework.choice import choose_mask, verify_choice
        from framework.runs import read_run_config
        from framework.store import EvaluationStore

        run = Path(args.run_dir)
        cfg = read_run_config(run)
        problem = PROBLEMS.create(cfg.problem, **cfg.problem_options)
        try:
            if args.max_cost is None and args.pick_split is None and (run / "chosen_mask.json").is_file():
                chosen = json.loads((run / "chosen_mask.json").read_text())
            else:
                result = _result_from_store(run, cfg, problem)
                with EvaluationStore(cfg.store) as store:
                    choice = choose_mask(problem, result, store,
                                         max_cost=cfg.max_cost if args.max_cost is None else args.max_cost,
                                         split=args.pick_split or cfg.pick_split)
                    if choice is None:
                        raise ValueError(f"problem {cfg.problem!r} has no baseline to pick against")
                    chosen = verify_choice(problem, choice, store)
            if chosen["index"] is None:
                raise ValueError(f"{run}: no repair found (no front mask qualified under the rule: "
                                 f"{chosen['rule']}), so there is nothing to export; export a mask of your own "
                                 "with --model M --mask FILE")
            if chosen.get("verdict"):
                print(f"verdict: {chosen['verdict']['message']}", file=sys.stderr)
            mask = problem.space.to_flat(np.array(chosen["mask"], dtype=bool))[0]
            try:
                print(problem.export(mask, args.out, {"chosen": chosen}))
            except NotImplementedError as exc:
                raise ValueError(str(exc)) from exc
        finally:
            problem.close()
        return 0
    if not (args.model and args.mask):
        raise ValueError("export needs RUN_DIR, or --model M and --mask FILE")
    if args.mask != "keep-all":
        check_mask_file(args.mask)  # before the model loads
    problem = _masked_lm(args.model, args.set)
    try:
        mask = _read_mask(problem, args.mask)
        print(problem.export(mask, args.out, {"mask_file": args.mask}))
    finally:
        problem.close()
    return 0


def _result_from_store(run: Path, cfg: RunConfig, problem):
    """Rebuild a run's :class:`OptimizationResult` from its store (for re-picking and reports)."""
    from framework.problem import SEARCH
    from framework.results import OptimizationResult, run_hypervolume_curve
    from framework.store import EvaluationStore

    with EvaluationStore(cfg.store) as store:
        trials = store.trials(cfg.run_id)
        sens = store.sensitivity_trials(cfg.run_id or "")
        masks = np.array([m for _, m, _ in trials], dtype=bool).reshape(-1, problem.space.dim)
        stored = store.get(problem.fingerprint(SEARCH), masks) if len(masks) else []
    values = np.array([s.objectives for s in stored]).reshape(-1, problem.n_objectives)
    saved = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    return OptimizationResult(
        problem=cfg.problem, strategy=cfg.strategy, seed=cfg.seed, budget=cfg.budget, batch_size=cfg.batch_size,
        objective_names=tuple(problem.objective_names), ref_point=np.asarray(problem.ref_point, dtype=float),
        bounds=np.asarray(problem.bounds, dtype=float), masks=masks, values=values,
        cache_hit=np.array([h for _, _, h in trials], dtype=bool),
        hv_curve=run_hypervolume_curve(problem, values, [k for k, _, _ in sens]),
        wall_time=saved.get("wall_time_s", 0.0), strategy_time=saved.get("strategy_time_s", 0.0),
        evaluation_time=saved.get("evaluation_time_s", 0.0), run_id=cfg.run_id or "",
        strategy_options=saved.get("strategy_options", {}), stop_reason=saved.get("stop_reason", "budget"),
        sensitivity_masks=np.array([m for _, m, _ in sens], dtype=bool).reshape(-1, problem.space.dim),
        sensitivity_spent=np.array([k for k, _, _ in sens], dtype=int))


def _cmd_report(args: argparse.Namespace) -> int:
    from framework.result_files import write_result
    from framework.runs import finish_run, read_run_config
    from framework.store import EvaluationStore

    run = Path(args.run_dir)
    cfg = read_run_config(run)
    problem = PROBLEMS.create(cfg.problem, **cfg.problem_options)
    try:
        result = _result_from_store(run, cfg, problem)
        saved = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
        write_result(run, result, cfg, strategy_diagnostics=saved.get("strategy_diagnostics", {}))
        with EvaluationStore(cfg.store) as store:
            cfg.export = False
            finish_run(run, problem, result, cfg, store)
    finally:
        problem.close()
    return 0
