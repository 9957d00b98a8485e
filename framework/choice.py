"""Pick a repair from a run's front and verify it.

:func:`choose_mask` applies the rule of ``headrepair run`` (a :class:`Choice`); :func:`verify_choice`
measures the chosen mask against the unpruned model on every split (``chosen_mask.json``).  Both
evaluate off the search split through the store, free of the budget (:func:`evaluate_on_split`);
:func:`split_hypervolume` measures a front on any split against that split's own reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framework.evaluators import evaluate_guarded
from framework.pareto import hypervolume
from framework.problem import HELDOUT, SEARCH, Problem
from framework.results import OptimizationResult
from framework.store import EvaluationStore
from framework.verdict import (
    VALIDATION,
    change,
    cost_splits,
    fallback_note,
    judge,
    reason_bias,
    reason_cost,
    reason_failed,
    reason_screened,
    reason_unpruned,
    roles,
    rule_sentence,
)

__all__ = ["Choice", "choose_mask", "verify_choice", "evaluate_on_split", "split_hypervolume"]


@dataclass
class Choice:
    """The mask picked from a run, and why.

    ``index`` is the mask's position in the run's evaluations, ``None`` when no front mask qualified
    (then ``mask`` is the unpruned mask: no repair was found, and nothing should be exported)."""

    mask: np.ndarray
    index: int | None
    split: str                  # the pick split
    values: np.ndarray          # float[m] on the pick split
    baseline: np.ndarray        # float[m]: the unpruned model on the pick split
    rule: str
    note: str = ""
    max_cost: float = 5.0       # % above the unpruned model allowed for the cost on each of ``cost_splits``
    cost_splits: tuple[str, ...] = ()
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every front mask, qualified or why not

    @property
    def is_repair(self) -> bool:
        return self.index is not None


def evaluate_on_split(problem: Problem, store: EvaluationStore, masks: np.ndarray,
                      split: str) -> tuple[np.ndarray, list]:
    """Evaluate on a non-search split through the store (free of the budget, never paid twice); a
    mask whose evaluation fails gets NaN values (stored as failed with its reason)."""
    fp = problem.fingerprint(split)
    store.register_problem(fp, problem.name, {"split": split, **problem.describe()})
    stored = store.get(fp, masks)
    todo = [i for i, s in enumerate(stored) if s is None]
    values = np.full((len(masks), problem.n_objectives), np.nan)
    infos: list[dict] = [{} for _ in masks]
    for i, s in enumerate(stored):
        if s is not None:
            values[i], infos[i] = s.objectives, s.info
    if todo:  # a mask whose evaluation fails is stored as failed with its reason (NaN values)
        v, inf, reasons, secs = evaluate_guarded(problem, masks[todo], split)
        store.put(fp, masks[todo], v, infos=inf, wall_times=secs, reasons=reasons, strategy="verification")
        for j, i in enumerate(todo):
            values[i], infos[i] = v[j], inf[j]
    return values, infos


def split_hypervolume(problem: Problem, values: np.ndarray, split: str) -> float:
    """Hypervolume of ``values`` measured on ``split``, normalized by that split's own reference.

    The problem's reference point and bounds come from its search-split baseline; another split
    has other unpruned values (other text, other descriptors), so its reference point and bounds
    are scaled by ``baseline(split) / baseline(search)`` per objective: a front that repairs the
    model as much on held-out data as on search data gets the same hypervolume on both."""
    ref = np.asarray(problem.ref_point, dtype=float)
    lo, hi = np.asarray(problem.bounds, dtype=float)
    base_s, base_x = problem.baseline(SEARCH), problem.baseline(split)
    if split != SEARCH and base_s is not None and base_x is not None:
        scale = np.where(np.asarray(base_s) != 0, np.asarray(base_x) / np.asarray(base_s), 1.0)
        ref, lo, hi = ref * scale, lo * scale, hi * scale
    span = np.where(hi > lo, hi - lo, 1.0)
    # clipped at the ideal bound, as every indicator (Problem.normalize(clip=True))
    return hypervolume(np.maximum((np.asarray(values, dtype=float) - lo) / span, 0.0), (ref - lo) / span)


def _split_values(problem: Problem, store: EvaluationStore, result: OptimizationResult, idx: np.ndarray,
                  split: str) -> np.ndarray:
    """``float[len(idx), m]``: the run's evaluations ``idx`` on ``split`` (search values from the run)."""
    if split == SEARCH:
        return result.values[idx]
    return evaluate_on_split(problem, store, result.masks[idx], split)[0]


