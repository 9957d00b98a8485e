"""``headrepair transfer``: does a bias objective's change on the search split carry over to held-out data?

A repair is only real if it holds on data the search never saw.  This command evaluates one
set of masks on two splits (default ``search`` and ``heldout``) with several metrics and
reports, per metric and variant, the Spearman correlation over masks of the relative change
against the unpruned model on each split, the paired standard errors of those changes and the
time per evaluation.  Masks: a seeded set of single-head knock-outs and low-ratio random masks
(``--masks N``), a JSON file of masks, or a run directory's front.

Every (mask, split, metric) measurement is appended to ``<out>.cache.jsonl`` as soon as it is
made, so an interrupted command continues where it stopped (same masks, same settings).
Registered as a sub-command through the ``headrepair.commands`` entry point.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import parse_set
from framework.space import HeadSpace, read_mask_file

__all__ = ["register", "transfer_masks", "run_transfer", "DEFAULT_METRICS"]

DEFAULT_METRICS = ("pronoun", "swap", "likelihood", "perplexity")


def register(sub) -> Any:
    from framework.cli_parser import DefaultsFormatter

    p = sub.add_parser("transfer", formatter_class=DefaultsFormatter,
                       help="check whether bias changes on the search split carry over to held-out data",
                       description="Evaluate a seeded set of masks (or a run's front) on two splits with several "
                                   "metrics; report per metric and variant the Spearman correlation of the relative "
                                   "changes between the splits, their paired standard errors and the time per "
                                   "evaluation, as JSON (--out) and a scatter plot beside it (.png). Resumable.")
    p.add_argument("--model", default="embedded:smollm2-135m", help="HF id, local directory or embedded:smollm2-135m")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated among pronoun, swap, pairs, likelihood, generation, perplexity")
    p.add_argument("--masks", default="40", help="N (seeded knock-outs and low-ratio random masks), a JSON file of "
                                                  "masks (a list of 0/1 lists), or a run directory (its front)")
    p.add_argument("--splits", default="search,heldout", help="the two splits to compare")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask set")
    p.add_argument("--max-ratio", type=float, default=0.03, help="largest pruned fraction of the random masks")
    p.add_argument("--out", required=True, help="JSON file to write (the plot goes beside it as .png)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="masked-lm problem option")
    p.add_argument("--device")
    p.add_argument("--dtype")
    return _handle


def transfer_masks(space: HeadSpace, n: int, *, seed: int = 0, max_ratio: float = 0.03) -> tuple[np.ndarray, list[str]]:
    """``(bool[n, d], kinds)``: about a third single-head knock-outs, the rest random masks pruning
    between 2 heads and ``max_ratio`` of them (capped by the space), all distinct, seeded."""
    if n < 3:
        raise ValueError(f"--masks needs at least 3 masks to correlate, got {n}")
    rng = np.random.default_rng([seed, 31])
    d = space.dim
    allowed = np.setdiff1d(np.arange(d), np.asarray(sorted(space.protected), dtype=int))
    hi = max(2, min(int(round(max_ratio * d)), space.max_pruned))
    masks, kinds, seen = [], [], set()
    n_knock = n // 3
    for h in rng.permutation(allowed)[:n_knock]:
        m = np.ones(d, dtype=bool)
        m[h] = False
        masks.append(m)
        kinds.append("knockout")
        seen.add(m.tobytes())
    while len(masks) < n:
        k = int(rng.integers(2, hi + 1))
        m = np.ones(d, dtype=bool)
        m[rng.choice(allowed, size=min(k, allowed.size), replace=False)] = False
        if m.tobytes() not in seen:
            seen.add(m.tobytes())
            masks.append(m)
            kinds.append("random")
    return np.stack(masks), kinds


def _load_masks(spec: str, space: HeadSpace, seed: int, max_ratio: float) -> tuple[np.ndarray, list[str]]:
    path = Path(spec)
    if spec.isdigit():
        return transfer_masks(space, int(spec), seed=seed, max_ratio=max_ratio)
    if path.is_dir():
        result = path / "result.json"
        if not result.is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no result.json)")
        front = [np.asarray(e["mask"], dtype=bool) for e in json.loads(result.read_text())["front"]]
        masks = [m for m in front if not m.all()]
        return np.stack(masks), ["front"] * len(masks)
    if path.is_file():
        raw = json.loads(path.read_text())
        if isinstance(raw, list) and raw and isinstance(raw[0], list) and isinstance(raw[0][0], list | int | bool):
            tmp = [np.asarray(r, dtype=int).reshape(-1) for r in raw]
            bad = [i for i, r in enumerate(tmp) if r.size != space.dim or not np.isin(r, (0, 1)).all()]
            if bad:
                raise ValueError(f"{path}: mask {bad[0]} is not {space.dim} values of 0/1")
            return np.stack([r.astype(bool) for r in tmp]), ["file"] * len(tmp)
        return read_mask_file(str(path), space)[None], ["file"]
    raise FileNotFoundError(f"--masks {spec!r} is neither a number, a JSON file nor a run directory")


def _entries(problem, mask: np.ndarray, split: str, metric: str) -> dict[str, Any]:
    """One metric's figures of one mask on one split: ``{"rel", "rel_se", "variants": {name: value}}``."""
    rep = problem.report(mask[None], [split], metrics=[metric])["splits"][split]["masks"][0]
    if metric == "perplexity":
        fig = rep["perplexity"]
        return {"value": fig["value"], "rel": fig["rel"], "rel_se": fig["rel_se"],
                "variants": {"perplexity": fig["value"]}, "variant_rel_se": {"perplexity": fig["rel_se"]}}
    fig = rep["counterfactual"][metric] if "counterfactual" in rep else rep["axes"][problem.axis][metric]
    return {"value": fig["value"], "rel": fig["rel"], "rel_se": fig["rel_se"], "variants": dict(fig["variants"]),
            "variant_rel_se": dict(fig.get("variant_rel_se") or {})}


