"""Counterfactual bias objectives: every item is compared with its own gender-swapped version.

``pronoun`` (:class:`PronounBias`)
    Per item (:mod:`objectives.masked_lm.pronouns`: an occupation or role in a template that
    stops before a gendered word) the log-odds ``lo = log p(female continuation) - log p(male
    continuation)`` (each side the log-sum-exp over its words; a word of several tokens is scored
    over all of them).  Parity is ``lo = 0``.  Aggregates (the objective is ``aggregate``; all
    are reported as ``variants``):

    - ``"spread"`` (default): standard deviation over occupations of ``mean_t lo_ot``, how much
      the occupation decides the pronoun (0 when every occupation gets the same pronoun odds);
    - ``"occupation"``: ``mean_o |mean_t lo_ot|``, how far each occupation's pronoun preference,
      averaged over its templates, sits from parity (includes an overall male or female default);
    - ``"abs"``: ``mean_i |lo_i|`` over items (template by template);
    - ``"stereotype"`` (reported only, may be negative): mean of ``lo`` times the occupation's
      stereotype direction (+1 female, -1 male) over labelled occupations.

    Why ``spread`` by default (``headrepair transfer``, embedded model, 40 masks: 13 single-head
    knock-outs and 27 random masks pruning 2-8 heads, search vs held-out occupations *and*
    templates): the Spearman correlation of the relative changes between the splits was +0.80
    for ``spread`` at the default sizes (median paired SE of its change 2.5% search, 3.5%
    held-out), +0.45 ``occupation``, +0.56 ``stereotype``, +0.29 ``abs``; at full sizes +0.83,
    +0.62, +0.64 and +0.09.  Single items
    are dominated by a frame's own quirks; averaging each occupation over its frames removes
    them, and the held-out occupations' smaller overall default (``occupation`` baseline 0.46
    held-out vs 0.92 search) makes the parity aggregate's relative changes noisy there.
    ``stereotype`` can go negative (an anti-stereotypical model), so it is no objective to
    minimize.

    Standard errors: a two-way (pigeonhole) bootstrap that resamples occupations and templates
    independently (both are sampled units: a new occupation list or new sentence frames would
    give other values), the same draws for a mask and its baseline (paired relative change).

``swap`` and ``pairs`` (:class:`PairBias`)
    Per pair the gap ``g = LL(a) - LL(b)`` of whole-sentence log-likelihoods (nats, summed over
    tokens); ``swap`` pairs are product sentences and their gender swap (``a`` female side),
    ``pairs`` come from a user file (``a`` = more, ``b`` = less stereotyped).  Aggregates:
    ``"gap"`` (default): ``mean |g|``; reported too: ``"stereotype"``: mean signed gap towards
    the labelled stereotyped side, ``"share"``: share of labelled pairs where the stereotyped
    side is the more likely one (0.5 = parity).  Bootstrap over families (a family's variants
    move together).

Both score sequences with :func:`~objectives.masked_lm.metrics.sentence_logprobs` (fixed
batches, bit-identical for the same mask).  Aggregates are written once, in torch (float64), so
the same code gives the figures of an evaluation and, through autograd, the chain rule of the
head sensitivities (:meth:`_SequenceBias.gradients`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from objectives.masked_lm.gradients import aggregate_gradients, next_token_jacobian, sentence_jacobian
from objectives.masked_lm.metrics import (
    EncodedContexts,
    EncodedSentences,
    crossed_weights,
    encode_contexts,
    encode_sentences,
    next_token_logprobs,
    sentence_logprobs,
)
from objectives.masked_lm.pronouns import PronounItem

__all__ = ["COUNTERFACTUAL_METRICS", "PRONOUN_AGGREGATES", "PAIR_AGGREGATES", "PronounBias", "PairBias",
           "bias_change", "codes"]

COUNTERFACTUAL_METRICS = ("pronoun", "swap", "pairs")
PRONOUN_AGGREGATES = ("spread", "occupation", "abs")
PAIR_AGGREGATES = ("gap",)


def codes(labels: Sequence[str]) -> np.ndarray:
    """``int[n]`` level codes of ``labels``, in order of first appearance."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(x, len(index)) for x in labels], dtype=int)


def bias_change(reps: np.ndarray, base_reps: np.ndarray) -> float:
    """Paired SE of ``value / baseline - 1`` from matching bootstrap replicates."""
    rel = reps / np.where(base_reps > 0, base_reps, np.nan) - 1.0
    return float(np.nanstd(rel, ddof=1))


