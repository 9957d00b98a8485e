"""Evaluations per hour of a problem on W Ray workers of one CPU each (docs/cluster.md).

    python -m benchmarks.ray_throughput WORKERS BUDGET [--problem NAME] [--set KEY=VALUE ...]

Default problem: the default ``masked-lm`` (the embedded SmolLM2).  ``random`` (pruning ratio up to
5%) proposes batches of 2, with up to WORKERS batches in flight; the actors' start (each builds the
problem: loads the model and data) is timed apart from the loop.  Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import time

from framework.config import parse_set
from framework.evaluators import RayEvaluator
from framework.loop import optimize
from framework.registry import PROBLEMS, STRATEGIES


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workers", type=int)
    p.add_argument("budget", type=int)
    p.add_argument("--problem", default="masked-lm")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    options = parse_set(args.set)
    problem = PROBLEMS.create(args.problem, **options)
    ev = RayEvaluator(args.problem, options, workers=args.workers, worker_cpus=1)
    try:
        t0 = time.perf_counter()
        ev.bind(problem)   # start the actors: each builds the problem once
        t1 = time.perf_counter()
        res = optimize(problem, STRATEGIES.create("random", max_ratio=0.05), args.budget, batch_size=2, seed=0,
                       evaluator=ev, max_pending=args.workers, progress=False)
        t2 = time.perf_counter()
    finally:
        ev.close()
        problem.close()
    out = {"problem": args.problem, "workers": args.workers, "evaluations": res.n_evaluations,
           "actor_start_s": round(t1 - t0, 1), "loop_s": round(t2 - t1, 1),
           "evals_per_hour": round(res.n_evaluations / (t2 - t1) * 3600),
           "mean_cost_s": round(res.evaluation_cost / res.n_evaluations, 1),
           "load": open("/proc/loadavg").read().split()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
