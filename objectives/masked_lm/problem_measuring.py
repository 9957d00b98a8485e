"""Prepared data and raw measurements of the ``masked-lm`` problem (a mixin of
:class:`~objectives.masked_lm.problem.MaskedLMProblem`).

The bias items of each (axis, split, metric), tokenized and with their bootstrap units, are
prepared once; the counterfactual objectives are built once; :meth:`MaskedLMMeasuring._measure`
runs the masked model and returns raw measurements per mask; the unpruned model's raw
measurements are stored as JSON under ``cache_dir()/baselines`` and reused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from objectives.masked_lm.counterfactual import COUNTERFACTUAL_METRICS, PairBias, PronounBias, codes
from objectives.masked_lm.data import BiasSentence, cut_bias_splits
from objectives.masked_lm.metric_names import METRIC_AGGREGATES
from objectives.masked_lm.metrics import (
    EncodedSentences,
    ItemBootstrap,
    UnitTable,
    encode_prompts,
    encode_sentences,
    generate,
    item_bootstrap,
    sentence_logprobs,
    window_nll,
)
from objectives.masked_lm.multiple_choice import choice_scores
from objectives.masked_lm.pairs import builtin_swap_pairs, cut_pair_splits
from objectives.masked_lm.pronouns import cut_pronoun_splits

__all__ = ["MaskedLMMeasuring"]


@dataclass
class _BiasData:
    """Prepared items of one (axis, split, metric): sentences or prompts, their bootstrap units."""

    items: list[BiasSentence]
    table: UnitTable
    boot: ItemBootstrap                   # descriptors across buckets x templates x nouns
    encoded: EncodedSentences | None      # likelihood only


class MaskedLMMeasuring:
    """Mixin of :class:`~objectives.masked_lm.problem.MaskedLMProblem`: prepared bias data, the counterfactual
    objectives, raw measurements and the stored baselines (it uses the problem's model, tokenizer, runner and
    settings, set in its ``__init__``)."""

    # ---------------------------------------------------------------------- data
    def _prepared(self, axis: str, split: str, kind: str) -> _BiasData:
        key = (axis, split, kind)
        if key not in self._bias_data:
            if kind == "likelihood":
                cut = cut_bias_splits(self.data, axis, by=self.heldout_by, n_templates=self.sizes["n_templates"],
                                      n_nouns=self.sizes["n_nouns"], max_sentences=self.sizes["max_sentences"],
                                      seed=self.seed)
            else:
                cut = cut_bias_splits(self.data, axis, by=self.heldout_by,
                                      n_templates=self.sizes["n_generation_templates"], n_nouns=self.sizes["n_nouns"],
                                      max_sentences=self.sizes["max_prompts"], generation=True, seed=self.seed)
            for name, items in cut.items():
                table = UnitTable.build([s.descriptor for s in items], [s.bucket for s in items])
                encoded = (encode_sentences(self.tokenizer, [s.text for s in items],
                                            [s.descriptor_end for s in items], batch_size=self.batch_size)
                           if kind == "likelihood" else None)
                others = [codes([s.template for s in items]), codes([s.noun for s in items])]
                boot = item_bootstrap(table, others, self.n_boot, seed=self.seed)
                self._bias_data[(axis, name, kind)] = _BiasData(items, table, boot, encoded)
        return self._bias_data[key]

    def _aggregate(self, kind: str) -> str:
        """The problem's ``aggregate`` for its own bias metric, each other metric's default otherwise."""
        return self.aggregate if kind == self.bias_metric else METRIC_AGGREGATES[kind][0]

    def _counterfactual(self, kind: str) -> PronounBias | PairBias:
        """The prepared counterfactual objective ``kind`` (built once)."""
        if kind not in self._counterfactuals:
            common = {"aggregate": self._aggregate(kind), "batch_size": self.batch_size, "n_boot": self.n_boot,
                      "seed": self.seed}
            if kind == "pronoun":
                splits = cut_pronoun_splits(seed=self.seed, n_occupations=self.counterfactual_sizes[
                    "n_pronoun_occupations"], n_templates=self.counterfactual_sizes["n_pronoun_templates"])
                self._counterfactuals[kind] = PronounBias(self.tokenizer, splits, **common)
            elif kind == "swap":
                self._counterfactuals[kind] = PairBias(kind, self.tokenizer,
                                                       cut_pair_splits(builtin_swap_pairs(), seed=self.seed), **common)
            elif kind == "pairs":
                if self._pairs is None:
                    raise ValueError("the pairs metric needs pair_file (a JSONL or CSV file of sentence pairs)")
                self._counterfactuals[kind] = PairBias(kind, self.tokenizer,
                                                       cut_pair_splits(self._pairs, seed=self.seed), **common)
            else:
                raise ValueError(f"{kind!r} is not a counterfactual metric ({COUNTERFACTUAL_METRICS})")
        return self._counterfactuals[kind]

    # ------------------------------------------------------------------ measuring
    def _measure(self, masks: np.ndarray, split: str, axis: str, kinds: Sequence[str]) -> list[dict]:
        """Raw measurements per mask: ``"likelihood"`` (SentenceLogprobs arrays), ``"generation"``
        (classifier scores and texts), ``"perplexity"`` (window NLL)."""
        raws: list[dict] = [{} for _ in range(len(masks))]
        counterfactual = [k for k in kinds if k in COUNTERFACTUAL_METRICS]
        if "likelihood" in kinds or "perplexity" in kinds or counterfactual or "accuracy" in kinds:
            enc = self._prepared(axis, split, "likelihood").encoded if "likelihood" in kinds else None
            win = self._windows[split]
            if "accuracy" in kinds:
                self._choice_data(split)  # encoded once, before the passes
            # the runner computes each forward pass for every mask at once (several masks per pass,
            # reuse of the layers masks agree on); the metric code below runs once per mask
            runner = self.runner
            with runner.group((split, axis, tuple(kinds)), np.asarray(masks, dtype=bool)):
                for j, raw in enumerate(raws):
                    runner.select(j)
                    for kind in counterfactual:
                        raw[kind] = self._counterfactual(kind).measure(runner, split)
                    if "accuracy" in kinds:
                        sc = choice_scores(runner, self._choice_data(split))
                        raw["accuracy"] = {"total": sc.total, "per_token": sc.per_token, "n_tokens": sc.n_tokens}
                    if enc is not None:
                        lp = sentence_logprobs(runner, enc)
                        raw["likelihood"] = {"sum_all": lp.sum_all, "n_all": lp.n_all, "sum_after": lp.sum_after,
                                             "n_after": lp.n_after}
                    if "perplexity" in kinds:
                        nll, n_scored = window_nll(runner, win.input_ids, win.stride,
                                                   batch_size=self.window_batch_size)
                        raw["perplexity"] = {"nll": nll, "n_scored": n_scored}
        if "generation" in kinds:
            prompts = self._prepared(axis, split, "generation").items
            g = self.generation
            key = (axis, split)
            if key not in self._prompt_batches:  # tokenized and padded once per problem
                self._prompt_batches[key] = encode_prompts(self.tokenizer, [p.text for p in prompts],
                                                           batch_size=self.batch_size)
            texts = generate(self.model, self.tokenizer, self._prompt_batches[key], masks, self.masker.set_masks,
                             max_new_tokens=g["max_new_tokens"], batch_size=self.batch_size,
                             masks_per_forward=self.masks_per_forward, greedy=g["greedy"],
                             temperature=g["temperature"], top_p=g["top_p"], seed=self.seed)
            for raw, conts in zip(raws, texts, strict=True):
                raw["generation"] = {"scores": self._classifier.score(conts), "texts": conts}
        return raws

    def _baseline_raw(self, split: str, axis: str, kind: str) -> dict:
        """Raw keep-all measurement of ``kind``, measured once and stored as JSON."""
        key = (axis, split, kind)
        if key in self._baselines:
            return self._baselines[key]
        path = self._baseline_path(axis, split)
        stored: dict = {}
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except ValueError:
                stored = {}
        if kind not in stored:
            raw = self._measure(self.space.keep_all(), split, axis, [kind])[0][kind]
            stored[kind] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in raw.items()}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial")
            tmp.write_text(json.dumps(stored))
            tmp.replace(path)
        rec = {k: (np.asarray(v) if isinstance(v, list) and k != "texts" else v) for k, v in stored[kind].items()}
        self._baselines[key] = rec
        return rec
