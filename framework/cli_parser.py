"""``headrepair``'s argument parser: :func:`build_parser` (every built-in sub-command's options, help
and examples, plus the sub-commands of the ``headrepair.commands`` entry-point group), the help
formatter that states each default once (:class:`DefaultsFormatter`), the executor options shared
with ``headrepair bench`` (:func:`add_executor_arguments`) and how progress is shown
(:func:`progress_mode`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from framework.config import DEFAULTS
from framework.validate import one_line

__all__ = ["build_parser", "add_executor_arguments", "DefaultsFormatter", "progress_mode"]

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
