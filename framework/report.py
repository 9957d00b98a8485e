"""Run report: plots (matplotlib, imported here only) and ``report.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig
from framework.problem import HELDOUT, SEARCH, Problem
from framework.results import OptimizationResult
from framework.verdict import SIGNIFICANCE, roles, verdict_sentences

__all__ = ["plot_front", "plot_hv", "write_report", "verdict_sentences"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(path: Path, problem: Problem, result: OptimizationResult, chosen: dict | None = None, *,
               heldout: dict | None = None, front_infos: Sequence[dict] | None = None,
               max_cost: float | None = None) -> None:
    """Bias vs cost as relative change (%) against the unpruned model, each split against its own
    unpruned values: every search evaluation, the front (with paired-SE error bars from
    ``front_infos``, the front masks' search infos), the front re-evaluated on held-out data, the
    chosen mask (``chosen_mask.json`` dict) on every split, the unpruned model at (0, 0) and the
    cost limit.  Raw objective units for problems without a baseline."""
    plt = _plt()
    bias, cost = roles(problem)
    names = result.objective_names
    base = problem.baseline(SEARCH)
    fig, ax = plt.subplots(figsize=(6.8, 5.0))
    y = result.values[np.all(np.isfinite(result.values), axis=1)]
    f = result.front_values[np.argsort(result.front_values[:, cost])]
    if base is None:
        ax.scatter(y[:, cost], y[:, bias], s=10, c="0.7", label=f"all evaluations ({len(y)})")
        ax.step(f[:, cost], f[:, bias], where="post", c="C0", lw=1)
        ax.scatter(f[:, cost], f[:, bias], s=22, c="C0", label="front (search)")
        ax.set_xlabel(names[cost])
        ax.set_ylabel(names[bias])
    else:
        base = np.asarray(base, dtype=float)
        rel = lambda v, b: 100 * (np.asarray(v, dtype=float) / b - 1.0)  # noqa: E731
        ry, rf = rel(y, base), rel(f, base)
        ax.scatter(ry[:, cost], ry[:, bias], s=10, c="0.7", label=f"all evaluations, search ({len(y)})")
        ax.step(rf[:, cost], rf[:, bias], where="post", c="C0", lw=1)
        infos = list(front_infos) if front_infos is not None else [{} for _ in result.front_index]
        _errorbars(ax, rel(result.front_values, base), infos, names, bias, cost, fmt="o", ms=4.5, c="C0",
                   label="front, search")
        base_h = problem.baseline(HELDOUT) if heldout is not None else None
        if heldout is not None and base_h is not None:
            h = np.array([e["heldout"] for e in heldout["front"]], dtype=float)
            _errorbars(ax, rel(h, np.asarray(base_h, dtype=float)), [e.get("info") or {} for e in heldout["front"]],
                       names, bias, cost, fmt="x", ms=6, c="C2", label="front re-evaluated, held-out")
        if chosen is not None and chosen.get("index") is not None:
            for (split, entry), (marker, color) in zip(chosen["splits"].items(), _CHOSEN_STYLE, strict=False):
                x, xe = entry[names[cost]]["relative_change"], entry[names[cost]]["relative_change_se"]
                yv, ye = entry[names[bias]]["relative_change"], entry[names[bias]]["relative_change_se"]
                if x is None or yv is None:
                    continue
                ax.errorbar([100 * x], [100 * yv], xerr=None if xe is None else [100 * xe],
                            yerr=None if ye is None else [100 * ye], fmt=marker, ms=9, mfc="none", mec=color,
                            ecolor=color, mew=2, capsize=3, zorder=6, label=f"chosen, {split}")
        ax.scatter([0], [0], s=110, marker="*", c="k", label="unpruned (each split)", zorder=7)
        ax.axhline(0, c="0.5", lw=0.6)
        ax.axvline(0, c="0.5", lw=0.6)
        if max_cost is not None:
            ax.axvline(max_cost, c="C3", ls="--", lw=0.8, label=f"cost limit (+{max_cost:g}%)")
        ax.set_xlabel(f"{names[cost]}: change vs unpruned (%)")
        ax.set_ylabel(f"{names[bias]}: change vs unpruned (%)")
    title = f"{result.problem} / {result.strategy}: {result.n_evaluations} real evaluations"
    if chosen is not None:
        title += f"\nverdict: {chosen['verdict']['status']}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_CHOSEN_STYLE = [("o", "C3"), ("s", "C1"), ("D", "C2"), ("^", "C4"), ("v", "C5")]


def _errorbars(ax, rel: np.ndarray, infos: Sequence[dict], names: Sequence[str], bias: int, cost: int,
               **style) -> None:
    """Points ``rel`` (% change, ``float[k, m]``) with paired-SE bars where the infos carry ``<name>_rel_se``."""
    def se(name: str) -> np.ndarray:
        return np.array([100 * float(i.get(f"{name}_rel_se") or 0.0) for i in infos])

    c = style.pop("c")
    ax.errorbar(rel[:, cost], rel[:, bias], xerr=se(names[cost]), yerr=se(names[bias]), ls="none", color=c,
                elinewidth=0.8, capsize=2, zorder=4, **style)


def plot_hv(path: Path, result: OptimizationResult) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(np.arange(1, len(result.hv_curve) + 1), result.hv_curve, c="C0")  # one point per budget unit
    ax.set_xlabel("budget spent (real evaluations and sensitivity calls)")
    ax.set_ylabel("hypervolume (normalized objectives)")
    ax.set_title(f"{result.strategy} on {result.problem}, seed {result.seed}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if se is None else f"{x:.4g} ± {se:.2g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _change(ch: dict) -> str:
    """``+x.x% ± y.y%`` (the paired SE when known), ``*`` when significant."""
    se = ch.get("relative_change_se")
    return _pct(ch.get("relative_change")) + ("" if se is None else f" ± {100 * se:.1f}%") \
        + ("*" if ch.get("significant") else "")


def _cell(value: float, ch: dict | None) -> str:
    """``value (change ± paired SE)``."""
    if not ch or ch.get("relative_change") is None:
        return _fmt(value)
    return f"{_fmt(value)} ({_change(ch)})"


def _chosen_lines(chosen: dict, names: Sequence[str], exported: str | None) -> list[str]:
    """The "Chosen mask" section: the verdict in words, the rule, the figures of every split, the candidates."""
    v = chosen["verdict"]
    lines = ["## Chosen mask", "", f"**Verdict: {v['status']}.**", ""]
    lines += [" ".join(verdict_sentences(chosen, exported=exported)), "", f"Rule: {chosen['rule']}.", ""]
    if chosen["index"] is not None:
        lines += [f"{chosen['n_pruned']} heads pruned: {chosen['pruned_heads']}", "",
                  "| split | " + " | ".join(f"{n} (unpruned)" for n in names) + " | "
                  + " | ".join(f"{n} change ± paired SE" for n in names) + " |",
                  "|---|" + "---|" * (2 * len(names))]
        for split, entry in chosen["splits"].items():
            cells = [f"{_fmt(entry[n]['value'], entry[n]['se'])} "
                     f"({_fmt(entry[n]['unpruned'], entry[n]['unpruned_se'])})" for n in names]
            lines.append(f"| {split} | " + " | ".join(cells) + " | " + " | ".join(_change(entry[n]) for n in names)
                         + " |")
        lines += ["", "Figures are value ± bootstrap standard error where the metric reports one; a change is "
                  "relative to the unpruned model on the same split, ± the paired bootstrap standard error of "
                  f"that change (* beyond {SIGNIFICANCE:g} SE; n/a where the problem reports none).", ""]
    cands = chosen.get("candidates") or []
    if cands:
        bias, cost = v["bias"], v["cost"]
        b, c = names.index(bias), names.index(cost)
        pick, splits = chosen["pick_split"], chosen["cost_splits"]
        lines += ["Front masks under the rule:", "",
                  f"| # | pruned | {bias} change ({pick}) | " + " | ".join(f"{cost} change ({s})" for s in splits)
                  + " | qualified |", "|---|---|---|" + "---|" * (len(splits) + 1)]
        for e in cands:
            rel = e["relative_change"]
            cells = [_pct(rel[pick][b]) if pick in rel else "-"]
            cells += [_pct(rel[s][c]) if s in rel else "-" for s in splits]
            mark = "**chosen**" if e["index"] == chosen["index"] else ("yes" if e["qualified"] else
                                                                        "no: " + "; ".join(e["reasons"]))
            lines.append(f"| {e['index']} | {e['n_pruned']} | " + " | ".join(cells) + f" | {mark} |")
        lines.append("")
    return lines


def _other_lines(chosen: dict[str, Any]) -> list[str]:
    """Figures of the chosen mask that are no objective (``Problem.verification_figures``)."""
    rows = [(split, name, fig) for split, entry in chosen["splits"].items()
            for name, fig in (entry.get("other") or {}).items()]
    if not rows:
        return []
    out = ["Other figures of the chosen mask (not optimized; change paired against the unpruned model):", "",
           "| split | figure | value | unpruned | change |", "|---|---|---|---|---|"]
    for split, name, fig in rows:
        out.append(f"| {split} | {name} | {_fmt(fig.get('value'), fig.get('se'))} | {_fmt(fig.get('baseline'))} | "
                   f"{_fmt(fig.get('change'), fig.get('change_se'))} |")
    return [*out, ""]


def write_report(path: Path, problem: Problem, result: OptimizationResult, cfg: RunConfig,
                 figures: dict[str, Any]) -> None:
    names = result.objective_names
    res = figures["result"]
    lines = [f"# Head-pruning repair: {result.problem} with {result.strategy}", ""]
    lines += [f"- problem `{cfg.problem}` options `{cfg.problem_options or {}}`",
              f"- strategy `{cfg.strategy}` options `{result.strategy_options}`",
              f"- budget {result.budget} real evaluations, batch size {result.batch_size}, seed {result.seed}; "
              f"received {result.n_evaluations} ({result.n_cache_hits} from the store, paid by other runs, "
              + (f"{result.n_resumed} paid before the run was interrupted, " if result.n_resumed else "")
              + f"{res.get('n_failed', 0)} failed)"
              + (f" and {result.n_sensitivity_calls} head-sensitivity call(s), one budget unit each"
                 if result.n_sensitivity_calls else "") + f"; stop: {result.stop_reason}",
              f"- time: {result.wall_time:.1f} s in all, {result.evaluation_time:.1f} s evaluating, "
              f"{result.strategy_time:.1f} s in the strategy",
              f"- hypervolume (normalized, reference point {np.round(result.ref_point, 4).tolist()}): "
              f"{result.hypervolume:.4f}", ""]
    chosen = figures.get("chosen")
    if chosen is not None:
        lines += _chosen_lines(chosen, names, figures.get("exported"))
        lines += _other_lines(chosen)
    heldout = figures.get("heldout")
    if heldout is not None:
        lines += ["## Front: search vs held-out", "",
                  f"Hypervolume of the front: search {heldout['hypervolume_search']:.4f}, "
                  f"held-out {heldout['hypervolume_heldout']:.4f} (each split normalized by its own unpruned values: "
                  "the reference point and bounds scaled by held-out/search baseline).", "",
                  "Each cell: value (change vs the unpruned model on the same split ± paired standard error; "
                  f"* beyond {SIGNIFICANCE:g} SE).", "",
                  "| # | " + " | ".join(f"{n} {SEARCH}" for n in names) + " | "
                  + " | ".join(f"{n} {HELDOUT}" for n in names) + " | pruned |",
                  "|---|" + "---|" * (2 * len(names) + 1)]
        for e in heldout["front"]:
            cells = [_cell(v, (e.get(key) or {}).get(n)) for key, vals in (("search_change", e["search"]),
                                                                            ("heldout_change", e["heldout"]))
                     for n, v in zip(names, vals, strict=True)]
            lines.append(f"| {e['index']} | " + " | ".join(cells) + f" | {int((~result.masks[e['index']]).sum())} |")
        lines.append("")
    else:
        lines += ["## Front", "", "| # | " + " | ".join(names) + " | pruned |", "|---|" + "---|" * (len(names) + 1)]
        for i, v in zip(result.front_index, result.front_values, strict=True):
            lines.append(f"| {i} | " + " | ".join(_fmt(x) for x in v) + f" | {int((~result.masks[i]).sum())} |")
        lines.append("")
    diag = res.get("strategy_diagnostics") or {}
    if diag:
        lines += ["## Strategy diagnostics", ""]
        lines += _dict_lines(diag)
        lines.append("")
    lines += ["## Files", "", "`result.json`, `front.csv`, `all.csv`, `evaluations.sqlite`, `front.png`, `hv.png`"
              + (", `chosen_mask.json`" if chosen is not None else "")
              + (", `heldout.json`" if heldout is not None else "")
              + (", `model/`" if figures.get("exported") else "") + ".", ""]
    path.write_text("\n".join(lines))


def _dict_lines(d: dict, indent: int = 0) -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(" " * indent + f"- {k}:")
            out += _dict_lines(v, indent + 2)
        else:
            out.append(" " * indent + f"- {k}: {_fmt(v) if isinstance(v, float) else v}")
    return out
