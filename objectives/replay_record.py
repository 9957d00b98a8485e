"""Record real evaluations of the embedded model for the ``replay`` problem.

    python -m objectives.replay_record --out objectives/data/replay_smollm2.npz [--store rec.sqlite]

Masks (deterministic for ``--seed``): every single-head knock-out, random masks pruning
``k`` heads with ``k`` log-uniform in [2, ``--max-pruned``], then neighbours (1-3 flips) of
the best masks found so far under several perplexity limits.  Each mask is evaluated with the
default ``masked-lm`` metrics on the search and the held-out splits, through an evaluation
store, so an interrupted recording resumes without paying twice.  The ``.npz`` keeps the
packed masks, both splits' values, the unpruned baselines and ``meta`` (how it was made).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from framework.problem import HELDOUT, SEARCH
from framework.registry import PROBLEMS
from framework.runs import evaluate_on_split
from framework.store import EvaluationStore


def _random_masks(space, n: int, max_pruned: int, rng: np.random.Generator) -> np.ndarray:
    ks = np.unique(np.round(np.exp(rng.uniform(np.log(2), np.log(max_pruned), n))).astype(int), return_counts=True)
    out = []
    for k, c in zip(*ks, strict=True):
        for _ in range(c):
            m = np.ones(space.dim, dtype=bool)
            m[rng.choice(space.dim, size=int(k), replace=False)] = False
            out.append(m)
    return np.array(out)[rng.permutation(n)]


def _neighbours(masks: np.ndarray, values: np.ndarray, base: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` distinct new neighbours (1-3 flips) of the lowest-bias masks under perplexity limits
    of +2%, +5%, +10%, +20%: never a mask of ``masks`` nor the unpruned one."""
    seeds = []
    for limit in (1.02, 1.05, 1.10, 1.20):
        ok = np.flatnonzero(values[:, 1] <= limit * base[1])
        seeds += list(ok[np.argsort(values[ok, 0])[:5]])
    seeds = np.unique(seeds)
    seen = {m.tobytes() for m in masks} | {np.ones(masks.shape[1], dtype=bool).tobytes()}
    out: list[np.ndarray] = []
    i = 0
    while len(out) < n:
        m = masks[seeds[i % len(seeds)]].copy()
        i += 1
        flips = rng.choice(m.size, size=int(rng.integers(1, 4)), replace=False)
        m[flips] = ~m[flips]
        if m.tobytes() not in seen:
            seen.add(m.tobytes())
            out.append(m)
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--store", default="replay-recording.sqlite")
    ap.add_argument("--n-random", type=int, default=530)
    ap.add_argument("--n-neighbours", type=int, default=200)
    ap.add_argument("--max-pruned", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], help="masked-lm option key=value")
    args = ap.parse_args(argv)
    from framework.config import parse_set

    options = parse_set(args.set)
    problem = PROBLEMS.create("masked-lm", **options)
    rng = np.random.default_rng(args.seed)
    space = problem.space
    t0 = time.time()
    with EvaluationStore(args.store) as store:
        def run(masks: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
            s, h = [], []
            for i in range(0, len(masks), args.batch):
                chunk = masks[i:i + args.batch]
                s.append(evaluate_on_split(problem, store, chunk, SEARCH)[0])
                h.append(evaluate_on_split(problem, store, chunk, HELDOUT)[0])
                print(f"{label}: {min(i + args.batch, len(masks))}/{len(masks)} ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
            return np.vstack(s), np.vstack(h)

        knock = np.ones((space.dim, space.dim), dtype=bool)
        np.fill_diagonal(knock, False)
        rand = _random_masks(space, args.n_random, args.max_pruned, rng)
        first = np.vstack([knock, rand])
        s1, h1 = run(first, "knock-outs and random masks")
        # a random mask drawn twice is recorded once; neighbours make up the count
        distinct = np.sort(np.unique(first, axis=0, return_index=True)[1])
        n_dup = len(first) - len(distinct)
        first, s1, h1 = first[distinct], s1[distinct], h1[distinct]
        base = np.vstack([problem.baseline(SEARCH), problem.baseline(HELDOUT)])
        neigh = _neighbours(first, s1, base[0], args.n_neighbours + n_dup, rng)
        s2, h2 = run(neigh, "neighbours of good masks")
    masks = np.vstack([first, neigh])
    search, heldout = np.vstack([s1, s2]), np.vstack([h1, h2])
    packed = np.packbits(masks, axis=1)
    meta = {
        "n_layers": space.n_layers, "n_heads": space.n_heads, "n_kv_heads": space.n_kv_heads,
        "objective_names": list(problem.objective_names), "problem_options": options,
        "problem": problem.describe(), "n_knockouts": int(len(knock)), "n_random": int(len(rand)) - n_dup,
        "n_neighbours": int(len(neigh)), "max_pruned": args.max_pruned, "seed": args.seed,
        "made_with": "python -m objectives.replay_record " + " ".join(argv or sys.argv[1:]),
        "seconds": round(time.time() - t0, 1), "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
        "sha256": hashlib.sha256(packed.tobytes() + search.tobytes() + heldout.tobytes()).hexdigest()[:16],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, masks_packed=packed, search=search, heldout=heldout, baseline=base,
                        meta=np.array(json.dumps(meta, default=str)))
    print(f"wrote {args.out}: {len(masks)} masks, {meta['seconds']} s", file=sys.stderr)
    problem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
