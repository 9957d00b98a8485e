"""Per-item Jacobians with respect to continuous head gates: every head's first-order effect.

The metrics of :mod:`.metrics` reduce per-item statistics (a sentence's log-likelihood, a
pronoun's log-odds, a window's NLL) to an objective.  Here the same forward passes run under
per-row gates (:meth:`~objectives.masked_lm.masking.HeadMasker.gated`): row ``i`` of a batch has
its own gate vector, so one backward pass of the batch's summed statistic gives every row's
own gradient ``d stat_i / d g`` (rows do not interact in a causal LM forward).  The objective's
gradient then follows by the chain rule through its aggregate (:func:`aggregate_gradients`),
for the point value and for every bootstrap replicate (standard errors of the estimates).

Cost: one forward and one backward pass per batch, with the model's parameters frozen (no
weight gradients) and logits kept only where a statistic reads them (the scored positions of
a window, the last position of a next-token context).  Batches are the metrics' own fixed
batches, so nothing but one batch's graph is ever held (a whole sentence set's graph with
full-vocabulary logits would not fit in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.metrics import EncodedContexts, EncodedSentences

__all__ = ["frozen_parameters", "window_nll_jacobian", "next_token_jacobian", "sentence_jacobian",
           "aggregate_gradients"]


@contextmanager
def frozen_parameters(model) -> Iterator[None]:
    """Parameters stop requiring grad inside the block (only the gates get gradients); grad
    mode is on even if the caller disabled it."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to float32 (as the metrics do); float32 and float64 stay as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _rows(masker: HeadMasker, gates: np.ndarray, n: int, batches: Iterator[tuple[np.ndarray, Callable]]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Run ``stat()`` (a ``Tensor[b]``, one value per row) under per-row gates for each
    ``(rows, stat)`` batch; ``(float[n] values, float[n, d] per-row gradients)``."""
    values, jac = np.zeros(n), np.zeros((n, masker.dim))
    g = np.asarray(gates, dtype=np.float32)
    for idx, stat in batches:
        with masker.gated(g, len(idx)) as gate:
            s = stat()
            s.sum().backward()
        values[idx] = s.detach().double().cpu().numpy()
        jac[idx] = gate.grad.reshape(len(idx), -1).double().cpu().numpy()
    return values, jac


def window_nll_jacobian(model, masker: HeadMasker, gates: np.ndarray, input_ids: np.ndarray, stride: int, *,
                        batch_size: int = 4) -> tuple[np.ndarray, np.ndarray, int]:
    """``(nll float[n_windows], d nll / d g float[n_windows, d], n_scored)`` of the windows of
    :func:`~objectives.masked_lm.metrics.window_nll` (same scored tokens), at ``gates``."""
    device = next(model.parameters()).device
    ids_all = torch.as_tensor(input_ids, dtype=torch.long)
    window = ids_all.shape[1]
    first = max(window - stride, 1)
    keep = window - first + 1  # logits at positions first-1 .. window-1; the last one predicts nothing

    def batches():
        for start in range(0, ids_all.shape[0], batch_size):
            ids = ids_all[start:start + batch_size].to(device)

            def stat(ids=ids):
                logits = _wide(model(input_ids=ids, logits_to_keep=keep).logits[:, :-1])
                lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, first:].unsqueeze(-1)).squeeze(-1)
                return -lp.double().sum(1)

            yield np.arange(start, start + ids.shape[0]), stat

    values, jac = _rows(masker, gates, ids_all.shape[0], batches())
    return values, jac, window - first


def next_token_jacobian(model, masker: HeadMasker, gates: np.ndarray, encoded: EncodedContexts,
                        candidates: np.ndarray, reduce: Callable[[torch.Tensor], torch.Tensor]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per context (original order): ``reduce(log p(candidates) float[b, k]) -> float[b]`` and its
    gradient, over the batches of :func:`~objectives.masked_lm.metrics.next_token_logprobs`.

    The contexts are re-padded on the right for the gradient pass: a left-padded row's leading
    pad positions attend to nothing, which some attention implementations (eager Gemma-2) turn
    into NaN activations there, harmless in a forward pass but NaN in every gate's gradient
    (``0 * NaN``).  Logits are kept only at the rows' last real positions."""
    device = next(model.parameters()).device
    cand = torch.as_tensor(np.asarray(candidates), dtype=torch.long)

    def batches():
        row = 0
        for ids, att, _ in encoded.batches:
            idx = encoded.order[row:row + ids.shape[0]]
            row += ids.shape[0]
            lengths = att.sum(1)
            right = torch.stack([torch.roll(r, -int(r.numel() - n)) for r, n in zip(ids, lengths, strict=True)])
            right_att = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
            last = lengths - 1
            keep = torch.unique(last)                   # sorted positions whose logits are kept
            col = torch.searchsorted(keep, last)

            def stat(right=right, right_att=right_att, keep=keep, col=col, idx=idx):
                logits = model(input_ids=right.to(device), attention_mask=right_att.to(device),
                               logits_to_keep=keep.to(device)).logits
                picked = logits[torch.arange(logits.shape[0], device=device), col.to(device)]
                return reduce(torch.log_softmax(_wide(picked), dim=-1).gather(-1, cand[idx].to(device)).double())

            yield idx, stat

    return _rows(masker, gates, encoded.n, batches())


def sentence_jacobian(model, masker: HeadMasker, gates: np.ndarray, encoded: EncodedSentences, scope: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence (original order): the summed token log-likelihood over ``scope`` (``"all"``
    tokens or those ``"after"`` the descriptor) and its gradient; the passes of
    :func:`~objectives.masked_lm.metrics.sentence_logprobs`."""
    if scope not in ("all", "after"):
        raise ValueError(f"scope must be 'all' or 'after', got {scope!r}")
    device = next(model.parameters()).device

    def batches():
        row = 0
        for ids, att, aft in encoded.batches:
            idx = encoded.order[row:row + ids.shape[0]]
            row += ids.shape[0]

            def stat(ids=ids, att=att, aft=aft):
                ids_d = ids.to(device)
                logits = _wide(model(input_ids=ids_d, attention_mask=att.to(device)).logits[:, :-1])
                lp = torch.log_softmax(logits, dim=-1).gather(-1, ids_d[:, 1:].unsqueeze(-1)).squeeze(-1).double()
                valid = att[:, 1:].bool().to(device)
                sel = valid & aft[:, 1:].to(device) if scope == "after" else valid
                return (lp * sel).sum(1)

            yield idx, stat

    return _rows(masker, gates, encoded.n, batches())


def aggregate_gradients(fn: Callable[[torch.Tensor], torch.Tensor], raw: np.ndarray, jac: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Chain rule through an aggregate.

    ``fn(raw float64[n]) -> float64[R]``: the objective for each of ``R`` weightings of the items
    (row 0 the point value, the others bootstrap replicates); ``jac``: ``float[n, d]`` gradients of
    the raw statistics.  Returns ``(values float[R], gradients float[R, d])``.
    """
    r = torch.as_tensor(np.asarray(raw, dtype=float))
    values = fn(r).detach().numpy()
    d_raw = torch.autograd.functional.jacobian(fn, r, vectorize=True).numpy()  # [R, n]
    return values, np.nan_to_num(d_raw) @ np.asarray(jac, dtype=float)
