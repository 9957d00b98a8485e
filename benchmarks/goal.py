"""The primary-strategy goal of the benchmark report, checked cell by cell (see :func:`goal_lines`)."""

from __future__ import annotations

import numpy as np

from benchmarks.records import REFERENCE_STRATEGY, compare_rows, fmt, sample, values
from benchmarks.stats import median_iqr

__all__ = ["best_count_bootstrap", "goal_lines"]

BOOTSTRAP_RESAMPLES = 2000


def _clearly_above(a, b):
    """``a > b`` by more than the float noise of a tie (1e-9 relative): the goal check's "strictly"."""
    return a > b + 1e-9 * np.maximum(1.0, np.abs(b))


def _strictly_top(medians: np.ndarray) -> np.ndarray:
    """``bool[S, B]``: strategy ``s`` has the strictly highest of the ``S`` (>= 2) medians of
    resample ``b``; a tie at the top (e.g. at a ceiling) makes no one best, the rule of :func:`verdict`."""
    ordered = np.sort(medians, axis=0)
    clear = _clearly_above(ordered[-1], ordered[-2])
    return (np.arange(len(medians))[:, None] == medians.argmax(axis=0)) & clear


def best_count_bootstrap(groups, pairs, key: str = "hv_final", n_resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = 0) -> tuple[dict[tuple[str, int], float], dict[str, np.ndarray]]:
    """How much of the strictly-best count is the draw of seeds: each strategy's runs of each pair
    resampled with replacement (a strategy whose seeds are one run stays that one value), the
    medians recomputed, and the pairs counted where a strategy's median is strictly the highest.
    Returns ``P(the default is strictly best)`` per pair and, per strategy, its count in each of
    the ``n_resamples`` resamples (``int[B]``).  Seeded: the same records give the same figures."""
    rng = np.random.default_rng(seed)
    p_best: dict[tuple[str, int], float] = {}
    counts: dict[str, np.ndarray] = {}
    for pair in pairs:
        names, meds = [], []
        for s, rows in sorted(groups[pair].items()):
            v = sample(rows, key)
            if not len(v):
                continue
            idx = rng.integers(0, len(v), size=(n_resamples, len(v)))
            names.append(s)
            meds.append(np.median(v[idx], axis=1))
        if REFERENCE_STRATEGY not in names or len(names) < 2:
            continue
        top = _strictly_top(np.array(meds))
        for s, row in zip(names, top, strict=True):
            counts[s] = counts.get(s, np.zeros(n_resamples, dtype=int)) + row
        p_best[pair] = float(top[names.index(REFERENCE_STRATEGY)].mean())
    return p_best, counts


def verdict(by_strategy: dict[str, list[dict]], key: str) -> tuple[str, str, float] | None:
    """The default against the strategies at or above its median ``key``: ``("best", best other,
    nan)`` when its median is the highest; ``("worse", s, p)`` when one of them, ``s``, is
    significantly better (the lowest such p: the best median may have fewer or more spread runs
    than a strategy just below it that beats the default on every seed); else ``("n.s.", best
    other, p)``.  None where the default or every other strategy lacks ``key``."""
    ref = by_strategy.get(REFERENCE_STRATEGY, [])
    if len(values(ref, key)) == 0:
        return None
    meds = [(median_iqr(values(rows, key))[0], s) for s, rows in by_strategy.items()
            if s != REFERENCE_STRATEGY and len(values(rows, key))]
    if not meds:
        return None
    top, best = max(meds)
    own = median_iqr(values(ref, key))[0]
    if _clearly_above(own, top):  # a tie (e.g. at a ceiling) is not best
        return "best", best, float("nan")
    tests = {s: compare_rows(ref, by_strategy[s], key) for med, s in meds
             if med >= own - 1e-9 * max(1.0, abs(own))}  # holds the best: its median is at least the default's
    losses = [(pval, s) for s, (pval, a) in tests.items() if pval < 0.05 and a < 0.5]
    if losses:
        pval, s = min(losses)
        return "worse", s, pval
    return "n.s.", best, tests[best][0]


