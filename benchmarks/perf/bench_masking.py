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

from benchmarks.throughput import random_masks as _masks
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


# ----------------------------------------------------------------------------------------------
# Throughput of the masked-lm evaluator (objectives/masked_lm/batching.py).  Each test measures
# its cases round-robin in one run and reports ratios (``-s`` prints them; pytest-benchmark's
# ``extra_info`` keeps them in ``--benchmark-json``).  Run alone, on 2 cores:
#
#     python -m pytest benchmarks/perf/bench_masking.py -s -k throughput -o python_files='bench_*.py' \
#         --benchmark-only --benchmark-columns=min,rounds
#
# ``throughput_overhead``: one mask of the default problem (pruning a head of layer 0, so there is
# no prefix to reuse) through ``problem.evaluate`` (metric code, hooks, runner, figures and
# bootstrap) against bare forward passes of the same batches by a hook-free copy of the model
# (target <= 1.10).  ``throughput_k_masks``: K = 1, 4, 16 random masks evaluated with K masks per
# pass against one per pass (prefix reuse off in both), on the default problem cut to 36 pronoun
# items and 2 windows (so that K = 16 stays short).  ``throughput_prefix``: prefix reuse against
# full passes on the default problem for 6 single-flip neighbours of a mask pruning two late
# heads and for a batch of 10 masks ``surrogate-sa`` asked (benchmarks/throughput.py), giving
# the default problem's evaluations per hour on this machine.
THREADS = 2


@pytest.fixture(scope="module")
def default_problem():
    """The default ``masked-lm`` problem (what ``headrepair run`` evaluates), on CPU."""
    from objectives.masked_lm.problem import MaskedLMProblem

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    problem = MaskedLMProblem(device="cpu")
    problem.baseline("search")  # measured once (or read from the cache), outside every timing
    yield problem
    problem.close()
    torch.set_num_threads(threads)


def _interleaved(cases: dict, rounds: int, warmup: bool = True) -> dict[str, float]:
    """Fastest of ``rounds`` round-robin timings of each case (after one warm-up round)."""
    best = dict.fromkeys(cases, float("inf"))
    for i in range(rounds + warmup):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            if i or not warmup:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _report(benchmark, title: str, figures: dict) -> None:
    benchmark.extra_info.update(figures)
    print(f"\n{title}")
    for key, value in figures.items():
        print(f"  {key:44s} {value:.3f}" if isinstance(value, float) else f"  {key:44s} {value}")


def _first_layer_mask(dim: int) -> np.ndarray:
    mask = np.ones(dim, dtype=bool)
    mask[[0, 100, 200]] = False  # heads of layers 0, 11 and 22
    return mask


def test_throughput_overhead(benchmark, default_problem):
    from objectives.masked_lm.models import load_model

    problem = default_problem
    bare_model, _ = load_model(problem.model_name, device="cpu", dtype="float32")
    contexts = problem._counterfactual("pronoun")._prepared("search").encoded
    windows = torch.as_tensor(problem._windows["search"].input_ids, dtype=torch.long)
    mask = _first_layer_mask(problem.space.dim)[None]

    def bare():
        with torch.no_grad():
            for ids, att, pos in contexts.batches:
                bare_model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=1, use_cache=False)
            for start in range(0, len(windows), problem.window_batch_size):
                ids = windows[start:start + problem.window_batch_size]
                bare_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)

    figures: dict = {}

    def measure():
        best = _interleaved({"bare": bare, "masked": lambda: problem.evaluate(mask, "search")}, rounds=3)
        figures.update({"bare forward passes [s]": best["bare"], "masked evaluation [s]": best["masked"],
                        "masked / bare (target <= 1.10)": best["masked"] / best["bare"]})

    benchmark.group = "masked-lm throughput"
    benchmark.name = "overhead"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    _report(benchmark, f"masked evaluation vs bare forward passes (default problem, {THREADS} threads)", figures)
    assert figures["masked / bare (target <= 1.10)"] > 0


def test_throughput_k_masks(benchmark):
    from objectives.masked_lm.batching import MaskRunner
    from objectives.masked_lm.problem import MaskedLMProblem

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    problem = MaskedLMProblem(device="cpu", n_pronoun_occupations=4, n_windows=2)
    figures: dict = {}
    try:
        problem.baseline("search")
        runners = {k: MaskRunner(problem.model, problem.masker, masks_per_pass=k, prefix_reuse=False)
                   for k in (1, 4, 16)}

        def run_with(runner, masks):
            problem.runner = runner
            problem.evaluate(masks, "search")

        def measure():
            for k in (1, 4, 16):
                masks = _masks(problem.space.dim, k, seed=k)
                best = _interleaved({"separate": lambda m=masks: run_with(runners[1], m),
                                     "batched": lambda m=masks, k=k: run_with(runners[k], m)}, rounds=2)
                figures[f"K={k:2d}: separate [s]"] = best["separate"]
                figures[f"K={k:2d}: batched [s]"] = best["batched"]
                figures[f"K={k:2d}: batched / separate"] = best["batched"] / best["separate"]

        benchmark.group = "masked-lm throughput"
        benchmark.name = "k-masks"
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        problem.close()
        torch.set_num_threads(threads)
    _report(benchmark, f"K masks in one pass vs K passes (36 pronoun items, 2 windows, {THREADS} threads)", figures)
    assert all(v > 0 for v in figures.values())


def test_throughput_prefix(benchmark, default_problem):
    from benchmarks.throughput import late_pair_mask, load_proposals, neighbours
    from objectives.masked_lm.batching import MaskRunner, prefix_saving

    problem = default_problem
    L, H = problem.masker.n_layers, problem.masker.n_heads
    full = MaskRunner(problem.model, problem.masker, masks_per_pass=1, prefix_reuse=False)
    reuse = MaskRunner(problem.model, problem.masker, masks_per_pass=1, prefix_reuse=True)
    warm = np.ones((1, L * H), dtype=bool)
    warm[0, -1] = False  # records the unpruned model's first L-1 layers, as the first batches of a run do
    problem.runner = reuse
    problem.evaluate(warm, "search")
    sets = {"neighbours": neighbours(late_pair_mask(L, H), 6, seed=0), "proposals": load_proposals()[1]}
    figures: dict = {}

    def run_with(runner, masks):
        problem.runner = runner
        problem.evaluate(masks, "search")

    def measure():
        for name, masks in sets.items():
            best = _interleaved({"full": lambda m=masks: run_with(full, m),
                                 "reuse": lambda m=masks: run_with(reuse, m)}, rounds=1, warmup=False)
            figures[f"{name}: layers skipped (count)"] = prefix_saving(masks, L)["saving"]
            figures[f"{name}: full [s]"] = best["full"]
            figures[f"{name}: prefix reuse [s]"] = best["reuse"]
            figures[f"{name}: reuse / full"] = best["reuse"] / best["full"]
            figures[f"{name}: evaluations per hour (reuse)"] = 3600 * len(masks) / best["reuse"]

    benchmark.group = "masked-lm throughput"
    benchmark.name = "prefix-reuse"
    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        problem.runner = reuse
    _report(benchmark, f"prefix reuse vs full passes (default problem, {THREADS} threads)", figures)
    assert all(v > 0 for v in figures.values() if isinstance(v, float))
