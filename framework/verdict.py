"""Judging a chosen mask: which objective is which, when a change counts, and every sentence said about it.

A change counts only when it is larger than :data:`SIGNIFICANCE` paired standard errors: the
bootstrap standard error of the *relative change* against the unpruned model on the same split
(``<name>_rel_se`` in a problem's evaluation info), which cancels the variation that the mask and
the unpruned model share.  A problem that reports no such error gets no significance claim.

The pick and its verification (:mod:`framework.choice`), the run-finishing code (:mod:`framework.runs`)
and the report (:mod:`framework.report`) take the objective roles (declared on the problem:
``Problem.bias_objective``, ``Problem.cost_objectives``), the thresholds, the verdict and all their
sentences from here, so that a test can cover each sentence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from framework.problem import HELDOUT, SEARCH, validate_roles

__all__ = ["VALIDATION", "SIGNIFICANCE", "REPAIRED", "NOT_SIGNIFICANT", "NO_REPAIR", "BIAS_INCREASED",
           "COST_OVER_LIMIT", "roles", "cost_splits", "change", "significant", "judge", "rule_sentence",
           "reason_unpruned", "reason_failed", "reason_cost", "reason_screened", "reason_bias", "fallback_note",
           "verdict_sentences"]

VALIDATION = "validation"
SIGNIFICANCE = 2.0          # a change counts when it exceeds this many paired standard errors

# verdict statuses (machine-readable, in chosen_mask.json)
REPAIRED = "repaired"
NOT_SIGNIFICANT = "not significant"
NO_REPAIR = "no repair found"
BIAS_INCREASED = "bias increased"
COST_OVER_LIMIT = "cost over limit"

_LOADS = "loads with `AutoModelForCausalLM.from_pretrained`"


def roles(problem: Any) -> tuple[int, int]:
    """``(bias index, cost index)`` of ``problem``'s objectives, both minimized, as the problem declares
    them: ``(problem.bias_objective, problem.cost_objectives[0])``
    (:class:`~framework.problem.Problem`: objective 0 and objective 1 unless a problem says otherwise).

    The pick rule, the verdict and the plots of a run read the roles here.  An object that is no
    :class:`~framework.problem.Problem` and lacks the attributes gets ``(0, 1)``.  A
    :class:`ValueError` when the declared roles are invalid (:func:`~framework.problem.validate_roles`)
    or the problem has no cost objective."""
    names = getattr(problem, "objective_names", None)
    n = len(names) if names is not None else 2
    label = getattr(problem, "name", "") or type(problem).__name__
    bias, costs = validate_roles(getattr(problem, "bias_objective", 0), getattr(problem, "cost_objectives", (1,)), n,
                                 problem=label)
    if not costs:
        raise ValueError(f"problem {label!r} declares no cost objective (it has {n} objective(s)): the pick rule "
                         "needs a bias and a cost")
    return bias, costs[0]


def cost_splits(splits: Sequence[str], pick_split: str) -> list[str]:
    """Splits on which the cost must stay within the limit: the pick split, validation and held-out
    (those the problem has), in the problem's order."""
    return [s for s in splits if s in (pick_split, VALIDATION, HELDOUT)]


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


_NEGLIGIBLE = 1e-9         # relative changes below this are rounding, not change


def significant(rel: float | None, se: float | None) -> bool:
    """``True`` when the relative change ``rel`` exceeds :data:`SIGNIFICANCE` standard errors ``se``
    (and rounding); ``False`` when either is unknown."""
    return rel is not None and se is not None and abs(rel) > max(SIGNIFICANCE * se, _NEGLIGIBLE)