def _unpruned(problem: Problem, store: EvaluationStore, split: str) -> np.ndarray:
    """``float[m]``: the problem's baseline on ``split``, or the unpruned mask evaluated there."""
    base = problem.baseline(split)
    if base is None:
        base = evaluate_on_split(problem, store, problem.space.keep_all(), split)[0][0]
    return np.asarray(base, dtype=float)


def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rel(values: np.ndarray, base: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base != 0, values / base - 1.0, np.nan)


#: A front mask whose cost on the search split exceeds this multiple of ``max_cost`` is not
#: evaluated on validation and held-out for the pick (it cannot qualify unless the splits disagree
#: by more than the limit itself; perplexity changes agree across splits, Spearman +0.86).
SCREEN_FACTOR = 2.0


def choose_mask(problem: Problem, result: OptimizationResult, store: EvaluationStore | None = None, *,
                max_cost: float = 5.0, split: str = VALIDATION) -> Choice | None:
    """Pick a repair from the run's front: the rule of ``headrepair run``.

    A front mask qualifies when its cost (the cost objective, :func:`framework.verdict.roles`) is at
    most ``max_cost`` % above the unpruned model on the pick split, on validation and on held-out
    (each split against its own unpruned value; splits the problem lacks are skipped), and its bias
    is below the unpruned model's on the pick split ``split``; the unpruned mask never qualifies.
    Among qualifying masks the lowest bias on ``split`` wins.  A mask whose search cost is over
    :data:`SCREEN_FACTOR` times ``max_cost`` does not qualify and is not evaluated on other splits
    for the pick.  Non-search splits are evaluated
    through ``store`` (free of the budget, never paid twice); with ``store=None`` in a throw-away
    in-memory store.  ``split="validation"`` falls back to search for problems without a
    validation split (said in ``note``); held-out data may not pick.

    Returns a :class:`Choice` (``index is None``: no repair found, keep the unpruned model), or
    ``None`` when the problem has no baseline to compare with."""
    if split == HELDOUT:
        raise ValueError("cannot pick on the held-out split: it must stay unseen to verify the pick")
    if store is None:
        with EvaluationStore(":memory:") as tmp:
            return choose_mask(problem, result, tmp, max_cost=max_cost, split=split)
    note = ""
    if split == VALIDATION and split not in problem.splits:
        note, split = fallback_note(VALIDATION, SEARCH), SEARCH
    if split not in problem.splits:
        raise ValueError(f"cannot pick on split {split!r}: problem {problem.name!r} has {list(problem.splits)}")
    if problem.n_objectives < 2 or problem.baseline(split) is None:
        return None
    bias, cost = roles(problem)
    names = problem.objective_names
    checked = cost_splits(problem.splits, split)
    rule = rule_sentence(names[bias], names[cost], split, checked, max_cost)
    idx = result.front_index
    keep = result.masks[idx].all(axis=1) if len(idx) else np.zeros(0, dtype=bool)
    cand = idx[~keep]
    # a mask whose search cost is far over the limit is not paid for on the other splits
    search_cost = _rel(result.values[cand], _unpruned(problem, store, SEARCH))[:, cost] if len(cand) else np.zeros(0)
    screened = ~(search_cost <= SCREEN_FACTOR * max_cost / 100)
    values = {}
    for s in dict.fromkeys([split, *checked]):
        values[s] = np.full((len(cand), problem.n_objectives), np.nan)
        if (~screened).any():
            values[s][~screened] = _split_values(problem, store, result, cand[~screened], s)
    bases = {s: _unpruned(problem, store, s) for s in values}
    rels = {s: _rel(v, bases[s]) for s, v in values.items()}
    candidates: list[dict[str, Any]] = []
    ok = np.ones(len(cand), dtype=bool)
    for j, i in enumerate(cand):
        if screened[j]:
            reasons = [reason_screened(names[cost], _opt(search_cost[j]), SCREEN_FACTOR, max_cost)]
        else:
            reasons = [reason_failed(s) for s, v in values.items() if not np.all(np.isfinite(v[j]))]
        if not reasons:
            for s in checked:
                c = rels[s][j, cost]
                if not c <= max_cost / 100:   # NaN (no baseline on that split) fails too
                    reasons.append(reason_cost(names[cost], _opt(c), s, max_cost))
            if not values[split][j, bias] < bases[split][bias]:
                reasons.append(reason_bias(names[bias], _opt(rels[split][j, bias]), split))
        ok[j] = not reasons
        candidates.append({"index": int(i), "n_pruned": int((~result.masks[i]).sum()), "qualified": not reasons,
                           "reasons": reasons, "values": {s: v[j].tolist() for s, v in values.items()},
                           "relative_change": {s: [_opt(x) for x in r[j]] for s, r in rels.items()}})
    for i in idx[keep]:
        candidates.insert(0, {"index": int(i), "n_pruned": 0, "qualified": False, "reasons": [reason_unpruned()],
                              "values": {}, "relative_change": {}})
    base = bases[split]
    common = {"rule": rule, "note": note, "max_cost": float(max_cost), "cost_splits": tuple(checked),
              "candidates": candidates}
    if not ok.any():
        return Choice(problem.space.keep_all()[0], None, split, base, base, **common)
    best = np.flatnonzero(ok)[np.argmin(values[split][ok, bias])]
    return Choice(result.masks[cand[best]], int(cand[best]), split, values[split][best], base, **common)


