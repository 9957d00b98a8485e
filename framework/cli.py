"""``headrepair``: the command line.  Run ``headrepair --help`` or ``headrepair COMMAND --help``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import DEFAULTS, RunConfig, load_config_file, parse_set, route_options
from framework.registry import ACQUISITIONS, PROBLEMS, STRATEGIES, SURROGATES
from framework.space import check_mask_file, read_mask_file
from framework.validate import one_line

__all__ = ["main", "build_parser", "DefaultsFormatter", "progress_mode"]

_EPILOG = """\
examples:
  headrepair run                                   repair the embedded SmolLM2 model with surrogate-sa (the main job)
  headrepair run --budget 60 --set mode=oneshot    the paper-faithful one-shot mode
  headrepair run --problem rho-mnk --strategy random --budget 50 --set n_bits=64
  headrepair resume runs/<dir>                     continue an interrupted run to its budget
  headrepair evaluate --mask keep-all --split both
  headrepair export runs/<dir> --out repaired/
  headrepair run --strategy attribution-greedy     follow the heads' gradients, verify every step
  headrepair attribute --out a.json --compare 60   every head's estimated effect, checked on 60 real knock-outs
  headrepair run --problem rho-mnk --strategy random --executor ray --workers 2
                                                   evaluate on 2 Ray workers (a local Ray instance)
  headrepair list                                  what can be plugged in

Bad input (an unknown name, a mistyped option, a file that cannot be read...) ends with one line
on stderr that names it, and exit status 2; --debug (on any command) shows the traceback instead.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states its default or
    the default is empty (``None``, ``False``, ``[]``): every default is stated once, and truly
    (a flag whose value comes from the run configuration says so in its own help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text or not action.option_strings or d is None or d is False or d is argparse.SUPPRESS
                or (isinstance(d, list) and not d)):
            return text
        return f"{text} (default: %(default)s)"


