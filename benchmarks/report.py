"""Benchmark report: per-problem tables (median, IQR), significance and A12 against the
reference strategy (the default strategy), a ranking across problems, and plots.

A strategy whose seeds all gave the same run (same anytime curve, same front: a deterministic
strategy such as ``fasp``) counts as one sample in every test (:func:`benchmarks.stats.compare`);
a strategy run with a single seed gets no p-value (:func:`benchmarks.records.compare_rows`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.goal import goal_lines
from benchmarks.records import REFERENCE_STRATEGY, compare_rows, cost, fmt, group, seeds_label, values
from benchmarks.stats import average_ranks, median_iqr

__all__ = ["write_bench_report"]


def write_bench_report(out: Path, records: list[dict[str, Any]], *, suite_name: str = "") -> Path:
    """Write ``report.md`` and PNG plots into ``out``; returns the report path."""
    out = Path(out)
    skipped = [r for r in records if r.get("skipped")]
    records = [r for r in records if not r.get("skipped")]
    groups = group(records)
    lines = [f"# Benchmark report{': ' + suite_name if suite_name else ''}", "",
             f"{len(records)} cells. Hypervolume of normalized objectives against each problem's own reference "
             "point (higher is better); every strategy of a problem ran with the same budgets, seeds, reference "
             f"point and bounds; normalized objectives are clipped at the ideal bound (area better than the "
             "bounds, e.g. a perplexity below the unpruned model's, adds nothing). p: two-sided Mann-Whitney U "
             f"of final hypervolume, `{REFERENCE_STRATEGY}` (the default strategy) vs the row; a strategy whose "
             "seeds all gave the same run (deterministic: seeds shown as 'one run') is one sample, tested with "
             "a two-sided sign test of the other side's runs against it; two single runs, and a strategy run with "
             "a single seed (one seed cannot tell a deterministic strategy from one draw of a random one), get "
             "no p-value and count as not significant. "
             f"A12: probability that `{REFERENCE_STRATEGY}` beats the row (0.5 = no difference). "
             "Held-out: the final front re-evaluated on the held-out split (problems that have one). "
             "strategy s: the strategy's own time per run; cost s: that plus what the run's evaluations cost "
             "when they were paid (cells share a store, so this does not depend on which cell paid first).", ""]
    scores: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for (prob, budget), by_strategy in sorted(groups.items()):
        has_igd = any(r.get("igd_plus") is not None for rows in by_strategy.values() for r in rows)
        has_ho = any(r.get("hv_front_heldout") is not None for rows in by_strategy.values() for r in rows)
        lines += [f"## {prob}, budget {budget}", ""]
        head = "| strategy | seeds | HV median [IQR] | HV@25% | HV@50% |"
        sep = "|---|---|---|---|---|"
        if has_ho:
            head += " front HV search | front HV held-out |"
            sep += "---|---|"
        if has_igd:
            head += " IGD+ median |"
            sep += "---|"
        head += " p | A12 | strategy s | cost s |"
        sep += "---|---|---|---|"
        lines += [head, sep]
        ref_rows = by_strategy.get(REFERENCE_STRATEGY, [])
        for strategy, rows in sorted(by_strategy.items(), key=lambda kv: -median_iqr(values(kv[1], "hv_final"))[0]):
            hv = values(rows, "hv_final")
            med, q25, q75 = median_iqr(hv)
            scores[strategy][(prob, budget)] = med
            row = (f"| {strategy} | {seeds_label(rows)} | {fmt(med)} [{fmt(q25)}, {fmt(q75)}] | "
                   f"{fmt(median_iqr(values(rows, 'hv_25'))[0])} | {fmt(median_iqr(values(rows, 'hv_50'))[0])} |")
            if has_ho:
                row += (f" {fmt(median_iqr(values(rows, 'hv_front_search'))[0])} |"
                        f" {fmt(median_iqr(values(rows, 'hv_front_heldout'))[0])} |")
            if has_igd:
                row += f" {fmt(median_iqr(values(rows, 'igd_plus'))[0])} |"
            if strategy == REFERENCE_STRATEGY or not ref_rows:
                row += " – | – |"
            else:
                pval, a = compare_rows(ref_rows, rows, "hv_final")
                row += f" {fmt(pval, 3) if np.isnan(pval) else f'{pval:.3g}'} | {a:.2f} |"
            row += (f" {fmt(median_iqr(values(rows, 'strategy_time_s'))[0], 2)} |"
                    f" {fmt(median_iqr(cost(rows))[0], 2)} |")
            lines.append(row)
        lines.append("")
    lines += _stand_in_accuracy(out)
    lines += _summary(groups)
    lines += goal_lines(groups)
    keys = sorted({k for s in scores.values() for k in s})
    complete = {s: [v[k] for k in keys] for s, v in scores.items() if all(k in v for k in keys)}
    if complete and keys:
        ranks = average_ranks(complete)
        lines += ["## Ranking across problems", "",
                  f"Mean rank of median final hypervolume over {len(keys)} (problem, budget) pairs (1 = best).", "",
                  "| strategy | mean rank |", "|---|---|"]
        lines += [f"| {s} | {r:.2f} |" for s, r in sorted(ranks.items(), key=lambda kv: kv[1])]
        missing = sorted(set(scores) - set(complete))
        if missing:
            lines += ["", "Not ranked (no result at some of those pairs, so a rank would not be comparable): "
                      + ", ".join(f"`{s}`" for s in missing) + "."]
        lines.append("")
    lines += _per_budget(scores)
    if skipped:
        lines += ["## Not applicable", "",
                  "Cells a strategy cannot run at that budget (not scored, not in the ranking):", ""]
        seen: dict[tuple, list[int]] = defaultdict(list)
        for r in skipped:
            seen[(r["problem"], int(r["budget"]), r["strategy"], r["skipped"])].append(int(r["seed"]))
        lines += [f"- {p}, budget {b}, `{s}` ({len(seeds)} seeds): {why}"
                  for (p, b, s, why), seeds in sorted(seen.items())]
        lines.append("")
    plots = _plots(out, groups)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _stand_in_accuracy(out: Path) -> list[str]:
    """Tables of ``problems/<label>.json`` (written by the runner for stand-in problems such as
    ``replay``): where the stand-in answers like the real model and where it does not."""
    import json

    lines: list[str] = []
    for path in sorted((out / "problems").glob("*.json")) if (out / "problems").is_dir() else []:
        data = json.loads(path.read_text())
        rows = data.get("stand_in_accuracy") or []
        if not rows:
            continue
        lines += [f"## Stand-in accuracy: {data.get('label', path.stem)}", "",
                  "Out-of-fold accuracy of the stand-in on recorded real evaluations it was not fitted on, by region "
                  "of the recorded masks: R^2 (perplexity on the log scale) and Spearman rho. Hypervolumes on this "
                  "problem are only as good as the stand-in in the regions the strategies search.", "",
                  "| split | objective | region | n | R^2 | Spearman |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['split']} | {r['objective']} | {r['region']} | {r['n']} | {fmt(r['r2'], 2)} | "
                  f"{fmt(r['spearman'], 2)} |" for r in rows]
        lines.append("")
    return lines


def _per_budget(scores: dict[str, dict[tuple[str, int], float]]) -> list[str]:
    """Per budget, the median final HV of every strategy on every problem (the best in bold) and
    the mean rank over the problems of that budget, among the strategies that ran on all of them:
    a strategy run at some budgets only is still ranked where it ran."""
    budgets = sorted({b for s in scores.values() for _, b in s})
    if not budgets:
        return []
    strategies = sorted(scores)
    rank_rows: dict[str, list[str]] = {s: [] for s in strategies}
    counts = []
    lines = ["## Median final hypervolume per budget", ""]
    for b in budgets:
        problems = sorted({p for s in scores.values() for p, bb in s if bb == b})
        present = [s for s in strategies if any((p, b) in scores[s] for p in problems)]
        lines += [f"### budget {b}", "", "| problem | " + " | ".join(present) + " |",
                  "|---|" + "---|" * len(present)]
        for p in problems:
            vals = {s: scores[s][(p, b)] for s in present if (p, b) in scores[s]}
            top = max(vals.values())
            cells = [("–" if s not in vals else f"**{fmt(vals[s], 3)}**" if vals[s] == top else fmt(vals[s], 3))
                     for s in present]
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        lines.append("")
        complete = {s: [scores[s][(p, b)] for p in problems] for s in present
                    if all((p, b) in scores[s] for p in problems)}
        ranks = average_ranks(complete) if len(complete) > 1 else {}
        counts.append(len(problems))
        for s in strategies:
            rank_rows[s].append(f"{ranks[s]:.2f}" if s in ranks else "–")
    lines += ["Mean rank per budget over that budget's problems (1 = best; – = not run on all of them, "
              "so not ranked there).", "",
              "| strategy | " + " | ".join(f"budget {b} ({n} problems)" for b, n in zip(budgets, counts, strict=True))
              + " |", "|---|" + "---|" * len(budgets)]
    order = sorted(strategies, key=lambda s: [float(r) if r != "–" else np.inf for r in rank_rows[s]])
    lines += [f"| {s} | " + " | ".join(rank_rows[s]) + " |" for s in order]
    return lines + [""]


def _summary(groups) -> list[str]:
    """Who wins where and by how much: the best median per (problem, budget), and per budget a
    tally of ``surrogate-sa`` against every strategy over problems (final and held-out HV)."""
    if not groups:
        return []
    budgets = sorted({b for _, b in groups})
    problems = sorted({p for p, _ in groups})
    lines = ["## Winners", "",
             "Best median final hypervolume per problem and budget, and its margin over the runner-up "
             f"(`{REFERENCE_STRATEGY}`'s rank in brackets).", "",
             "| problem | " + " | ".join(f"budget {b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for prob in problems:
        row = f"| {prob} |"
        for b in budgets:
            by_strategy = groups.get((prob, b), {})
            meds = sorted(((median_iqr(values(rows, "hv_final"))[0], s) for s, rows in by_strategy.items()),
                          reverse=True)
            if len(meds) < 2:
                row += " – |"
                continue
            (m1, s1), (m2, s2) = meds[0], meds[1]
            rank = next((i + 1 for i, (_, s) in enumerate(meds) if s == REFERENCE_STRATEGY), None)
            margin = f"{100 * (m1 / m2 - 1):+.1f}% over {s2}" if m2 > 0 else f"vs {s2}"
            row += f" {s1} ({margin}){f' [{rank}]' if rank else ''} |"
        lines.append(row)
    lines += ["", f"## `{REFERENCE_STRATEGY}` against each strategy", "",
              f"Over problems, per budget: on how many `{REFERENCE_STRATEGY}` has the higher final hypervolume "
              "with p < 0.05 (better), the lower with p < 0.05 (worse), or no significant difference; the median "
              f"over problems of A12 and of the ratio of median hypervolumes (>1 favours `{REFERENCE_STRATEGY}`). "
              "Held-out: the same for the final fronts re-evaluated on held-out data, where a problem has it.", "",
              "| budget | against | problems | better | no sig. diff. | worse | median A12 | median HV ratio "
              "| held-out better / n.s. / worse |", "|---|---|---|---|---|---|---|---|---|"]
    for b in budgets:
        others = sorted({s for (p, bb), g in groups.items() if bb == b for s in g} - {REFERENCE_STRATEGY})
        for other in others:
            tally, ho_tally, a12s, ratios = [0, 0, 0], [0, 0, 0], [], []
            for prob in problems:
                g = groups.get((prob, b), {})
                if REFERENCE_STRATEGY not in g or other not in g:
                    continue
                for key, t in (("hv_final", tally), ("hv_front_heldout", ho_tally)):
                    ref, x = values(g[REFERENCE_STRATEGY], key), values(g[other], key)
                    if len(ref) == 0 or len(x) == 0:
                        continue
                    pval, a = compare_rows(g[REFERENCE_STRATEGY], g[other], key)  # NaN p (two single runs): n.s.
                    t[0 if pval < 0.05 and a > 0.5 else 2 if pval < 0.05 and a < 0.5 else 1] += 1
                    if key == "hv_final":
                        a12s.append(a)
                        mo = np.median(x)
                        ratios.append(np.median(ref) / mo if mo > 0 else np.nan)
            if not a12s:
                continue
            ho = " / ".join(map(str, ho_tally)) if sum(ho_tally) else "–"
            lines.append(f"| {b} | {other} | {len(a12s)} | {tally[0]} | {tally[1]} | {tally[2]} | "
                         f"{np.median(a12s):.2f} | {np.nanmedian(ratios):.3f} | {ho} |")
    return lines + [""]


def _plots(out: Path, groups) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_problem: dict[str, int] = {}
    for prob, budget in groups:
        by_problem[prob] = max(budget, by_problem.get(prob, 0))
    for prob, budget in sorted(by_problem.items()):
        by_strategy = groups[(prob, budget)]
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
        first = next(iter(by_strategy.values()))[0]
        # the problem's declared roles (records made before roles were recorded: objective 0 bias, 1 cost)
        bias, cost = (int((first.get("roles") or {}).get(k, d)) for k, d in (("bias", 0), ("cost", 1)))
        for i, (strategy, rows) in enumerate(sorted(by_strategy.items())):
            n = min(len(r["hv_curve"]) for r in rows)
            if n == 0:
                continue
            curves = np.array([r["hv_curve"][:n] for r in rows])
            x = np.arange(1, n + 1)
            q25, q50, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            ax.plot(x, q50, label=strategy, c=f"C{i}")
            ax.fill_between(x, q25, q75, color=f"C{i}", alpha=0.2)
            front = np.array(min(rows, key=lambda r: r["seed"])["front"])
            if len(front):
                front = front[np.argsort(front[:, cost])]
                bx.step(front[:, cost], front[:, bias], where="post", c=f"C{i}", label=strategy, marker=".")
        names = first.get("objective_names") or [f"f{j}" for j in range(max(bias, cost) + 1)]
        ax.set(xlabel="real evaluations", ylabel="hypervolume (median, IQR band)", title=f"{prob}, budget {budget}")
        bx.set(xlabel=names[cost], ylabel=names[bias], title="final fronts (lowest seed)")
        ax.legend(fontsize=7)
        bx.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{prob}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
