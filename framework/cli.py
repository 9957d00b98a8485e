"""``headrepair``: the command line.  Run ``headrepair --help`` or ``headrepair COMMAND --help``.

:func:`main` parses (:mod:`framework.cli_parser`), dispatches to a command (:mod:`framework.cli_commands`,
or a ``headrepair.commands`` plug-in) and turns errors into one line and an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from framework.cli_commands import _cmd_evaluate, _cmd_export, _cmd_list, _cmd_report, _run_config
from framework.cli_parser import _PLUGIN_COMMANDS, DefaultsFormatter, build_parser, progress_mode
from framework.validate import one_line

# build_parser, DefaultsFormatter and progress_mode (defined in framework.cli_parser) stay importable from
# here: plug-in commands of the ``headrepair.commands`` entry-point group outside this repository may import them
__all__ = ["main", "build_parser", "DefaultsFormatter", "progress_mode"]


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
