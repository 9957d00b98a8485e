"""Record real evaluations of the embedded model for the ``replay`` problem.

    python -m objectives.replay_record --out objectives/data/replay_smollm2.npz \
        [--log rec.jsonl] [--proposed masks.json]

Masks, in phases (deterministic for ``--seed``), each tagged with its *kind* in the recording:

1. ``knockout``: every single-head knock-out;
2. ``random``: random masks pruning ``k`` heads, ``k`` log-uniform in [2, ``--max-pruned``];
3. ``neighbour``: neighbours (1-3 flips) of the lowest-bias masks so far under perplexity limits
   of +2/5/10/20%;
4. ``proposed`` (with ``--proposed``): masks that strategies proposed when they searched a
   preliminary replay (a JSON list of pruned-head lists, made by ``benchmarks.replay_proposals``),
   so the regressor is fitted, and its accuracy measured, where strategies actually search.

Each mask is evaluated with the ``masked-lm`` metrics (``--set`` changes them) on the search
and the held-out splits.  Every evaluation is appended to ``--log`` (JSON lines: split, pruned
heads, values) as soon as it is paid; a rerun with the same log serves what the log holds, so a
recording interrupted in one session (or on one machine) continues in another without paying
twice.  The ``.npz`` keeps the packed masks, their kinds, both splits' values, the unpruned
baselines and ``meta`` (how it was made).
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

KINDS = ("knockout", "random", "neighbour", "proposed")


def _random_masks(dim: int, n: int, max_pruned: int, rng: np.random.Generator) -> np.ndarray:
    ks = np.unique(np.round(np.exp(rng.uniform(np.log(2), np.log(max_pruned), n))).astype(int), return_counts=True)
    out = []
    for k, c in zip(*ks, strict=True):
        for _ in range(c):
            m = np.ones(dim, dtype=bool)
            m[rng.choice(dim, size=int(k), replace=False)] = False
            out.append(m)
    return np.array(out)[rng.permutation(n)]


def _neighbours(masks: np.ndarray, values: np.ndarray, base: np.ndarray, n: int, max_pruned: int,
                rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct new neighbours (1-3 flips, at most ``max_pruned`` heads pruned) of the
    lowest-bias masks under perplexity limits of +2%, +5%, +10%, +20%: never a mask of ``masks``
    nor the unpruned one."""
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
        if m.tobytes() not in seen and (~m).sum() <= max_pruned:
            seen.add(m.tobytes())
            out.append(m)
    return np.array(out, dtype=bool).reshape(-1, masks.shape[1])


