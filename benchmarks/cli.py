"""``headrepair bench``: registered as a sub-command through the ``headrepair.commands`` entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["register"]


def register(sub) -> callable:
    from framework.cli_parser import DefaultsFormatter

    p = sub.add_parser("bench", help="run a benchmark suite comparing strategies (resumable)",
                       formatter_class=DefaultsFormatter,
                       description="Run every strategy of a suite on its problems with the same budgets, seeds and "
                                   "reference points; write results.csv, report.md and plots into --out. Finished "
                                   "cells are not rerun. `headrepair report DIR` regenerates the report. Progress: a "
                                   "bar on a terminal; when stdout is not a terminal (a pipe, a log, CI) one line per "
                                   "finished cell: cells done/total, elapsed and estimated remaining time.")
    names = ", ".join(sorted(f.stem for f in (Path(__file__).parent / "suites").glob("*.toml")))
    p.add_argument("--suite", required=True, help=f"suite name ({names}) or TOML path")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the suite's)")
    p.add_argument("--jobs", type=int, default=1, help="cells run in parallel local processes (local executor)")
    p.add_argument("--out", required=True, help="benchmark directory")
    p.add_argument("--threads", type=int, help="threads per cell, in torch and in the BLAS and OpenMP pools "
                                                "(default: the cores shared out among the jobs)")
    p.add_argument("--problems", help="comma-separated problem labels: run only these (the same cells as the "
                                      "full suite, so parts run into one --out add up to it)")
    p.add_argument("--strategies", help="comma-separated strategy names: run only these")
    p.add_argument("--budgets", help="comma-separated budgets: run only these")
    p.add_argument("--data", help="directory of reference data (HolisticBias, FASP head scores) that suites name "
                                  "as ${HEADREPAIR_DATA} (default: $HEADREPAIR_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no progress lines")
    from framework.cli_parser import add_executor_arguments

    add_executor_arguments(p, bench=True)
    return _handle


def _handle(args) -> int:
    from benchmarks.report import write_bench_report
    from benchmarks.runner import collect_results, run_suite
    from benchmarks.suite import load_suite
    from framework.cli_parser import progress_mode

    if getattr(args, "command", None) == "report":
        out = Path(args.run_dir)
        suite = json.loads((out / "suite.json").read_text()).get("name", "") if (out / "suite.json").is_file() else ""
        path = write_bench_report(out, collect_results(out), suite_name=suite)
        print(f"report: {path}")
        return 0
    from benchmarks.runner import check_bench_executor

    executor = args.executor or "local"
    check_bench_executor(executor, jobs=args.jobs, address=args.address, workers=args.workers)
    if args.data:
        os.environ["HEADREPAIR_DATA"] = str(Path(args.data).resolve())
    suite = load_suite(args.suite)
    def listed(value: str | None, kind=str) -> list | None:
        return None if value is None else [kind(v.strip()) for v in value.split(",") if v.strip()]

    records = run_suite(suite, args.out, seeds=args.seeds, jobs=args.jobs, threads=args.threads,
                        problems=listed(args.problems), strategies=listed(args.strategies),
                        budgets=listed(args.budgets, int), progress=progress_mode(args.quiet),
                        executor=executor, address=args.address, workers=args.workers)
    path = write_bench_report(Path(args.out), records, suite_name=suite.name)
    print(f"results: {Path(args.out) / 'results.csv'}\nreport: {path}")
    return 0