def change(value: float, unpruned: float, info: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """Relative change of one objective against the unpruned model on the same split, with its paired
    standard error (``info[f"{name}_rel_se"]``, ``None`` when the problem reports none)."""
    v, b = _finite(value), _finite(unpruned)
    rel = (v - b) / b if v is not None and b not in (None, 0.0) else None
    se = _finite((info or {}).get(f"{name}_rel_se"))
    return {"relative_change": rel, "relative_change_se": se, "significant": significant(rel, se)}


# ------------------------------------------------------------------ formatting
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _pct_se(x: float | None, se: float | None) -> str:
    return _pct(x) if se is None else f"{_pct(x)} ± {100 * se:.1f}%"


def _split_list(splits: Sequence[str]) -> str:
    words = list(splits)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# ------------------------------------------------------------------ the rule
def rule_sentence(bias: str, cost: str, pick_split: str, checked: Sequence[str], max_cost: float) -> str:
    """The pick rule, in words."""
    return (f"among the front masks (the unpruned mask excluded) with {cost} at most {max_cost:g}% above the "
            f"unpruned model on {_split_list(checked)} (each split against its own unpruned value) and {bias} "
            f"below the unpruned model on the {pick_split} split, the lowest {bias} on the {pick_split} split")


def reason_unpruned() -> str:
    return "the unpruned mask (never a repair)"


def reason_failed(split: str) -> str:
    return f"failed to evaluate on {split}"


def reason_cost(cost: str, rel: float | None, split: str, max_cost: float) -> str:
    return f"{cost} {_pct(rel)} on {split}, over the {max_cost:g}% limit"


def reason_screened(cost: str, rel: float | None, factor: float, max_cost: float) -> str:
    return (f"{cost} {_pct(rel)} on search, over {factor:g}x the {max_cost:g}% limit "
            "(not evaluated on the other splits)")


def reason_bias(bias: str, rel: float | None, split: str) -> str:
    return f"{bias} {_pct(rel)} on {split}, not below the unpruned model"


def fallback_note(wanted: str, used: str) -> str:
    return (f"The problem has no {wanted} split, so the mask was picked on the {used} split"
            + (", which the search optimized (optimistic)." if used == SEARCH else "."))


# ------------------------------------------------------------------ the verdict
def judge(splits: Mapping[str, Mapping[str, Mapping[str, Any]]], *, bias: str, cost: str, pick_split: str,
          checked: Sequence[str], max_cost: float, is_repair: bool) -> dict[str, Any]:
    """The verdict on a chosen mask from its per-split figures (``splits[split][objective]`` holds
    ``relative_change`` and ``relative_change_se``, as :func:`change` gives them).

    Judged on the held-out split when there is one, else on the pick split.  Statuses:
    :data:`NO_REPAIR` (no mask qualified), :data:`COST_OVER_LIMIT` (cost above the limit on one of
    ``checked``), :data:`REPAIRED` (bias fell by more than :data:`SIGNIFICANCE` paired SE),
    :data:`BIAS_INCREASED` (rose by more than that), :data:`NOT_SIGNIFICANT` (within it, or the SE
    is unknown).  The verdict carries its own ``message``."""
    has_heldout = HELDOUT in splits
    on = HELDOUT if has_heldout else pick_split
    rel = splits[on][bias]["relative_change"]
    se = splits[on][bias]["relative_change_se"]
    costs = {s: splits[s][cost]["relative_change"] for s in checked if s in splits}
    over = [s for s, c in costs.items() if c is None or c > max_cost / 100]
    comparison = None
    if is_repair and has_heldout and SEARCH in splits:
        s_rel, s_se = splits[SEARCH][bias]["relative_change"], splits[SEARCH][bias]["relative_change_se"]
        diff = None if rel is None or s_rel is None else rel - s_rel
        # search and held-out are different data: the variance of the difference is the sum of both
        diff_se = None if s_se is None or se is None else math.hypot(s_se, se)
        comparison = {"search_change": s_rel, "search_change_se": s_se, "heldout_change": rel,
                      "heldout_change_se": se, "difference": diff, "difference_se": diff_se,
                      "significant": significant(diff, diff_se)}
    if not is_repair:
        status = NO_REPAIR
    elif over:
        status = COST_OVER_LIMIT
    elif se is None or rel is None:
        status = NOT_SIGNIFICANT
    elif significant(rel, se):
        status = REPAIRED if rel < 0 else BIAS_INCREASED
    else:
        status = NOT_SIGNIFICANT
    verdict = {"status": status, "judged_on": on, "has_heldout": has_heldout, "pick_split": pick_split,
               "bias": bias, "cost": cost, "bias_change": rel, "bias_change_se": se,
               "se_known": se is not None, "significance_se": SIGNIFICANCE, "max_cost": max_cost,
               "cost_splits": list(checked), "cost_changes": costs, "cost_over_limit": over,
               "comparison": comparison}
    verdict["message"] = " ".join(_status_sentences(verdict))
    return verdict


def _status_sentences(v: Mapping[str, Any]) -> list[str]:
    bias, cost, on, k = v["bias"], v["cost"], v["judged_on"], v["significance_se"]
    rel, se, mc = v["bias_change"], v["bias_change_se"], v["max_cost"]
    status = v["status"]
    if status == NO_REPAIR:
        out = [f"No repair found: no front mask kept {cost} within {mc:g}% of the unpruned model on "
               f"{_split_list(v['cost_splits'])} while lowering {bias} below the unpruned model on the "
               f"{v['pick_split']} split, so the unpruned model is kept and nothing is exported."]
    elif status == COST_OVER_LIMIT:
        split = v["cost_over_limit"][0]
        out = [f"Not repaired: the chosen mask's {cost} is {_pct(v['cost_changes'][split])} against the unpruned "
               f"model on the {split} split, over the {mc:g}% limit."]
    elif status == REPAIRED:
        out = [f"Repaired: {bias} on the {on} split fell by {100 * -rel:.1f}% ± {100 * se:.1f}% (paired standard "
               f"error), more than {k:g} standard errors, with {cost} within {mc:g}% of the unpruned model on "
               f"{_split_list(v['cost_splits'])}."]
    elif status == BIAS_INCREASED:
        out = [f"Not repaired: {bias} on the {on} split rose by {100 * rel:.1f}% ± {100 * se:.1f}% (paired "
               f"standard error), more than {k:g} standard errors: the chosen mask makes it worse there."]
    elif v["se_known"]:
        out = [f"Not significant: {bias} on the {on} split changed by {_pct_se(rel, se)} (paired standard error), "
               f"within {k:g} standard errors of no change; no repair is claimed."]
    else:
        out = [f"Not significant: {bias} on the {on} split changed by {_pct(rel)}, but the problem reports no "
               f"paired standard error for it, so the change cannot be told from noise; no repair is claimed."]
    if not v["has_heldout"]:
        out.append(f"This problem has no held-out split, so the verdict is judged on the {v['pick_split']} split, "
                   "which picked the mask" + (" and which the search optimized" if v["pick_split"] == SEARCH else "")
                   + ": the figure is optimistic.")
    return out


def _comparison_sentence(c: Mapping[str, Any], bias: str) -> str:
    s = _pct_se(c["search_change"], c["search_change_se"])
    h = _pct_se(c["heldout_change"], c["heldout_change_se"])
    if c["difference_se"] is None:
        return (f"The {bias} changes on search data ({s}) and held-out data ({h}) cannot be compared: the problem "
                "reports no paired standard errors.")
    d = _pct_se(c["difference"], c["difference_se"])
    if not c["significant"]:
        return (f"The {bias} changes on search data ({s}) and held-out data ({h}) agree within {SIGNIFICANCE:g} "
                f"standard errors of their difference ({d}).")
    if c["difference"] > 0:
        return (f"The held-out {bias} change ({h}) is significantly above the search change ({s}; difference {d}): "
                "the reduction on search data does not fully transfer to held-out data.")
    return f"The held-out {bias} change ({h}) is significantly below the search change ({s}; difference {d})."


def verdict_sentences(chosen: Mapping[str, Any], *, exported: str | None = None) -> list[str]:
    """Every sentence the report prints about the chosen mask, from a ``chosen_mask.json`` dict
    (:func:`framework.choice.verify_choice`); ``exported`` is the path of the exported model, if any."""
    v = chosen["verdict"]
    bias, cost = v["bias"], v["cost"]
    out = list(_status_sentences(v))
    if chosen.get("note"):
        out.append(chosen["note"])
    if v["comparison"] is not None:
        out.append(_comparison_sentence(v["comparison"], bias))
    cands = chosen.get("candidates") or []
    if cands:
        n_ok = sum(c["qualified"] for c in cands)
        out.append(f"{n_ok} of {len(cands)} front masks qualified under the rule"
                   + ("." if n_ok == len(cands) else "; the table below says why the others did not."))
    used = f"The search split steered the search; the mask was picked on {v['pick_split']} {bias}, with {cost} " \
           f"on {_split_list(v['cost_splits'])} as a limit"
    out.append(used + (f"; held-out {bias} was never used to pick." if v["has_heldout"] else "."))
    if exported:
        out.append(f"Exported model: `{exported}` ({_LOADS})." if v["status"] == REPAIRED else
                   f"Exported model: `{exported}` ({_LOADS}); it holds the chosen mask, which the verdict above "
                   "does not confirm as a repair.")
    return out