class EvaluationLog:
    """Append-only JSON-lines log of paid evaluations: ``{"split", "pruned", "values"}`` per line.

    Small enough to keep between sessions (about 60 bytes an evaluation), read back on start."""

    def __init__(self, path: str | Path | None, dim: int) -> None:
        self.path = None if path is None else Path(path)
        self.dim = dim
        self.known: dict[tuple[str, bytes], np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    mask = np.ones(dim, dtype=bool)
                    mask[np.asarray(rec["pruned"], dtype=int)] = False
                    self.known[(rec["split"], mask.tobytes())] = np.asarray(rec["values"], dtype=float)
                except (ValueError, KeyError, IndexError) as exc:  # a line cut by a kill: the rest is good
                    print(f"{self.path}:{n}: skipped ({exc})", file=sys.stderr)

    def get(self, split: str, mask: np.ndarray) -> np.ndarray | None:
        return self.known.get((split, mask.tobytes()))

    def add(self, split: str, masks: np.ndarray, values: np.ndarray) -> None:
        lines = []
        for m, v in zip(masks, values, strict=True):
            self.known[(split, m.tobytes())] = np.asarray(v, dtype=float)
            lines.append(json.dumps({"split": split, "pruned": np.flatnonzero(~m).tolist(),
                                     "values": [float(x) for x in v]}))
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()


def read_proposed(path: str | Path, dim: int) -> np.ndarray:
    """Masks ``bool[n, dim]`` from a JSON list of pruned-head index lists."""
    rows = json.loads(Path(path).read_text())
    out = np.ones((len(rows), dim), dtype=bool)
    for i, pruned in enumerate(rows):
        out[i, np.asarray(pruned, dtype=int)] = False
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the .npz written")
    ap.add_argument("--log", default=None, help="JSON-lines log of paid evaluations (read back on start)")
    ap.add_argument("--store", default=None, help="also keep the evaluations in this evaluation store")
    ap.add_argument("--n-random", type=int, default=250)
    ap.add_argument("--n-neighbours", type=int, default=130)
    ap.add_argument("--max-pruned", type=int, default=27, help="largest pruned count of random masks")
    ap.add_argument("--proposed", default=None, help="JSON list of pruned-head lists: the 'proposed' phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--set", action="append", default=[], help="masked-lm option key=value")
    args = ap.parse_args(argv)
    from framework.config import parse_set
    from framework.registry import PROBLEMS
    from framework.store import EvaluationStore

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = parse_set(args.set)
    problem = PROBLEMS.create("masked-lm", **options)
    rng = np.random.default_rng(args.seed)
    space = problem.space
    log = EvaluationLog(args.log, space.dim)
    store = EvaluationStore(args.store) if args.store else None
    t0 = time.time()
    paid = 0

    def evaluate(masks: np.ndarray, split: str) -> np.ndarray:
        nonlocal paid
        out = np.array([log.get(split, m) if log.get(split, m) is not None else np.full(2, np.nan) for m in masks])
        todo = [i for i, m in enumerate(masks) if log.get(split, m) is None]
        if todo:
            values, infos = problem.evaluate_with_info(masks[todo], split)
            log.add(split, masks[todo], values)
            if store is not None:
                fp = problem.fingerprint(split)
                store.register_problem(fp, problem.name, {"split": split, **problem.describe()})
                store.put(fp, masks[todo], values, infos=infos, strategy="replay-record")
            out[todo] = values
            paid += len(todo)
        return out

    def run(masks: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
        s, h = [np.zeros((0, problem.n_objectives))], [np.zeros((0, problem.n_objectives))]
        for i in range(0, len(masks), args.batch):
            chunk = masks[i:i + args.batch]
            s.append(evaluate(chunk, SEARCH))
            h.append(evaluate(chunk, HELDOUT))
            print(f"{label}: {min(i + args.batch, len(masks))}/{len(masks)} ({paid} paid, {time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
        return np.vstack(s), np.vstack(h)

    knock = np.ones((space.dim, space.dim), dtype=bool)
    np.fill_diagonal(knock, False)
    rand = _random_masks(space.dim, args.n_random, args.max_pruned, rng)
    first = np.vstack([knock, rand])
    kinds = np.array([0] * len(knock) + [1] * len(rand), dtype=np.int8)
    s1, h1 = run(first, "knock-outs and random masks")
    # a random mask drawn twice is recorded once; neighbours make up the count
    distinct = np.sort(np.unique(first, axis=0, return_index=True)[1])
    n_dup = len(first) - len(distinct)
    first, kinds, s1, h1 = first[distinct], kinds[distinct], s1[distinct], h1[distinct]
    base = np.vstack([problem.baseline(SEARCH), problem.baseline(HELDOUT)])
    neigh = _neighbours(first, s1, base[0], args.n_neighbours + n_dup, args.max_pruned, rng)
    s2, h2 = run(neigh, "neighbours of good masks")
    masks, search, heldout = np.vstack([first, neigh]), np.vstack([s1, s2]), np.vstack([h1, h2])
    kinds = np.concatenate([kinds, np.full(len(neigh), 2, dtype=np.int8)])
    if args.proposed:
        prop = read_proposed(args.proposed, space.dim)
        seen = {m.tobytes() for m in masks}
        prop = np.array([m for m in np.unique(prop, axis=0) if m.tobytes() not in seen and not m.all()
                         and space.is_valid(m[None])[0]], dtype=bool).reshape(-1, space.dim)
        s3, h3 = run(prop, "masks proposed by strategies")
        masks, search, heldout = np.vstack([masks, prop]), np.vstack([search, s3]), np.vstack([heldout, h3])
        kinds = np.concatenate([kinds, np.full(len(prop), 3, dtype=np.int8)])
    packed = np.packbits(masks, axis=1)
    meta = {
        "n_layers": space.n_layers, "n_heads": space.n_heads, "n_kv_heads": space.n_kv_heads,
        "objective_names": list(problem.objective_names), "problem_options": options,
        "problem": problem.describe(), "kinds": list(KINDS),
        "n_per_kind": {k: int((kinds == i).sum()) for i, k in enumerate(KINDS)},
        "max_pruned": args.max_pruned, "seed": args.seed,
        "made_with": "python -m objectives.replay_record " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds_this_session": round(time.time() - t0, 1), "paid_this_session": paid,
        "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
        "sha256": hashlib.sha256(packed.tobytes() + search.tobytes() + heldout.tobytes()).hexdigest()[:16],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, masks_packed=packed, kinds=kinds, search=search, heldout=heldout, baseline=base,
                        meta=np.array(json.dumps(meta, default=str)))
    print(f"wrote {args.out}: {len(masks)} masks ({meta['n_per_kind']}), {paid} paid in "
          f"{meta['seconds_this_session']} s", file=sys.stderr)
    problem.close()
    if store is not None:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