def progress_mode(quiet: bool) -> str:
    """How ``run``/``bench`` show progress: ``"off"`` with ``--quiet``; ``"lines"`` (one plain line per
    batch or cell on stdout) when stdout is not a terminal (a pipe, a log file, CI, a cluster job);
    else ``"bar"`` (the tqdm bar on stderr, when stderr is a terminal)."""
    if quiet:
        return "off"
    return "bar" if sys.stdout.isatty() else "lines"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="headrepair", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description="Repair the fairness of a causal language model by searching which attention heads to switch "
                    "off. Budgets count real evaluations of the problem (for masked-lm: runs of the masked model).")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also after a command)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="registered problems, strategies, surrogates and acquisitions, with summaries",
                   formatter_class=DefaultsFormatter)

    r = sub.add_parser("run", help="search masks on a problem and write a run directory",
                       formatter_class=DefaultsFormatter,
                       description="Search masks with a strategy, within a budget of real evaluations; write every "
                                   "evaluation, the front, plots, the chosen mask verified on validation and held-out "
                                   "data with a verdict (repaired only when the held-out bias falls by more than 2 "
                                   "paired standard errors), the exported model (only when a mask qualified) and "
                                   "report.md into the run directory. Every option can also come from --config; flags "
                                   "override the file, and the defaults below apply where neither sets a value. "
                                   "Progress: a bar on a terminal; when stdout is not a terminal (a pipe, a log, "
                                   "CI) one line per batch: evaluations/budget, best value of each "
                                   "objective, hypervolume, elapsed and estimated remaining time. Everything is "
                                   "checked before anything is written: a bad option, model or data file ends with "
                                   "one line naming it (exit status 2).")
    r.add_argument("--problem", help=f"registered problem (default: {DEFAULTS.problem})")
    r.add_argument("--strategy", help=f"registered strategy (default: {DEFAULTS.strategy})")
    r.add_argument("--budget", type=int, help=f"real evaluations to spend; a head-sensitivity call counts as one "
                                              f"(default: {DEFAULTS.budget})")
    r.add_argument("--batch-size", type=int, help=f"masks per round (default: {DEFAULTS.batch_size})")
    r.add_argument("--seed", type=int, help=f"random seed of the strategy (default: {DEFAULTS.seed})")
    r.add_argument("--out", help="run directory, new or without a run in it (default: "
                                 "runs/<problem>-<strategy>-s<seed>-<time>)")
    r.add_argument("--store", help="SQLite evaluation store; share one between runs to reuse evaluations "
                                   "(default: <out>/evaluations.sqlite)")
    r.add_argument("--config", help="TOML or YAML file with the same keys as these flags, plus a [set] table")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="problem or strategy option, e.g. mode=oneshot, surrogate=gp, problem.bias_metric=likelihood; "
                        "`headrepair list --options` shows them")
    r.add_argument("--device", help="masked-lm: cpu, cuda, cuda:1 (default: cuda when present)")
    r.add_argument("--dtype", help="masked-lm: float32, bfloat16, float16 (default: bf16 on CUDA, fp32 on CPU)")
    r.add_argument("--max-cost", type=float,
                   help="pick rule: a front mask qualifies only if its perplexity (the cost objective) is at most "
                        "this %% above the unpruned model on the pick, validation and held-out splits, each against "
                        f"its own unpruned value (default: {DEFAULTS.max_cost})")
    r.add_argument("--pick-split", choices=["search", "validation"],
                   help="split whose bias the pick minimizes (a mask must also beat the unpruned bias there); "
                        "validation avoids the optimism of picking on search data; problems without a validation "
                        f"split pick on search (default: {DEFAULTS.pick_split})")
    r.add_argument("--no-export", action="store_true",
                   help="do not export the chosen model (only a mask that qualified is ever exported)")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no progress lines")
    add_executor_arguments(r)

    rs = sub.add_parser("resume", help="continue an interrupted run to its budget (no evaluation paid twice)",
                        formatter_class=DefaultsFormatter,
                        description="Continue an interrupted run: the strategy is replayed with its seed, answered "
                                    "from the store, then continues to the budget. A finished run is left as it is "
                                    "(exit status 0); a run whose problem settings changed since it began (model, "
                                    "data, metric settings) is refused, naming the settings that differ.")
    rs.add_argument("run_dir")
    rs.add_argument("--quiet", action="store_true", help="no progress bar and no progress lines")
    add_executor_arguments(rs, resume=True)

    lst = sub.choices["list"]
    lst.add_argument("--options", action="store_true", help="also list each entry's options")

    ev = sub.add_parser("evaluate", help="evaluate one mask on the masked-lm problem and print JSON",
                        formatter_class=DefaultsFormatter,
                        description="Print a JSON object of metric values of a mask (with the unpruned baseline and "
                                    "relative change) on the chosen splits; with several axes, one entry per axis.")
    ev.add_argument("--model", default="embedded:smollm2-135m", help="HF id, local directory or embedded:smollm2-135m")
    ev.add_argument("--mask", default="keep-all", help="mask JSON file (L*H 0/1, L lists of H, or head_mask.json) "
                                                       "or keep-all")
    ev.add_argument("--metrics", help="comma separated among pronoun, swap, pairs, likelihood, generation, "
                                      "perplexity, accuracy (needs choice_file) (default: the problem's bias metric "
                                      "and perplexity)")
    ev.add_argument("--split", default="search", choices=["search", "validation", "heldout", "both", "all"],
                    help="both = search and heldout")
    ev.add_argument("--axes", help="HolisticBias axes, comma separated (default: the problem's axis)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="masked-lm problem option")
    ev.add_argument("--device")
    ev.add_argument("--dtype")

    ex = sub.add_parser("export", help="export a repaired model (plain transformers format)",
                        formatter_class=DefaultsFormatter,
                        description="Either export RUN_DIR's chosen mask (or one re-picked with --max-cost/"
                                    "--pick-split, by the rule of `headrepair run`), or --model M --mask FILE. A run "
                                    "whose pick found no repair (no front mask qualified) has nothing to export.")
    ex.add_argument("run_dir", nargs="?")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--model", help="model to prune with --mask (instead of a run directory)")
    ex.add_argument("--mask", help="mask JSON file (with --model)")
    ex.add_argument("--max-cost", type=float,
                    help="re-pick from the run: perplexity at most this %% above the unpruned model on the pick, "
                         "validation and held-out splits (default: the run's max_cost)")
    ex.add_argument("--pick-split", choices=["search", "validation"],
                    help="re-pick on this split (default: the run's pick_split, validation unless it was set)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="masked-lm problem option")

    rp = sub.add_parser("report", help="regenerate report.md and the plots of a run (or benchmark) directory "
                                       "from stored results", formatter_class=DefaultsFormatter)
    rp.add_argument("run_dir")
    _add_plugin_commands(sub)
    for command in sub.choices.values():  # --debug after the command too (not overriding one given before it)
        if "--debug" not in command._option_string_actions:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show the traceback of an error")
    return p


def add_executor_arguments(p: argparse.ArgumentParser, *, resume: bool = False, bench: bool = False) -> None:
    """``--executor``, ``--address``, ``--workers`` (and ``--worker-cpus``, ``--pending`` for run and
    resume): where real evaluations run (:mod:`framework.evaluators`)."""
    if resume:
        p.add_argument("--executor", choices=["local", "ray"],
                       help="where the rest of the evaluations run, local or ray: it changes no value (default: "
                            "the run's executor settings; a new --executor drops the run's --address, --workers, "
                            "--worker-cpus and --pending)")
    else:
        what = "cells run: local (processes of this machine) or ray (one Ray task per cell" if bench else \
            "evaluations run: local (this process) or ray (a pool of Ray worker actors"
        p.add_argument("--executor", choices=["local", "ray"],
                       help=f"where {what}; needs pip install 'headrepair[ray]') (default: local)")
    p.add_argument("--address", help="ray: address of a running cluster (`ray start --head` prints it) (default: "
                                     + ("the run's; without one, " if resume else "")
                                     + "start a local Ray instance and shut it down at the end)")
    if bench:
        p.add_argument("--workers", type=int,
                       help="ray: CPUs of the local Ray instance, one cell each at a time (default: this machine's "
                            "CPUs; on a cluster every CPU it has)")
        return
    run_s = "the run's; without one, " if resume else ""
    p.add_argument("--workers", type=int,
                   help=f"ray: worker actors, each holding the problem (default: {run_s}one per GPU of the cluster, "
                        "else one per --worker-cpus CPUs; a local Ray instance gets workers x worker-cpus CPUs)")
    p.add_argument("--worker-cpus", type=int,
                   help=f"ray: CPUs (and torch threads) per worker (default: {run_s}1)")
    p.add_argument("--pending", type=int,
                   help="ray: batches in flight at once for a strategy that asks while evaluations are pending "
                        f"(random; the others wait for each batch) (default: {run_s}the number of workers)")


_PLUGIN_COMMANDS: dict[str, Any] = {}


def _add_plugin_commands(sub) -> None:
    """Sub-commands from the ``headrepair.commands`` entry-point group: each entry is a function
    ``register(subparsers) -> handler`` that adds its parser and returns ``handler(args) -> int``."""
    from importlib import metadata

    for ep in metadata.entry_points(group="headrepair.commands"):
        if ep.name in sub.choices:
            continue
        _PLUGIN_COMMANDS[ep.name] = ep.load()(sub)   # every parser built gets every plug-in command


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
    from framework.loop import OptimizationResult, run_hypervolume_curve
    from framework.problem import SEARCH
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


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "list":
        return _cmd_list(args)
    if args.command == "run":
        from framework.runs import start_run

        cfg = _run_config(args)
        mode = progress_mode(args.quiet)
        out = start_run(cfg, progress=None if mode == "bar" else False, progress_lines=mode == "lines")
        print(f"run directory: {out}")
        return 0
    if args.command == "resume":
        from framework.runs import finished_run, read_run_config, resume_run

        read_run_config(args.run_dir)  # a directory that is not a run fails here
        note = finished_run(args.run_dir)
        if note is not None:  # a no-op that says so
            print(f"headrepair resume: {note}", file=sys.stderr)
        else:
            mode = progress_mode(args.quiet)
            resume_run(args.run_dir, progress=None if mode == "bar" else False, progress_lines=mode == "lines",
                       executor={k: getattr(args, k) for k in ("executor", "address", "workers", "worker_cpus",
                                                               "pending")})
        print(f"run directory: {args.run_dir}")
        return 0
    if args.command == "evaluate":
        return _cmd_evaluate(args)
    if args.command == "export":
        return _cmd_export(args)
    if args.command == "report":
        bench_dir = any((Path(args.run_dir) / f).exists() for f in ("suite.json", "results.csv"))
        if bench_dir and "bench" in _PLUGIN_COMMANDS:  # a benchmark directory (even an unfinished one)
            return _PLUGIN_COMMANDS["bench"](args)
        return _cmd_report(args)
    if args.command in _PLUGIN_COMMANDS:
        return _PLUGIN_COMMANDS[args.command](args)
    parser.error(f"unknown command {args.command!r}")
    return 2


#: Errors that bad input raises (exit status 2, one line); anything else is unexpected (exit status 1).
_INPUT_ERRORS = (ValueError, TypeError, LookupError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run ``headrepair`` with ``argv``; returns the exit status.  An error is one line on stderr
    (``headrepair COMMAND: error: ...``): status 2 for bad input, 1 for an unexpected error or a run
    stopped because its evaluations kept failing (:class:`~framework.loop.EvaluationsFailed`); with
    ``--debug`` the exception propagates (traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    debug = bool(getattr(args, "debug", False))
    if not sys.stderr.isatty() and not debug:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bars in logs
    try:
        return _dispatch(args, parser)
    except KeyboardInterrupt:
        if debug:
            raise
        hint = " (`headrepair resume DIR` continues a run)" if args.command in ("run", "resume") else ""
        print(f"headrepair {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from framework.loop import EvaluationsFailed

        message = one_line(exc) or type(exc).__name__
        if isinstance(exc, EvaluationsFailed):  # not a bug: the problem cannot evaluate masks (exit status 1)
            print(f"headrepair {args.command}: error: {message}", file=sys.stderr)
            return 1
        if not isinstance(exc, _INPUT_ERRORS):
            print(f"headrepair {args.command}: error: {type(exc).__name__}: {message} (unexpected; rerun with "
                  "--debug for the traceback)", file=sys.stderr)
            return 1
        print(f"headrepair {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