def goal_lines(groups) -> list[str]:
    """The primary-strategy goal, checked cell by cell: the default's median final HV is the best
    or not significantly worse than the best (on search and on held-out fronts), strictly best on
    at least two thirds of the (problem, budget) pairs, A12 >= 0.71 against ``nsga2`` and
    ``random``; and the moonshot: the default's median anytime HV reaches ``nsga2``'s median final
    HV at budget 200 within 60 evaluations."""
    pairs = sorted(k for k, g in groups.items() if REFERENCE_STRATEGY in g and len(g) > 1)
    if not pairs:
        return []
    lines = ["## Goal check", "",
             f"Per (problem, budget): `{REFERENCE_STRATEGY}` against the best other strategy by median final HV "
             "(best: its median is the highest; n.s.: level with it or below it, p >= 0.05; worse: a strategy with "
             "at least its median is significantly better, p < 0.05, named with its p), "
             "the same for the held-out front HV where the problem has one, and its A12 against `nsga2` and `random` "
             "(goal >= 0.71); P(best): the share of bootstrap resamples of the seeds (each strategy's runs "
             "resampled with replacement) in which its median final HV is strictly the highest.", "",
             "| problem | budget | final HV | P(best) | held-out front HV | A12 vs nsga2 | A12 vs random |",
             "|---|---|---|---|---|---|---|"]
    p_best, counts = best_count_bootstrap(groups, pairs)
    n_best = n_ok = n_ho = n_ho_ok = 0
    a12_ok = {"nsga2": [0, 0], "random": [0, 0]}
    for prob, budget in pairs:
        g = groups[(prob, budget)]
        cells = []
        for key in ("hv_final", "hv_front_heldout"):
            v = verdict(g, key)
            if v is None:
                cells.append("–")
                continue
            what, best, pval = v
            ok = what != "worse"
            if key == "hv_final":
                n_best += what == "best"
                n_ok += ok
            else:
                n_ho += 1
                n_ho_ok += ok
            cells.append("best" if what == "best" else f"{what} vs {best} (p={pval:.3g})")
            if key == "hv_final":
                cells.append(fmt(p_best.get((prob, budget)), 2))
        for other in ("nsga2", "random"):
            if other not in g:
                cells.append("–")
                continue
            _, a = compare_rows(g[REFERENCE_STRATEGY], g[other], "hv_final")
            a12_ok[other][0] += a >= 0.71
            a12_ok[other][1] += 1
            cells.append(f"{a:.2f}" + ("" if a >= 0.71 else " (below 0.71)"))
        lines.append(f"| {prob} | {budget} | " + " | ".join(cells) + " |")
    n = len(pairs)
    lines += ["", f"Strictly best on {n_best} of {n} pairs (goal: at least {-(-2 * n // 3)}); best or not "
              f"significantly worse on {n_ok} of {n} (goal: all)"
              + (f"; held-out fronts best or not significantly worse on {n_ho_ok} of {n_ho}" if n_ho else "")
              + "; A12 >= 0.71 against " + ", ".join(f"`{o}` on {k} of {m}" for o, (k, m) in a12_ok.items() if m)
              + ".", ""]
    if counts:
        goal = -(-2 * n // 3)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1].mean(), kv[0]))

        def spread(c: np.ndarray) -> str:
            return f"{c.mean():.1f} (5-95%: {np.percentile(c, 5):.0f}-{np.percentile(c, 95):.0f})"

        own = counts.get(REFERENCE_STRATEGY, np.zeros(1, dtype=int))
        others = [f"`{s}` {spread(c)}" for s, c in ranked if s != REFERENCE_STRATEGY and c.any()][:3]
        lines += [f"How much of that count is the draw of seeds ({BOOTSTRAP_RESAMPLES} bootstrap resamples): "
                  f"`{REFERENCE_STRATEGY}` is strictly best on {spread(own)} pairs, at least {goal} in "
                  f"{100 * np.mean(own >= goal):.1f}% of the resamples; "
                  + ("the others with the highest counts: " + ", ".join(others) if others
                     else "no other strategy is strictly best on any pair in any resample") + ".", ""]
    moon = []
    for prob in sorted({p for p, _ in pairs}):
        target_rows = groups.get((prob, 200), {}).get("nsga2", [])
        budgets = sorted(b for (p, b), g in groups.items() if p == prob and REFERENCE_STRATEGY in g)
        if not target_rows or not budgets:
            continue
        target = median_iqr(values(target_rows, "hv_final"))[0]
        hits = {}   # budget of the default's runs -> first evaluation its median curve reaches the target
        for b in budgets:
            rows = groups[(prob, b)][REFERENCE_STRATEGY]
            n_curve = min(len(r["hv_curve"]) for r in rows)
            curve = np.median(np.array([r["hv_curve"][:n_curve] for r in rows]), axis=0)
            hit = np.flatnonzero(curve >= target)
            hits[b] = int(hit[0]) + 1 if len(hit) else None
        per_budget = ", ".join(f"{b}: {h if h is not None else '-'}" for b, h in hits.items())
        found = [h for h in hits.values() if h is not None]
        best = min(found) if found else None
        moon.append(f"| {prob} | {fmt(target, 3)} | {per_budget} | "
                    + (f"{best}{' (goal met)' if best <= 60 else ''}" if best is not None else "not reached") + " |")
    if moon:
        lines += ["Moonshot: evaluations after which the default's median anytime HV reaches `nsga2`'s median "
                  "final HV at budget 200, in the default's runs of each budget (its design takes a share of the "
                  "budget, so a shorter run gets there sooner); goal: within 60.", "",
                  "| problem | nsga2 at 200 | default, by run budget | fewest |", "|---|---|---|---|"] + moon + [""]
    return lines