def verify_choice(problem: Problem, choice: Choice, store: EvaluationStore | None = None) -> dict[str, Any]:
    """The chosen mask and the unpruned model on every split (through ``store``, free of the budget),
    with relative changes, their paired standard errors and significance, and the verdict
    (:func:`framework.verdict.judge`).  This is ``chosen_mask.json``."""
    if store is None:
        with EvaluationStore(":memory:") as tmp:
            return verify_choice(problem, choice, tmp)
    names = problem.objective_names
    bias, cost = roles(problem)
    masks = np.vstack([choice.mask[None], problem.space.keep_all()])
    per_split: dict[str, Any] = {}
    for split in problem.splits:
        values, infos = evaluate_on_split(problem, store, masks, split)
        entry: dict[str, Any] = {}
        for j, name in enumerate(names):
            v, b = float(values[0, j]), float(values[1, j])
            entry[name] = {"value": v, "se": infos[0].get(f"{name}_se"), "unpruned": b,
                           "unpruned_se": infos[1].get(f"{name}_se"), **change(v, b, infos[0], name)}
        extra = problem.verification_figures(choice.mask, split) if choice.is_repair else {}
        if extra:
            entry["other"] = extra
        per_split[split] = entry
    checked = list(choice.cost_splits) or cost_splits(problem.splits, choice.split)
    verdict = judge(per_split, bias=names[bias], cost=names[cost], pick_split=choice.split,
                    checked=checked, max_cost=choice.max_cost, is_repair=choice.is_repair)
    return {"rule": choice.rule, "pick_split": choice.split, "max_cost": choice.max_cost, "cost_splits": checked,
            "roles": {"bias": names[bias], "cost": names[cost]},
            "index": choice.index, "note": choice.note,
            "mask": problem.space.to_grid(choice.mask)[0].astype(int).tolist(),
            "n_pruned": int((~choice.mask).sum()), "pruned_heads": np.flatnonzero(~choice.mask).tolist(),
            "splits": per_split, "verdict": verdict, "candidates": choice.candidates}
