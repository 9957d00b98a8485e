"""Figures of the ``masked-lm`` problem (a mixin of :class:`~objectives.masked_lm.problem.MaskedLMProblem`).

From raw measurements to the reported figures: value, standard error, baseline and relative
change (paired with the baseline) of each bias metric, of perplexity and of multiple-choice
accuracy; and :meth:`MaskedLMFigures.report`, the figures of ``headrepair evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from objectives.masked_lm.counterfactual import COUNTERFACTUAL_METRICS, bias_change
from objectives.masked_lm.metric_names import BIAS_METRICS, HOLISTIC_METRICS
from objectives.masked_lm.metrics import (
    AGGREGATES,
    SCOPES,
    SentenceLogprobs,
    bootstrap_perplexity,
    group_bias_items,
    pair_fraction,
    perplexity,
)
from objectives.masked_lm.multiple_choice import accuracy_figures, cut_choice_splits, encode_choices

__all__ = ["MaskedLMFigures"]


class MaskedLMFigures:
    """Mixin of :class:`~objectives.masked_lm.problem.MaskedLMProblem`: figures of raw measurements and the
    report (it uses the problem's measurements, baselines and settings)."""

    # ------------------------------------------------------------------ figures
    def _choice_data(self, split: str):
        if self._choices is None:
            raise ValueError("the accuracy metric needs choice_file (JSONL: context, choices, label)")
        if split not in self._choice_encoded:
            cut = cut_choice_splits(self._choices, seed=self.seed)
            self._choice_encoded.update({s: encode_choices(self.tokenizer, items, batch_size=self.batch_size)
                                         for s, items in cut.items()})
        return self._choice_encoded[split]

    def _accuracy_figures(self, raw: dict, base: dict, split: str) -> dict[str, Any]:
        labels = self._choice_data(split).labels
        fig = accuracy_figures(np.asarray(raw["per_token"], dtype=float), labels,
                               np.asarray(base["per_token"], dtype=float))
        return {"value": fig["accuracy"], "se": fig["accuracy_se"], "baseline": fig["base_accuracy"],
                "change": fig["accuracy_change"], "change_se": fig["accuracy_change_se"], "n_items": fig["n_items"]}

    def _bias_figures(self, raw: dict, base: dict, split: str, axis: str, kind: str) -> dict[str, Any]:
        if kind in COUNTERFACTUAL_METRICS:
            return self._counterfactual(kind).figures(raw, base, split)
        data = self._prepared(axis, split, kind)
        t = data.table

        def scores_of(r: dict, scope: str) -> np.ndarray:
            if kind == "generation":
                return np.asarray(r["scores"], dtype=float)
            return SentenceLogprobs(r["sum_all"], r["n_all"], r["sum_after"], r["n_after"]).mean(scope)

        scope = self.scope if kind == "likelihood" else "sentence"
        variants: dict[str, float] = {}
        for sc in (SCOPES if kind == "likelihood" else ("sentence",)):
            x = scores_of(raw, sc)
            for agg in AGGREGATES:
                name = f"{kind}/{sc}/{agg}" if kind == "likelihood" else f"{kind}/{agg}"
                variants[name] = float(group_bias_items(x, t, aggregate=agg)[0])
        x, xb = scores_of(raw, scope), scores_of(base, scope)
        agg = self._aggregate(kind)
        value = float(group_bias_items(x, t, aggregate=agg)[0])
        base_value = float(group_bias_items(xb, t, aggregate=agg)[0])
        reps = group_bias_items(x, t, aggregate=agg, boot=data.boot)
        base_reps = group_bias_items(xb, t, aggregate=agg, boot=data.boot)
        se, rel_se = float(reps.std(ddof=1)), bias_change(reps, base_reps)
        out: dict[str, Any] = {"value": value, "se": se, "baseline": base_value,
                               "rel": value / base_value - 1.0 if base_value > 0 else float("nan"), "rel_se": rel_se,
                               "variants": variants, "n_items": len(data.items), "n_descriptors": t.n_units,
                               "n_buckets": int(np.unique(t.bucket_of_unit).size)}
        if kind == "likelihood":
            lp = SentenceLogprobs(raw["sum_all"], raw["n_all"], raw["sum_after"], raw["n_after"])
            scores = lp.mean(scope)
            out["mean_loglik"] = float(scores.mean())
            out["pair_fraction"] = pair_fraction(scores, [x.descriptor for x in data.items],
                                                 [x.template for x in data.items])
        else:
            scores = np.asarray(raw["scores"], dtype=float)
            out["mean_score"] = float(scores.mean())
            out["zero_fraction"] = float(np.mean(scores == 0.0))
        return out

    def _perplexity_figures(self, raw: dict, base: dict) -> dict[str, Any]:
        value = perplexity(raw["nll"], raw["n_scored"])
        base_value = perplexity(base["nll"], base["n_scored"])
        se, rel_se = bootstrap_perplexity(raw["nll"], int(raw["n_scored"]), self.n_boot, self.seed,
                                          base_nll=base["nll"])
        return {"value": value, "se": se, "baseline": base_value, "rel": value / base_value - 1.0, "rel_se": rel_se,
                "n_windows": int(len(raw["nll"])), "n_tokens": int(len(raw["nll"]) * int(raw["n_scored"]))}

    # ------------------------------------------------------------------- report
    def report(self, masks: np.ndarray, splits: list[str], axes: Sequence[str] | None = None,
               metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """Figures of ``masks`` (``bool[n, d]``) for ``headrepair evaluate``.

        Args:
            splits: splits to measure.
            axes: HolisticBias axes (default: the problem's axis); several give one entry each
                (spill-over check).
            metrics: among :data:`BIAS_METRICS`, ``"perplexity"`` and ``"accuracy"`` (multiple
                choice, needs ``choice_file``); default: the problem's bias metric and perplexity.

        Returns ``{"problem", "settings", "splits": {split: {"baseline": {...}, "masks": [...]}}}``;
        each mask entry has ``n_pruned``, ``perplexity`` (value, se, baseline, rel, rel_se),
        ``counterfactual: {metric: {value, se, baseline, rel, rel_se, variants, ...}}`` for the
        counterfactual metrics (``pronoun``, ``swap``, ``pairs``: gender by construction, no axis),
        ``axes: {axis: {metric: {...}}}`` for the HolisticBias metrics, and ``accuracy`` (value,
        se, baseline, change, change_se: paired over items) when asked.
        """
        from framework.space import as_masks

        m = as_masks(masks, self.space.dim)
        axes = list(axes) if axes else [self.axis]
        metrics = list(metrics) if metrics else [self.bias_metric, "perplexity"]
        allowed = [*BIAS_METRICS, "perplexity", "accuracy"]
        bad = [x for x in metrics if x not in allowed]
        if bad:
            raise ValueError(f"unknown metrics {bad}; choose among {allowed}")
        for s in splits:
            if s not in self.splits:
                raise ValueError(f"problem {self.name!r} has no split {s!r}; it has {list(self.splits)}")
        holistic = [k for k in HOLISTIC_METRICS if k in metrics]
        if holistic:
            for a in axes:
                self.data.axis_descriptors(a)
        single = [k for k in (*COUNTERFACTUAL_METRICS, "perplexity", "accuracy") if k in metrics]
        out: dict[str, Any] = {"problem": self.name, "settings": self.describe(), "splits": {}}
        for split in splits:
            entries: list[dict[str, Any]] = [{"n_pruned": int((~row).sum())} for row in m]
            baseline: dict[str, Any] = {}
            raws = self._measure(m, split, axes[0], single) if single else [{} for _ in entries]
            for kind in single:
                base = self._baseline_raw(split, axes[0], kind)
                for e, raw in zip(entries, raws, strict=True):
                    if kind == "perplexity":
                        e[kind] = self._perplexity_figures(raw[kind], base)
                    elif kind == "accuracy":
                        e[kind] = self._accuracy_figures(raw[kind], base, split)
                    else:
                        e.setdefault("counterfactual", {})[kind] = self._bias_figures(raw[kind], base, split,
                                                                                      axes[0], kind)
                if kind == "perplexity":
                    baseline[kind] = perplexity(base["nll"], base["n_scored"])
                elif kind == "accuracy":
                    baseline[kind] = self._accuracy_figures(base, base, split)["value"]
                else:
                    baseline.setdefault("counterfactual", {})[kind] = self._bias_figures(base, base, split, axes[0],
                                                                                         kind)["value"]
            if holistic:
                baseline["axes"] = {a: {} for a in axes}
                for e in entries:
                    e["axes"] = {a: {} for a in axes}
                for axis in axes:
                    raws = self._measure(m, split, axis, holistic)
                    for kind in holistic:
                        base = self._baseline_raw(split, axis, kind)
                        baseline["axes"][axis][kind] = self._bias_figures(base, base, split, axis, kind)["value"]
                        for e, raw in zip(entries, raws, strict=True):
                            e["axes"][axis][kind] = self._bias_figures(raw[kind], base, split, axis, kind)
            out["splits"][split] = {"baseline": baseline, "masks": entries}
        return out

    def verification_figures(self, mask: np.ndarray, split: str) -> dict[str, Any]:
        """``{"accuracy": {...}}`` (multiple choice, paired change) when ``choice_file`` is set, else ``{}``."""
        if self._choices is None:
            return {}
        entry = self.report(np.asarray(mask, dtype=bool)[None], [split], metrics=["accuracy"])
        return {"accuracy": entry["splits"][split]["masks"][0]["accuracy"]}