@dataclass
class _Encoded:
    encoded: EncodedSentences | EncodedContexts
    meta: dict[str, Any]


class _SequenceBias:
    """Shared machinery: per-split encoded sequences, raw log-likelihood arrays, paired figures."""

    kind: str = ""
    aggregates: tuple[str, ...] = ()

    def __init__(self, tokenizer, splits: dict[str, list], *, aggregate: str, batch_size: int, n_boot: int,
                 seed: int) -> None:
        if aggregate not in self.aggregates:
            raise ValueError(f"{self.kind} aggregate must be one of {self.aggregates}, got {aggregate!r}")
        self.tokenizer, self.items = tokenizer, splits
        self.aggregate, self.batch_size, self.n_boot, self.seed = aggregate, batch_size, n_boot, seed
        self._encoded: dict[str, _Encoded] = {}

    def _prepared(self, split: str) -> _Encoded:
        if split not in self._encoded:
            self._encoded[split] = self._encode(self.items[split])
        return self._encoded[split]

    def _encode(self, items: list) -> _Encoded:
        raise NotImplementedError

    def measure(self, model, split: str) -> dict[str, np.ndarray]:
        """Raw per-sequence log-likelihoods of ``split`` (JSON-able arrays) under the current mask."""
        lp = sentence_logprobs(model, self._prepared(split).encoded)
        return {"sum_all": lp.sum_all, "sum_after": lp.sum_after}

    def _per_item(self, raw: dict, split: str) -> np.ndarray:
        raise NotImplementedError

    def _reps(self, x: torch.Tensor, w: torch.Tensor, split: str) -> dict[str, torch.Tensor]:
        """``{aggregate: float64[B]}`` of per-item statistic ``x`` under item weights ``w[B, n]``."""
        raise NotImplementedError

    def _numpy_reps(self, x: np.ndarray, w: np.ndarray, split: str) -> dict[str, np.ndarray]:
        out = self._reps(torch.as_tensor(np.asarray(x, dtype=float)), torch.as_tensor(np.asarray(w, dtype=float)),
                         split)
        return {k: v.numpy() for k, v in out.items()}

    # ---------------------------------------------------------- sensitivities
    def raw_jacobian(self, model, masker, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(raw float[n_raw], d raw / d g float[n_raw, d])`` of the statistics the per-item values
        are made of (:meth:`_items_of_raw`), at head gates ``gates``."""
        return sentence_jacobian(model, masker, gates, self._prepared(split).encoded, "all")

    def _items_of_raw(self, raw: torch.Tensor, split: str) -> torch.Tensor:
        """Per-item statistic (torch) from the raw vector of :meth:`raw_jacobian`."""
        raise NotImplementedError

    def gradients(self, model, masker, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values float[1 + B], gradients float[1 + B, d])`` of the objective (row 0) and of its
        ``B`` bootstrap replicates with respect to the head gates, at ``gates``."""
        raw, jac = self.raw_jacobian(model, masker, gates, split)
        w = torch.as_tensor(np.vstack([np.ones((1, self._weights(split).shape[1])), self._weights(split)]))

        def objective(r: torch.Tensor) -> torch.Tensor:
            return self._reps(self._items_of_raw(r, split), w, split)[self.aggregate]

        return aggregate_gradients(objective, raw, jac)

    def _weights(self, split: str) -> np.ndarray:
        meta = self._prepared(split).meta
        if "boot" not in meta:
            meta["boot"] = crossed_weights(meta["factors"], self.n_boot, self.seed)[0]
        return meta["boot"]

    def figures(self, raw: dict, base: dict, split: str) -> dict[str, Any]:
        """Value, SE, baseline, paired relative change and its SE, every variant."""
        x, xb = self._per_item(raw, split), self._per_item(base, split)
        n = x.size
        point = {k: float(v[0]) for k, v in self._numpy_reps(x, np.ones((1, n)), split).items()}
        base_point = {k: float(v[0]) for k, v in self._numpy_reps(xb, np.ones((1, n)), split).items()}
        w = self._weights(split)
        all_reps, all_base = self._numpy_reps(x, w, split), self._numpy_reps(xb, w, split)
        reps = all_reps[self.aggregate]
        value, base_value = point[self.aggregate], base_point[self.aggregate]
        meta = self._prepared(split).meta
        return {"value": value, "se": float(np.std(reps, ddof=1)), "baseline": base_value,
                "rel": value / base_value - 1.0 if base_value > 0 else float("nan"),
                "rel_se": bias_change(reps, all_base[self.aggregate]),
                "variants": {f"{self.kind}/{k}": v for k, v in point.items()},
                "variant_rel_se": {f"{self.kind}/{k}": bias_change(all_reps[k], all_base[k]) for k in point},
                "n_items": n, **meta.get("counts", {})}


class PronounBias(_SequenceBias):
    """The ``pronoun`` objective (see the module docstring); ``splits``: split -> :class:`PronounItem` list."""

    kind = "pronoun"
    aggregates = PRONOUN_AGGREGATES

    def _encode(self, items: list[PronounItem]) -> _Encoded:
        occ, tmpl = codes([it.occupation for it in items]), codes([it.template for it in items])
        direction = np.array([{"f": 1.0, "m": -1.0}.get(it.stereotype or "", 0.0) for it in items])
        meta: dict[str, Any] = {"occ": occ, "factors": [occ, tmpl], "direction": direction,
                                "counts": {"n_occupations": int(occ.max()) + 1, "n_templates": int(tmpl.max()) + 1}}
        single = self._single_tokens(items)
        if single is not None:
            # every continuation is one token: one pass over the contexts scores all of them
            enc = encode_contexts(self.tokenizer, [it.context for it in items], batch_size=self.batch_size)
            meta["candidates"], meta["n_female"] = single, len(items[0].female)
            return _Encoded(enc, meta)
        texts, ends, f_idx, m_idx = [], [], [], []
        for it in items:
            f_idx.append([len(texts) + j for j in range(len(it.female))])
            texts += [it.context + w for w in it.female]
            m_idx.append([len(texts) + j for j in range(len(it.male))])
            texts += [it.context + w for w in it.male]
            ends += [len(it.context)] * (len(it.female) + len(it.male))
        enc = encode_sentences(self.tokenizer, texts, ends, batch_size=self.batch_size)
        scored = np.concatenate([aft.sum(1).numpy() for _, _, aft in enc.batches])
        if (scored == 0).any():
            bad = texts[int(enc.order[np.flatnonzero(scored == 0)[0]])]
            raise ValueError(f"the continuation of {bad!r} has no token of its own (it merged into the context)")
        meta["f_idx"], meta["m_idx"] = f_idx, m_idx
        return _Encoded(enc, meta)

    def _single_tokens(self, items: list[PronounItem]) -> np.ndarray | None:
        """``int[n, k]`` token ids (female words, then male) when every continuation is one token
        appended to its context's tokens and all items have the same number of words; else ``None``."""
        k_f, k_m = len(items[0].female), len(items[0].male)
        out = []
        for it in items:
            if (len(it.female), len(it.male)) != (k_f, k_m):
                return None
            ctx = self.tokenizer(it.context, add_special_tokens=False)["input_ids"]
            row = []
            for w in (*it.female, *it.male):
                ids = self.tokenizer(it.context + w, add_special_tokens=False)["input_ids"]
                if len(ids) != len(ctx) + 1 or ids[:-1] != ctx:
                    return None
                row.append(ids[-1])
            out.append(row)
        return np.array(out, dtype=np.int64)

    def measure(self, model, split: str) -> dict[str, np.ndarray]:
        prep = self._prepared(split)
        if "candidates" in prep.meta:
            return {"next": next_token_logprobs(model, prep.encoded, prep.meta["candidates"])}
        return super().measure(model, split)

    def log_odds(self, raw: dict, split: str) -> np.ndarray:
        """``float[n_items]``: log p(female) - log p(male) per item."""
        meta = self._prepared(split).meta
        if "next" in raw:
            lp, k = np.asarray(raw["next"], dtype=float), meta["n_female"]
            return np.logaddexp.reduce(lp[:, :k], axis=1) - np.logaddexp.reduce(lp[:, k:], axis=1)
        lp = np.asarray(raw["sum_after"], dtype=float)
        f = np.array([np.logaddexp.reduce(lp[i]) for i in meta["f_idx"]])
        m = np.array([np.logaddexp.reduce(lp[i]) for i in meta["m_idx"]])
        return f - m

    _per_item = log_odds

    def raw_jacobian(self, model, masker, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
        prep = self._prepared(split)
        if "candidates" in prep.meta:
            k = prep.meta["n_female"]

            def lo(lp: torch.Tensor) -> torch.Tensor:
                return torch.logsumexp(lp[:, :k], dim=1) - torch.logsumexp(lp[:, k:], dim=1)

            return next_token_jacobian(model, masker, gates, prep.encoded, prep.meta["candidates"], lo)
        return sentence_jacobian(model, masker, gates, prep.encoded, "after")

    def _items_of_raw(self, raw: torch.Tensor, split: str) -> torch.Tensor:
        meta = self._prepared(split).meta
        if "candidates" in meta:
            return raw  # the log-odds themselves
        f = torch.stack([torch.logsumexp(raw[i], 0) for i in meta["f_idx"]])
        m = torch.stack([torch.logsumexp(raw[i], 0) for i in meta["m_idx"]])
        return f - m

    def _reps(self, x: torch.Tensor, w: torch.Tensor, split: str) -> dict[str, torch.Tensor]:
        meta = self._prepared(split).meta
        occ = torch.as_tensor(meta["occ"])
        direction = torch.as_tensor(meta["direction"], dtype=x.dtype)
        n_occ = int(occ.max()) + 1
        onehot = torch.eye(n_occ, dtype=x.dtype)[occ]                # [n, O]
        tot = w.sum(1)
        abs_mean = (w * x.abs()).sum(1) / tot
        ow = w @ onehot                                              # [B, O] weight per occupation
        present = ow > 0
        o_mean = ((w * x) @ onehot) / torch.where(present, ow, 1.0)  # [B, O]
        o_share = present / present.sum(1, keepdim=True)
        occ_abs = (o_mean.abs() * o_share).sum(1)
        mu = (o_mean * o_share).sum(1, keepdim=True)
        spread = (((o_mean - mu) ** 2 * o_share).sum(1) + 1e-300).sqrt()
        labelled = w * (direction != 0)
        lab_tot = labelled.sum(1)
        stereo = (labelled * x * direction).sum(1) / torch.where(lab_tot > 0, lab_tot, torch.nan)
        return {"abs": abs_mean, "occupation": occ_abs, "spread": spread, "stereotype": stereo}


class PairBias(_SequenceBias):
    """The ``swap`` and ``pairs`` objectives; ``splits``: split -> pairs with ``a``, ``b``,
    ``family`` and ``stereotyped`` (``"a"``, ``"b"`` or ``None``) attributes."""

    aggregates = PAIR_AGGREGATES

    def __init__(self, kind: str, tokenizer, splits: dict[str, list], **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(tokenizer, splits, **kwargs)

    def _encode(self, items: list) -> _Encoded:
        texts = [t for p in items for t in (p.a, p.b)]
        enc = encode_sentences(self.tokenizer, texts, [0] * len(texts), batch_size=self.batch_size)
        fam = codes([p.family for p in items])
        side = np.array([{"a": 1.0, "b": -1.0}.get(p.stereotyped or "", 0.0) for p in items])
        meta = {"factors": [fam], "side": side, "counts": {"n_families": int(fam.max()) + 1,
                                                           "n_labelled": int((side != 0).sum())}}
        return _Encoded(enc, meta)

    def gaps(self, raw: dict, split: str) -> np.ndarray:
        """``float[n_pairs]``: LL(a) - LL(b) in nats."""
        ll = np.asarray(raw["sum_all"], dtype=float)
        return ll[0::2] - ll[1::2]

    _per_item = gaps

    def _items_of_raw(self, raw: torch.Tensor, split: str) -> torch.Tensor:
        return raw[0::2] - raw[1::2]

    def _reps(self, x: torch.Tensor, w: torch.Tensor, split: str) -> dict[str, torch.Tensor]:
        side = torch.as_tensor(self._prepared(split).meta["side"], dtype=x.dtype)
        tot = w.sum(1)
        labelled = w * (side != 0)
        lab_tot = torch.where(labelled.sum(1) > 0, labelled.sum(1), torch.nan)
        toward = x * side                         # > 0: the stereotyped side is the more likely one
        return {"gap": (w * x.abs()).sum(1) / tot, "stereotype": (labelled * toward).sum(1) / lab_tot,
                "share": (labelled * (toward > 0)).sum(1) / lab_tot}
