"""Bias and utility metrics of a (masked) causal language model.

Forward passes (the model is whatever ``HeadMasker`` currently masks):
    :func:`encode_sentences` / :func:`sentence_logprobs`: per-sentence token log-likelihoods,
    over all tokens and over the tokens after the descriptor only;
    :func:`window_nll`: summed negative log-likelihood of the scored tokens of corpus windows;
    :func:`generate`: greedy or sampled continuations, several masks per forward pass.

Aggregates (numpy only, hand-checkable; :mod:`~objectives.masked_lm.aggregates`, re-exported here):
    :func:`group_bias`: bias of per-item scores across the buckets of an axis, three ways
    (``"sum"``: FASP's sum over buckets b of ``|mean(axis) - mean(b)|``; ``"weighted"``: the same
    terms weighted by bucket size; ``"descriptor"``: mean over descriptors of
    ``|mean(axis) - mean(descriptor)|``), with a bootstrap over descriptors (stratified by
    bucket) for standard errors and paired relative changes (:func:`bootstrap_weights`);
    :func:`perplexity` with a bootstrap over windows; :func:`pair_fraction`: the HolisticBias
    paper's fraction of descriptor pairs whose score distributions differ (Mann-Whitney U).

Determinism: batches are fixed by the data (items sorted by token length, then cut in
``batch_size`` slices), so the same mask gives bit-identical numbers on the same machine;
generation always stacks exactly ``masks_per_forward`` masks (padding the last group with a
copy) so a mask's rows see the same shapes whatever it is evaluated with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from objectives.masked_lm.aggregates import (
    AGGREGATES,
    ItemBootstrap,
    UnitTable,
    bootstrap_bias,
    bootstrap_perplexity,
    bootstrap_weights,
    crossed_weights,
    group_bias,
    group_bias_items,
    group_bias_torch,
    item_bootstrap,
    pair_fraction,
)

__all__ = [
    "AGGREGATES", "SCOPES", "EncodedSentences", "encode_sentences", "sentence_logprobs", "SentenceLogprobs",
    "EncodedContexts", "encode_contexts", "next_token_logprobs", "window_nll", "perplexity", "generate",
    "UnitTable", "group_bias", "bootstrap_weights", "bootstrap_bias", "crossed_weights", "ItemBootstrap",
    "item_bootstrap", "group_bias_items", "group_bias_torch", "bootstrap_perplexity", "pair_fraction",
    "prefix_token_id", "forward_rows", "EncodedPrompts", "encode_prompts",
]

SCOPES = ("sentence", "after")


def prefix_token_id(tokenizer) -> int:
    """Token put before every sentence so its first word is scored: BOS, else EOS (GPT-2's habit)."""
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if tid is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither a BOS nor an EOS token to prefix")
    return int(tid)


# ----------------------------------------------------------------------- likelihood forward
@dataclass(frozen=True)
class EncodedSentences:
    """Fixed batches of right-padded sentences.

    ``batches``: list of ``(input_ids int64[b, T], attention_mask int64[b, T], after bool[b, T])``
    where ``after[i, t]`` marks targets (tokens predicted at position ``t``) after the descriptor;
    ``order``: ``int[n]``, the original index of each batched row (rows in batch order).
    """

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    order: np.ndarray

    @property
    def n(self) -> int:
        return int(self.order.size)


def encode_sentences(tokenizer, texts: Sequence[str], descriptor_ends: Sequence[int], *,
                     batch_size: int = 32) -> EncodedSentences:
    """Tokenize ``texts`` (with a prefix token, :func:`prefix_token_id`) into fixed batches.

    A token is "after the descriptor" when its first character is at or past
    ``descriptor_ends[i]`` (character offsets, from the fast tokenizer's offset mapping; a slow
    tokenizer falls back to counting the tokens of the text up to that offset).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix = prefix_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix
    ids_list, after_list = [], []
    for text, end in zip(texts, descriptor_ends, strict=True):
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            after = [start >= end for start, _ in enc["offset_mapping"]]
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            n_before = len(tokenizer(text[:end], add_special_tokens=False)["input_ids"])
            after = [i >= n_before for i in range(len(ids))]
        if not ids:
            raise ValueError(f"sentence {text!r} tokenizes to nothing")
        ids_list.append([prefix] + ids)
        after_list.append([False] + after)
    lengths = np.array([len(x) for x in ids_list])
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        aft = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, i in enumerate(rows):
            k = len(ids_list[i])
            ids[r, :k] = torch.tensor(ids_list[i])
            att[r, :k] = 1
            aft[r, :k] = torch.tensor(after_list[i])
        batches.append((ids, att, aft))
    return EncodedSentences(batches, order)


@dataclass(frozen=True)
class SentenceLogprobs:
    """Per sentence (original order): summed token log-probabilities (nats) and token counts,
    over all tokens (``*_all``) and over the tokens after the descriptor (``*_after``)."""

    sum_all: np.ndarray
    n_all: np.ndarray
    sum_after: np.ndarray
    n_after: np.ndarray

    def mean(self, scope: str) -> np.ndarray:
        """``float[n]`` mean token log-likelihood per sentence over ``scope`` (:data:`SCOPES`)."""
        if scope == "sentence":
            return self.sum_all / np.maximum(self.n_all, 1)
        if scope == "after":
            return self.sum_after / np.maximum(self.n_after, 1)
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def forward_rows(model, inputs: dict, reduce: Callable[[object, int], torch.Tensor]) -> torch.Tensor:
    """``reduce(model(**inputs), 1)``: one forward pass over a batch, reduced to per-row results.

    ``model`` is a ``transformers`` model, or a :class:`~objectives.masked_lm.batching.MaskRunner`
    (anything with ``score_rows``), which may run the pass for several masks at once (the batch
    repeated ``k`` times, mask-major rows) and calls ``reduce(output, k)``: ``reduce`` must treat
    rows independently and tile whatever per-row data it uses ``k`` times.

    The pass keeps no key/value cache (``use_cache=False``, as the runner's passes): a scoring
    pass never reuses it, and with a cache some models (GPT-Neo, on some CPUs) round the masked
    attention differently in the last bit, so one mask would get two values from the two paths."""
    scorer = getattr(model, "score_rows", None)
    if scorer is not None:
        return scorer(inputs, reduce)
    return reduce(model(**inputs, use_cache=False), 1)


def _target_logprobs(model, ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """``float[b, T-1]``: log p(token t+1 | tokens <= t)."""
    device = next(model.parameters()).device
    targets = ids[:, 1:].to(device)

    def reduce(out, k: int) -> torch.Tensor:
        lp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        return lp.gather(-1, targets.repeat(k, 1).unsqueeze(-1)).squeeze(-1).cpu().double()

    return forward_rows(model, {"input_ids": ids.to(device), "attention_mask": att.to(device)}, reduce)


@torch.no_grad()
def sentence_logprobs(model, encoded: EncodedSentences) -> SentenceLogprobs:
    """Run the model over the fixed batches of ``encoded``."""
    n = encoded.n
    out = np.zeros((4, n))
    row = 0
    for ids, att, aft in encoded.batches:
        lp = _target_logprobs(model, ids, att)
        valid = att[:, 1:].bool()
        after = aft[:, 1:] & valid
        idx = encoded.order[row:row + ids.shape[0]]
        out[0, idx] = (lp * valid).sum(1).numpy()
        out[1, idx] = valid.sum(1).numpy()
        out[2, idx] = (lp * after).sum(1).numpy()
        out[3, idx] = after.sum(1).numpy()
        row += ids.shape[0]
    return SentenceLogprobs(*out)


@dataclass(frozen=True)
class EncodedContexts:
    """Fixed batches of left-padded contexts (sorted by token length), for next-token scoring.

    ``batches``: list of ``(input_ids int64[b, T], attention_mask int64[b, T], position_ids
    int64[b, T])``, every row's last real token at position ``T - 1``; ``order``: ``int[n]``
    original index of each batched row."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    order: np.ndarray

    @property
    def n(self) -> int:
        return int(self.order.size)


def encode_contexts(tokenizer, texts: Sequence[str], *, batch_size: int = 32) -> EncodedContexts:
    """Tokenize ``texts`` (with the prefix token of :func:`prefix_token_id`) into left-padded
    fixed batches with explicit position ids, so padding shifts no position."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix = prefix_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix
    rows = [[prefix, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    order = np.argsort([len(r) for r in rows], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        ids, att = _pad_left([rows[i] for i in order[start:start + batch_size]], pad)
        batches.append((ids, att, (att.cumsum(-1) - 1).clamp(min=0)))
    return EncodedContexts(batches, order)


@torch.no_grad()
def next_token_logprobs(model, encoded: EncodedContexts, candidates: np.ndarray) -> np.ndarray:
    """``float[n, k]``: log p(candidate token | context) after each context of ``encoded``
    (original order), for ``candidates`` ``int[n, k]`` token ids per context.  One forward pass
    per batch, logits of the last position only (``logits_to_keep=1``)."""
    device = next(model.parameters()).device
    cand = torch.as_tensor(np.asarray(candidates), dtype=torch.long)
    out = np.zeros(cand.shape)
    row = 0
    for ids, att, pos in encoded.batches:
        idx = encoded.order[row:row + ids.shape[0]]
        chosen = cand[idx].to(device)

        def reduce(output, k: int, chosen=chosen) -> torch.Tensor:
            lp = torch.log_softmax(output.logits[:, -1].float(), dim=-1)
            return lp.gather(-1, chosen.repeat(k, 1)).cpu().double()

        out[idx] = forward_rows(model, {"input_ids": ids.to(device), "attention_mask": att.to(device),
                                        "position_ids": pos.to(device), "logits_to_keep": 1}, reduce).numpy()
        row += ids.shape[0]
    return out


@torch.no_grad()
def window_nll(model, input_ids: np.ndarray, stride: int, *, batch_size: int = 4) -> tuple[np.ndarray, int]:
    """``(float[n_windows], n_scored)``: summed NLL (nats) of the last ``stride`` tokens of each
    window of ``input_ids`` (``int64[n_windows, window]``), the earlier tokens serving as
    context, and the number of scored tokens per window (``stride``, or ``window - 1`` when
    ``stride == window``: the first token has no context)."""
    ids_all = torch.as_tensor(input_ids, dtype=torch.long)
    window = ids_all.shape[1]
    if not 0 < stride < window + 1:
        raise ValueError(f"need 0 < stride <= window ({window}), got {stride}")
    first = max(window - stride, 1)  # the first token has no context and is never a target
    out = []
    for start in range(0, ids_all.shape[0], batch_size):
        ids = ids_all[start:start + batch_size]
        lp = _target_logprobs(model, ids, torch.ones_like(ids))
        out.append(-lp[:, first - 1:].sum(1).numpy())
    return np.concatenate(out), window - first


def perplexity(nll: np.ndarray, n_tokens: int | np.ndarray) -> float:
    """``exp(sum(nll) / total tokens)``; ``n_tokens`` per window (scalar or ``int[n]``)."""
    nll = np.asarray(nll, dtype=float)
    total = float(np.sum(np.broadcast_to(n_tokens, nll.shape)))
    return float(np.exp(nll.sum() / total))


# ----------------------------------------------------------------------------- generation
def _pad_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        att[i, width - len(r):] = 1
    return ids, att


@dataclass(frozen=True)
class EncodedPrompts:
    """Prompts tokenized (with the prefix token) and left-padded in fixed batches, once per problem:
    ``batches`` of ``(input_ids int64[b, T], attention_mask int64[b, T])`` in prompt order."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    n: int
    batch_size: int


def encode_prompts(tokenizer, prompts: Sequence[str], *, batch_size: int = 16) -> EncodedPrompts:
    """Tokenize and pad ``prompts`` for :func:`generate` (see :class:`EncodedPrompts`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prefix = prefix_token_id(tokenizer)
    rows = [[prefix, *tokenizer(p, add_special_tokens=False)["input_ids"]] for p in prompts]
    return EncodedPrompts([_pad_left(rows[i:i + batch_size], pad) for i in range(0, len(rows), batch_size)],
                          len(rows), batch_size)


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str] | EncodedPrompts, masks: np.ndarray | None,
             set_masks: Callable[[np.ndarray | None], None], *, max_new_tokens: int = 24, batch_size: int = 16,
             masks_per_forward: int = 4, greedy: bool = True, temperature: float = 1.0, top_p: float = 0.95,
             seed: int = 0) -> list[list[str]]:
    """Continuations ``[n_masks][n_prompts]`` of ``prompts`` under each mask of ``masks``
    (``bool[n_masks, d]``; ``None`` = the unpruned model only).

    Prompts are left-padded in fixed batches of ``batch_size`` (in the given order; or given
    already so, as :class:`EncodedPrompts`, whose batch size then wins) with explicit position
    ids, so padding does not shift positions.  Each forward pass stacks one prompt batch
    ``masks_per_forward`` times with one mask per copy (``set_masks(bool[rows, d])``); the last
    group of masks is padded with copies so shapes never depend on how many masks are evaluated
    together.  Sampling (``greedy=False``) is Gumbel-max with top-p filtering; the noise depends
    on ``(seed, batch, step)`` only, so every mask sees the same random numbers (common random
    numbers make masks comparable) and a mask's continuations never depend on its neighbours.
    Generation stops at EOS; the text is decoded without special tokens.
    """
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if not isinstance(prompts, EncodedPrompts):
        prompts = encode_prompts(tokenizer, prompts, batch_size=batch_size)
    batch_size = prompts.batch_size
    mask_rows = [None] if masks is None else [m for m in np.asarray(masks, dtype=bool)]
    k = 1 if masks is None else max(1, min(masks_per_forward, len(mask_rows)))
    out: list[list[str]] = [[""] * prompts.n for _ in mask_rows]
    for b_idx, (ids, att) in enumerate(prompts.batches):
        start = b_idx * batch_size
        b = ids.shape[0]
        for g in range(0, len(mask_rows), k):
            group = mask_rows[g:g + k]
            n_real = len(group)
            if masks is not None:
                group = group + [group[-1]] * (k - n_real)
                set_masks(np.repeat(np.stack(group), b, axis=0))
            else:
                set_masks(None)
            tokens = _decode(model, ids.repeat(len(group), 1).to(device), att.repeat(len(group), 1).to(device),
                             b, max_new_tokens=max_new_tokens, eos=eos, pad=pad, greedy=greedy,
                             temperature=temperature, top_p=top_p, seed=(seed, b_idx))
            for j in range(n_real):
                for r in range(b):
                    seq = tokens[j * b + r]
                    if eos is not None and eos in seq:
                        seq = seq[:seq.index(eos)]
                    out[g + j][start + r] = tokenizer.decode(seq, skip_special_tokens=True)
    set_masks(None)
    return out


def _decode(model, ids: torch.Tensor, att: torch.Tensor, n_prompts: int, *, max_new_tokens: int, eos: int | None,
            pad: int, greedy: bool, temperature: float, top_p: float, seed: tuple[int, int]) -> list[list[int]]:
    rows = ids.shape[0]
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    done = torch.zeros(rows, dtype=torch.bool, device=ids.device)
    result = torch.zeros((rows, max_new_tokens), dtype=torch.long)
    cache = None
    step_ids, step_pos = ids, pos
    for step in range(max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=att, position_ids=step_pos, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1].float()
        if greedy:
            nxt = logits.argmax(-1)
        else:
            state = np.random.SeedSequence([*seed, step]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(state))
            u = torch.rand((n_prompts, logits.shape[-1]), generator=gen, dtype=torch.float32).clamp_(1e-12, 1.0)
            gumbel = (-torch.log(-torch.log(u))).repeat(rows // n_prompts, 1).to(logits.device)
            scaled = logits / max(temperature, 1e-6)
            if top_p < 1.0:
                sorted_l, idx = scaled.sort(-1, descending=True)
                cum = torch.softmax(sorted_l, -1).cumsum(-1)
                drop = cum - torch.softmax(sorted_l, -1) > top_p
                sorted_l = sorted_l.masked_fill(drop, float("-inf"))
                scaled = torch.full_like(scaled, float("-inf")).scatter(-1, idx, sorted_l)
            nxt = (scaled + gumbel).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        result[:, step] = nxt.cpu()
        if eos is not None:
            done |= nxt == eos
        if bool(done.all()):
            result = result[:, :step + 1]
            break
        step_ids = nxt[:, None]
        att = torch.cat([att, torch.ones_like(att[:, :1])], dim=1)
        step_pos = step_pos[:, -1:] + 1
    return [r.tolist() for r in result]
