"""Run report: plots (matplotlib, imported here only) and ``report.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RunConfig
from framework.loop import OptimizationResult
from framework.problem import HELDOUT, SEARCH, Problem

__all__ = ["plot_front", "plot_hv", "write_report"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_front(path: Path, names: tuple[str, ...], result: OptimizationResult, choice, *,
               baseline: np.ndarray | None, heldout: dict | None,
               baseline_heldout: np.ndarray | None = None) -> None:
    """Objective 0 vs objective 1: every evaluation, the front, the unpruned model, the chosen mask."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    y = result.values[np.all(np.isfinite(result.values), axis=1)]
    ax.scatter(y[:, 1], y[:, 0], s=10, c="0.7", label=f"all evaluations ({len(y)})")
    f = result.front_values[np.argsort(result.front_values[:, 1])]
    ax.step(f[:, 1], f[:, 0], where="post", c="C0", lw=1)
    ax.scatter(f[:, 1], f[:, 0], s=22, c="C0", label="front (search)")
    if heldout is not None:
        h = np.array([e["heldout"] for e in heldout["front"]])
        ax.scatter(h[:, 1], h[:, 0], s=22, marker="x", c="C2", label="front re-evaluated on held-out data")
        if baseline_heldout is not None:
            ax.scatter([baseline_heldout[1]], [baseline_heldout[0]], s=80, marker="*", c="C2", edgecolors="k",
                       label="unpruned, held-out data", zorder=5)
    if baseline is not None:
        ax.scatter([baseline[1]], [baseline[0]], s=80, marker="*", c="k", label="unpruned, search data", zorder=5)
    if choice is not None and choice.index is not None:
        v = result.values[choice.index]
        ax.scatter([v[1]], [v[0]], s=90, facecolors="none", edgecolors="C3", lw=2, label="chosen", zorder=6)
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    ax.set_title(f"{result.problem} / {result.strategy}: {result.n_evaluations} real evaluations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_hv(path: Path, result: OptimizationResult) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(np.arange(1, len(result.hv_curve) + 1), result.hv_curve, c="C0")
    ax.set_xlabel("real evaluations")
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


def write_report(path: Path, problem: Problem, result: OptimizationResult, cfg: RunConfig,
                 figures: dict[str, Any]) -> None:
    names = result.objective_names
    res = figures["result"]
    lines = [f"# Head-pruning repair: {result.problem} with {result.strategy}", ""]
    lines += [f"- problem `{cfg.problem}` options `{cfg.problem_options or {}}`",
              f"- strategy `{cfg.strategy}` options `{result.strategy_options}`",
              f"- budget {result.budget} real evaluations, batch size {result.batch_size}, seed {result.seed}; "
              f"received {result.n_evaluations} ({result.n_cache_hits} from the store, "
              f"{res.get('n_failed', 0)} failed); stop: {result.stop_reason}",
              f"- time: {result.wall_time:.1f} s in all, {result.evaluation_time:.1f} s evaluating, "
              f"{result.strategy_time:.1f} s in the strategy",
              f"- hypervolume (normalized, reference point {np.round(result.ref_point, 4).tolist()}): "
              f"{result.hypervolume:.4f}", ""]
    chosen = figures.get("chosen")
    if chosen is not None:
        lines += ["## Chosen mask", "", f"Rule: {chosen['rule']}.", ""]
        if chosen["note"]:
            lines += [f"**{chosen['note']}**", ""]
        lines += [f"{chosen['n_pruned']} heads pruned: {chosen['pruned_heads']}", "",
                  "| split | " + " | ".join(f"{n} (unpruned)" for n in names) + " | "
                  + " | ".join(f"{n} change" for n in names) + " |",
                  "|---|" + "---|" * (2 * len(names))]
        for split, entry in chosen["splits"].items():
            cells = [f"{_fmt(entry[n]['value'], entry[n]['se'])} "
                     f"({_fmt(entry[n]['unpruned'], entry[n]['unpruned_se'])})" for n in names]
            lines.append(f"| {split} | " + " | ".join(cells) + " | "
                         + " | ".join(_pct(entry[n]["relative_change"]) for n in names) + " |")
        lines.append("")
        lines.append("Figures are value ± bootstrap standard error where the metric reports one. "
                     f"The search split steered the search; {HELDOUT} was never seen by it.")
        lines.append("")
        if chosen["warning"]:
            lines += [f"**Warning: {chosen['warning']}.**", ""]
        elif HELDOUT in chosen["splits"]:
            lines += ["The held-out reduction is at least half the search reduction.", ""]
        if figures.get("exported"):
            lines += [f"Exported model: `{figures['exported']}` "
                      "(loads with `AutoModelForCausalLM.from_pretrained`).", ""]
    heldout = figures.get("heldout")
    if heldout is not None:
        lines += ["## Front: search vs held-out", "",
                  f"Hypervolume of the front: search {heldout['hypervolume_search']:.4f}, "
                  f"held-out {heldout['hypervolume_heldout']:.4f} (each split normalized by its own unpruned values: "
                  "the reference point and bounds scaled by held-out/search baseline).", "",
                  "| # | " + " | ".join(f"{n} {SEARCH}" for n in names) + " | "
                  + " | ".join(f"{n} {HELDOUT}" for n in names) + " | pruned |",
                  "|---|" + "---|" * (2 * len(names) + 1)]
        for e in heldout["front"]:
            lines.append(f"| {e['index']} | " + " | ".join(_fmt(v) for v in e["search"]) + " | "
                         + " | ".join(_fmt(v) for v in e["heldout"]) + f" | {int((~result.masks[e['index']]).sum())} |")
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
              + (", `heldout.json`" if heldout is not None else "") + ".", ""]
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