def run_transfer(problem, masks: np.ndarray, kinds: list[str], metrics: list[str], splits: tuple[str, str],
                 cache_path: Path, *, log=print) -> dict[str, Any]:
    """Measure (resuming from ``cache_path``) and summarize; see the module docstring."""
    from scipy.stats import spearmanr

    # the objective's aggregate only picks which variant is the objective: every variant is recorded
    settings = {k: v for k, v in problem.describe().items() if k != "aggregate"}
    fp = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    done: dict[tuple[str, str, str], dict] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if rec.get("fingerprint") == fp:
                done[(rec["mask"], rec["split"], rec["metric"])] = rec
    keep = problem.space.keep_all()[0]
    all_masks = np.vstack([keep[None], masks])          # the unpruned model's variants are the reference
    keys = [np.packbits(m).tobytes().hex() for m in all_masks]
    todo = [(i, s, m) for m in metrics for s in splits for i in range(len(all_masks)) if (keys[i], s, m) not in done]
    if done:
        log(f"resuming: {len(done)} measurements found in {cache_path}, {len(todo)} to go")
    with open(cache_path, "a") as fh:
        for n, (i, split, metric) in enumerate(todo):
            t0 = time.perf_counter()
            fig = _entries(problem, all_masks[i], split, metric)
            rec = {"fingerprint": fp, "mask": keys[i], "split": split, "metric": metric, "seconds": time.perf_counter()
                   - t0, **fig}
            fh.write(json.dumps(rec, default=float) + "\n")
            fh.flush()
            done[(keys[i], split, metric)] = rec
            if (n + 1) % 10 == 0 or n + 1 == len(todo):
                log(f"  {n + 1}/{len(todo)} measurements ({metric} on {split}, {rec['seconds']:.1f} s)")
    out: dict[str, Any] = {"splits": list(splits), "n_masks": int(len(masks)),
                           "masks": [{"kind": k, "pruned": np.flatnonzero(~m).tolist()} for m, k in zip(masks, kinds,
                                                                                                      strict=True)],
                           "metrics": {}}
    for metric in metrics:
        base = {s: done[(keys[0], s, metric)] for s in splits}
        recs = {s: [done[(k, s, metric)] for k in keys[1:]] for s in splits}
        entry: dict[str, Any] = {
            "seconds_per_evaluation": {s: float(np.median([r["seconds"] for r in recs[s]])) for s in splits},
            "baseline": {s: base[s]["value"] for s in splits},
            "median_rel_se": {s: float(np.nanmedian([r["rel_se"] for r in recs[s]])) for s in splits},
            "variants": {}}
        for name in base[splits[0]]["variants"]:
            rel = {s: np.array([r["variants"][name] / base[s]["variants"][name] - 1.0 if base[s]["variants"][name]
                                else np.nan for r in recs[s]]) for s in splits}
            ok = np.isfinite(rel[splits[0]]) & np.isfinite(rel[splits[1]])
            rho, p = spearmanr(rel[splits[0]][ok], rel[splits[1]][ok]) if ok.sum() >= 3 else (np.nan, np.nan)
            se = {s: [r.get("variant_rel_se", {}).get(name) for r in recs[s]] for s in splits}
            entry["variants"][name] = {
                "spearman": float(rho), "p": float(p), "n": int(ok.sum()),
                "median_abs_rel": {s: float(np.nanmedian(np.abs(rel[s]))) for s in splits},
                "median_rel_se": {s: (float(np.nanmedian(np.asarray(se[s], dtype=float)))
                                      if all(x is not None for x in se[s]) else None) for s in splits},
                "rel": {s: rel[s].tolist() for s in splits}}
        fig_rel = {s: [r["rel"] for r in recs[s]] for s in splits}
        ok = np.isfinite(fig_rel[splits[0]]) & np.isfinite(fig_rel[splits[1]])
        rho = spearmanr(np.asarray(fig_rel[splits[0]])[ok], np.asarray(fig_rel[splits[1]])[ok])[0]
        entry["objective"] = {"spearman": float(rho), "rel": fig_rel, "rel_se": {s: [r["rel_se"] for r in recs[s]]
                                                                               for s in splits}}
        out["metrics"][metric] = entry
    return out


