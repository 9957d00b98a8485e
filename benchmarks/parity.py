"""Parity check between two checkouts: does every strategy still ask the same masks?

Runs every built-in strategy (and the example plug-in) on the smoke suite's problems (budget 40,
batch 5, the smoke suite's cheap options) and on two synthetic problems of the synthetic suite
(``mnk-N144-K2-r+0.0``, ``knapsack-144``; budget 50, batch 10, default options), seeds 0..4, and
writes per cell the final hypervolume and a hash of the asked masks in order.  Strategies are
imported by module path, not through the registry, so the script runs against any checkout on
``PYTHONPATH``::

    PYTHONPATH=/path/to/old/checkout python -m benchmarks.parity --out old.json
    python -m benchmarks.parity --out new.json --compare old.json

A strategy that refuses a problem (FASP below its budget, attribution-greedy without head
sensitivities) is recorded as not applicable.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys

import numpy as np

STRATEGIES = {
    "surrogate-sa": "strategies.surrogate_sa:SurrogateSA",
    "random": "strategies.random_search:RandomSearch",
    "nsga2": "strategies.nsga2:NSGA2Strategy",
    "qnehvi": "strategies.bayesopt:QNEHVI",
    "qnparego": "strategies.bayesopt:QNParEGO",
    "fasp": "strategies.fasp:FASP",
    "attribution-greedy": "strategies.attribution_greedy:AttributionGreedy",
    "greedy-flip": "headrepair_greedy:GreedyFlip",
}
SMOKE_OPTIONS = {"surrogate-sa": {"n_chains": 16, "n_steps": 100},
                 "qnehvi": {"num_restarts": 1, "raw_samples": 32}, "qnparego": {"num_restarts": 1, "raw_samples": 32}}
PROBLEMS = [  # label, problem class, options, budget, batch, strategy options
    ("mnk-N24-K2", "objectives.synthetic:RhoMNKProblem", {"n_bits": 24, "k": 2, "rho": 0.0, "seed": 1}, 40, 5,
     SMOKE_OPTIONS),
    ("knapsack-20", "objectives.synthetic:KnapsackProblem", {"n_items": 20, "seed": 1, "capacity_ratio": 0.6}, 40, 5,
     SMOKE_OPTIONS),
    ("mnk-N144-K2-r+0.0", "objectives.synthetic:RhoMNKProblem",
     {"n_bits": 144, "k": 2, "rho": 0.0, "seed": 1, "max_pruned_fraction": 0.5}, 50, 10, {}),
    ("knapsack-144", "objectives.synthetic:KnapsackProblem", {"n_items": 144, "seed": 1, "capacity_ratio": 0.8},
     50, 10, {}),
]


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def run(seeds: int, only: list[str] | None, problems: list[str] | None = None) -> dict[str, dict]:
    import torch

    from framework.loop import optimize
    from framework.strategy import StrategyNotApplicable

    torch.set_num_threads(1)
    out: dict[str, dict] = {}
    for label, problem_path, options, budget, batch, strategy_options in PROBLEMS:
        if problems and label not in problems:
            continue
        problem = _load(problem_path)(**options)
        for name, path in STRATEGIES.items():
            if only and name not in only:
                continue
            for seed in range(seeds):
                key = f"{label}__b{budget}__{name}__s{seed}"
                try:
                    res = optimize(problem, _load(path)(**strategy_options.get(name, {})), budget,
                                   batch_size=batch, seed=seed, progress=False, strategy_name=name)
                except StrategyNotApplicable as exc:
                    out[key] = {"not_applicable": str(exc)[:80]}
                    continue
                masks = np.asarray(res.masks, dtype=bool)
                out[key] = {"hv_final": round(float(res.hv_curve[-1]), 12),
                            "masks": hashlib.sha256(np.packbits(masks).tobytes()).hexdigest()[:16]}
                print(key, out[key], file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file written")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", default=None, help="comma-separated subset")
    ap.add_argument("--problems", default=None, help="comma-separated subset of the problem labels")
    ap.add_argument("--compare", default=None, help="an earlier output: print the cells that differ")
    args = ap.parse_args(argv)
    res = run(args.seeds, args.strategies.split(",") if args.strategies else None,
              args.problems.split(",") if args.problems else None)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare) as f:
            old = json.load(f)
        same = [k for k in res if k in old and res[k] == old[k]]
        diff = [k for k in res if k in old and res[k] != old[k]]
        print(f"{len(same)} cells identical, {len(diff)} differ")
        for k in diff:
            print(f"  {k}: {old[k]} -> {res[k]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
