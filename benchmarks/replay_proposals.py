"""Masks that strategies propose when they search a replay: the recorder's ``proposed`` phase.

    python -m benchmarks.replay_proposals --recording runs/replay/prelim.npz --out proposed.json

Runs each strategy (``--strategies``, seeds ``0..--seeds-1``, ``--budget``) on a ``replay`` problem
fitted to a preliminary recording, and writes ``--n`` distinct masks they asked (a JSON list of
pruned-head lists): first every mask on a run's final front, then masks drawn at random from
everything else they asked, each strategy in turn, so no strategy dominates the sample.  The
recorder then measures them for real (``objectives.replay_record --proposed``): the final
replay is fitted, and its accuracy reported, where strategies actually search.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_STRATEGIES = "surrogate-sa,gp-ehvi-sa,nsga2,qnparego,random"


def collect(recording: str, strategies: list[str], seeds: int, budget: int, batch: int,
            log=print) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """``{strategy: (front masks, other masks)}`` over the seeds (distinct within a strategy)."""
    from framework.history import pack_mask
    from framework.loop import optimize
    from framework.registry import PROBLEMS, STRATEGIES

    problem = PROBLEMS.create("replay", recording=recording)
    out: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for name in strategies:
        front, rest, seen = [], [], set()
        for seed in range(seeds):
            res = optimize(problem, STRATEGIES.create(name), budget, batch_size=batch, seed=seed, progress=False,
                           strategy_name=name)
            on_front = set(res.front_index.tolist())
            for i, m in enumerate(res.masks):
                key = pack_mask(m)
                if key not in seen and not m.all():
                    seen.add(key)
                    (front if i in on_front else rest).append(m)
            log(f"{name} seed {seed}: {len(res.front_index)} front masks, hv {res.hypervolume:.4f}")
        out[name] = (front, rest)
    return out


def sample(found: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], n: int,
           rng: np.random.Generator) -> list[list[int]]:
    """Up to ``n`` distinct masks: fronts first, then the rest at random, strategies in turn."""
    from framework.history import pack_mask

    queues = []
    for front, rest in found.values():
        order = [rest[i] for i in rng.permutation(len(rest))]
        queues.append(list(front) + order)
    picked, seen = [], set()
    while len(picked) < n and any(queues):
        for q in queues:
            while q:
                m = q.pop(0)
                if pack_mask(m) not in seen:
                    seen.add(pack_mask(m))
                    picked.append(np.flatnonzero(~m).tolist())
                    break
            if len(picked) == n:
                break
    return picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recording", required=True, help="the preliminary .npz (objectives.replay_record)")
    ap.add_argument("--out", required=True, help="JSON list of pruned-head lists")
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--n", type=int, default=150, help="masks written")
    ap.add_argument("--seed", type=int, default=0, help="seeds the sample")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    found = collect(args.recording, args.strategies.split(","), args.seeds, args.budget, args.batch,
                    log=lambda s: print(s, file=sys.stderr, flush=True))
    picked = sample(found, args.n, np.random.default_rng(args.seed))
    Path(args.out).write_text(json.dumps(picked))
    print(f"wrote {args.out}: {len(picked)} masks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