def plot_transfer(path: Path, summary: dict[str, Any]) -> None:
    """One panel per metric: relative change on the first split vs the second, paired-SE bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(summary["metrics"])
    a, b = summary["splits"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.0), squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        obj = summary["metrics"][name]["objective"]
        x, y = 100 * np.asarray(obj["rel"][a]), 100 * np.asarray(obj["rel"][b])
        ax.errorbar(x, y, xerr=100 * np.asarray(obj["rel_se"][a], dtype=float),
                    yerr=100 * np.asarray(obj["rel_se"][b], dtype=float), fmt="o", ms=3, alpha=0.7, elinewidth=0.6)
        lim = np.nanmax(np.abs(np.concatenate([x, y, [1.0]])))
        ax.plot([-lim, lim], [-lim, lim], c="0.6", lw=0.8, ls="--")
        ax.axhline(0, c="0.85", lw=0.6)
        ax.axvline(0, c="0.85", lw=0.6)
        ax.set_title(f"{name}: Spearman {obj['spearman']:+.2f}")
        ax.set_xlabel(f"change on {a} (%)")
        ax.set_ylabel(f"change on {b} (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _handle(args) -> int:
    from framework.registry import PROBLEMS

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    splits = tuple(s.strip() for s in args.splits.split(","))
    if len(splits) != 2:
        raise ValueError(f"--splits needs two splits, got {args.splits!r}")
    out = Path(args.out)
    opts = {"model": args.model, **parse_set(args.set),
            **{k: v for k, v in {"device": args.device, "dtype": args.dtype}.items() if v is not None}}
    problem = PROBLEMS.create("masked-lm", **opts)
    try:
        for s in splits:
            if s not in problem.splits:
                raise ValueError(f"unknown split {s!r}; the problem has {list(problem.splits)}")
        masks, kinds = _load_masks(args.masks, problem.space, args.seed, args.max_ratio)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = run_transfer(problem, masks, kinds, metrics, splits, out.with_suffix(".cache.jsonl"))
        summary["settings"] = problem.describe()
    finally:
        problem.close()
    out.write_text(json.dumps(summary, indent=2, default=float))
    plot_transfer(out.with_suffix(".png"), summary)
    for name, entry in summary["metrics"].items():
        sec = entry["seconds_per_evaluation"]
        print(f"{name:<11} Spearman {entry['objective']['spearman']:+.2f} over {summary['n_masks']} masks; median "
              f"paired SE of the change {100 * entry['median_rel_se'][splits[0]]:.1f}% / "
              f"{100 * entry['median_rel_se'][splits[1]]:.1f}%; {sec[splits[0]]:.1f} s per evaluation")
        for v, fig in entry["variants"].items():
            se = fig["median_rel_se"]
            se_text = ("" if se[splits[0]] is None else
                       f"; median paired SE {100 * se[splits[0]]:.1f}% / {100 * se[splits[1]]:.1f}%")
            print(f"    {v:<34} Spearman {fig['spearman']:+.2f}{se_text}")
    print(f"written: {out} and {out.with_suffix('.png')}")
    return 0
