"""``headrepair attribute``: every head's estimated effect on each objective, from one backward pass.

Writes the head sensitivities of a mask (default: the unpruned model) on one split as JSON
(``delta[objective][layer][head]``: the estimated change when that head alone is flipped, raw
units and relative to the unpruned model, with standard errors) and a heat map of layers x
heads per objective beside it (``.png``).

``--compare N`` checks the estimates against the real thing: it evaluates ``N`` single-head
flips (seeded, drawn among the unprotected heads) for real on each ``--compare-splits`` split
and reports the Spearman and Pearson correlations of estimated vs real changes per objective
and split.  Evaluations and sensitivities go to an evaluation store beside the output
(``<out>.store.sqlite``), so an interrupted command pays nothing twice.  Registered through the
``headrepair.commands`` entry point.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import parse_set
from framework.space import read_mask_file

__all__ = ["register", "attribute", "compare_knockouts", "plot_heatmap"]


def register(sub) -> Any:
    from framework.cli_parser import DefaultsFormatter

    p = sub.add_parser("attribute", formatter_class=DefaultsFormatter,
                       help="estimate every head's effect on each objective (one backward pass)",
                       description="Head sensitivities of a mask: the first-order change of bias and perplexity "
                                   "when each head alone is flipped, from gradients in continuous head gates (one "
                                   "forward and backward pass), with bootstrap standard errors. Writes JSON (--out) "
                                   "and a layers x heads heat map beside it (.png). --compare N also evaluates N "
                                   "single-head flips for real and reports how well the estimates rank them.")
    p.add_argument("--model", default="embedded:smollm2-135m", help="HF id, local directory or embedded:smollm2-135m")
    p.add_argument("--mask", help="mask JSON file (default: the unpruned model)")
    p.add_argument("--split", default="search", help="split the sensitivities are measured on")
    p.add_argument("--out", required=True, help="JSON file to write (the heat map goes beside it as .png)")
    p.add_argument("--compare", type=int, default=0, metavar="N",
                   help="also evaluate N seeded single-head flips for real and correlate them with the estimates")
    p.add_argument("--compare-splits", default="search,heldout", help="splits of the --compare check")
    p.add_argument("--seed", type=int, default=0, help="seed of the heads drawn by --compare")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="masked-lm problem option")
    p.add_argument("--device")
    p.add_argument("--dtype")
    return _handle


def _cached_sensitivities(problem, store, mask: np.ndarray, split: str):
    fp = problem.fingerprint(split)
    sens = store.get_sensitivities(fp, mask)
    if sens is None:
        t0 = time.perf_counter()
        sens = problem.sensitivities(mask, split)
        store.put_sensitivities(fp, sens, wall_time=time.perf_counter() - t0, strategy="attribute")
    return sens


def _cached_evaluations(problem, store, masks: np.ndarray, split: str, log=print) -> tuple[np.ndarray, float]:
    """Objective values of ``masks`` on ``split`` (store first) and the median seconds per new one."""
    fp = problem.fingerprint(split)
    store.register_problem(fp, problem.name, problem.describe())
    out = np.full((len(masks), problem.n_objectives), np.nan)
    secs = []
    for i, m in enumerate(masks):
        got = store.get(fp, m[None])[0]
        if got is None:
            t0 = time.perf_counter()
            vals, infos = problem.evaluate_with_info(m[None], split)
            secs.append(time.perf_counter() - t0)
            store.put(fp, m[None], vals, infos=infos, wall_times=[secs[-1]], strategy="attribute")
            out[i] = vals[0]
            if (i + 1) % 10 == 0:
                log(f"  {i + 1}/{len(masks)} evaluations on {split} ({secs[-1]:.1f} s each)")
        else:
            out[i] = got.objectives
    return out, float(np.median(secs)) if secs else float("nan")


def attribute(problem, mask: np.ndarray, split: str, store) -> dict[str, Any]:
    """JSON-able sensitivities of ``mask`` on ``split`` (see the module docstring)."""
    sens = _cached_sensitivities(problem, store, mask, split)
    base = problem.baseline(split)
    L, H = problem.space.n_layers, problem.space.n_heads
    out: dict[str, Any] = {"split": split, "mask": [int(b) for b in mask], "n_pruned": int((~mask).sum()),
                           "layers": L, "heads": H, "values": dict(zip(problem.objective_names,
                                                                       map(float, sens.values), strict=True)),
                           "baseline": dict(zip(problem.objective_names, map(float, base), strict=True)),
                           "seconds": sens.info.get("seconds"), "objectives": {}}
    for j, name in enumerate(problem.objective_names):
        d, se = sens.delta[j], sens.se[j]
        order = np.argsort(d)
        out["objectives"][name] = {
            "delta": d.reshape(L, H).tolist(), "se": se.reshape(L, H).tolist(),
            "rel": (d / base[j]).reshape(L, H).tolist(), "rel_se": (se / base[j]).reshape(L, H).tolist(),
            "most_lowering": [{"head": int(h), "layer": int(h // H), "index": int(h % H), "delta": float(d[h]),
                               "se": float(se[h])} for h in order[:10]],
            "n_lowering_2se": int(np.sum(d < -2 * se))}
    return out


def compare_knockouts(problem, mask: np.ndarray, n: int, splits: list[str], store, *, seed: int = 0,
                      log=print) -> dict[str, Any]:
    """Estimated vs real changes of ``n`` seeded single-head flips of ``mask``, per split and objective."""
    from scipy.stats import pearsonr, spearmanr

    allowed = np.setdiff1d(np.arange(problem.space.dim), np.asarray(sorted(problem.space.protected), dtype=int))
    if n < 3 or n > allowed.size:
        raise ValueError(f"--compare needs 3 to {allowed.size} heads, got {n}")
    heads = np.sort(np.random.default_rng([seed, 41]).choice(allowed, size=n, replace=False))
    flips = np.repeat(mask[None], n, axis=0)
    flips[np.arange(n), heads] = ~flips[np.arange(n), heads]
    out: dict[str, Any] = {"heads": heads.tolist(), "splits": {}}
    for split in splits:
        t0 = time.perf_counter()
        sens = _cached_sensitivities(problem, store, mask, split)
        t_sens = sens.info.get("seconds", time.perf_counter() - t0)
        log(f"sensitivities on {split}: {t_sens:.1f} s; evaluating {n} single-head flips")
        ref, _ = _cached_evaluations(problem, store, mask[None], split, log)
        vals, t_eval = _cached_evaluations(problem, store, flips, split, log)
        real = vals[:n] - ref[0]
        entry: dict[str, Any] = {"seconds_sensitivities": t_sens, "seconds_per_evaluation": t_eval,
                                 "time_ratio": t_sens / t_eval if np.isfinite(t_eval) and t_eval > 0 else None,
                                 "objectives": {}}
        for j, name in enumerate(problem.objective_names):
            est, got = sens.delta[j, heads], real[:, j]
            ok = np.isfinite(est) & np.isfinite(got)
            entry["objectives"][name] = {
                "spearman": float(spearmanr(est[ok], got[ok])[0]), "pearson": float(pearsonr(est[ok], got[ok])[0]),
                "sign_agreement": float(np.mean(np.sign(est[ok]) == np.sign(got[ok]))),
                "estimated": est.tolist(), "real": got.tolist(), "se": sens.se[j, heads].tolist()}
        out["splits"][split] = entry
    return out


def plot_heatmap(path: Path, summary: dict[str, Any]) -> None:
    """One panel per objective: relative estimated change (%) of flipping each head, layers x heads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["objectives"])
    L, H = summary["layers"], summary["heads"]
    fig, axes = plt.subplots(1, len(names), figsize=(1.6 + 0.45 * H * len(names), 1.2 + 0.22 * L), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rel = 100 * np.asarray(summary["objectives"][name]["rel"], dtype=float)
        lim = float(np.nanmax(np.abs(rel))) or 1.0
        im = ax.imshow(rel, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_title(f"{name}: change if flipped (%)", fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"head sensitivities on {summary['split']} ({summary['n_pruned']} heads pruned)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _handle(args) -> int:
    from framework.registry import PROBLEMS
    from framework.store import EvaluationStore

    out = Path(args.out)
    opts = {"model": args.model, **parse_set(args.set),
            **{k: v for k, v in {"device": args.device, "dtype": args.dtype}.items() if v is not None}}
    problem = PROBLEMS.create("masked-lm", **opts)
    try:
        if not problem.has_sensitivities:
            raise SystemExit(f"bias_metric={problem.bias_metric!r} has no head sensitivities (it scores generated "
                             f"text); use a likelihood-based metric (pronoun, swap, pairs, likelihood)")
        if args.split not in problem.splits:
            raise SystemExit(f"unknown split {args.split!r}; the problem has {list(problem.splits)}")
        mask = read_mask_file(args.mask, problem.space) if args.mask else np.ones(problem.space.dim, dtype=bool)
        out.parent.mkdir(parents=True, exist_ok=True)
        with EvaluationStore(out.with_suffix(".store.sqlite")) as store:
            summary = attribute(problem, mask, args.split, store)
            if args.compare:
                splits = [s.strip() for s in args.compare_splits.split(",") if s.strip()]
                for s in splits:
                    if s not in problem.splits:
                        raise SystemExit(f"unknown split {s!r} in --compare-splits; the problem has "
                                         f"{list(problem.splits)}")
                summary["compare"] = compare_knockouts(problem, mask, args.compare, splits, store, seed=args.seed)
        summary["settings"] = problem.describe()
    finally:
        problem.close()
    out.write_text(json.dumps(summary, indent=2, default=float))
    plot_heatmap(out.with_suffix(".png"), summary)
    print(f"head sensitivities on {args.split} ({summary['seconds']:.1f} s):")
    for name, entry in summary["objectives"].items():
        top = ", ".join(f"L{e['layer']}H{e['index']} {e['delta']:+.3g}" for e in entry["most_lowering"][:5])
        print(f"  {name:<11} {entry['n_lowering_2se']} heads lower it by more than 2 SE; most: {top}")
    for split, entry in summary.get("compare", {}).get("splits", {}).items():
        ratio = entry["time_ratio"]
        print(f"  {split}: one sensitivity call = {ratio:.2f} evaluations of time" if ratio else f"  {split}:")
        for name, fig in entry["objectives"].items():
            print(f"    {name:<11} estimated vs real flips: Spearman {fig['spearman']:+.2f}, Pearson "
                  f"{fig['pearson']:+.2f}, same sign {100 * fig['sign_agreement']:.0f}%")
    print(f"written: {out} and {out.with_suffix('.png')}")
    return 0
