"""Evaluation store put/get cost on a real SQLite file (pytest-benchmark).

Not collected by the normal test run (``bench_*.py``); run it alone, nothing else busy:

    python -m pytest benchmarks/perf/bench_store.py --benchmark-columns=min,median,max,rounds

A batch is 10 masks over ``d = 270`` heads (SmolLM2-135M) with an info dict like the one
``masked-lm`` stores.  Each operation runs against a store already holding 100 and 10,000
evaluations of the problem: lookups go through the primary key (fingerprint, packed mask), so
the two sizes should cost about the same; compare their medians (a ratio far above 1 means a
lookup scans the table).  Misses (masks never stored) are timed too: every asked mask is looked
up before it is evaluated.
"""

from __future__ import annotations

import numpy as np
import pytest

from framework.store import EvaluationStore

D, BATCH, FP = 270, 10, "bench-fingerprint"
INFO = {"split": "search", "bias": 0.5, "bias_se": 0.05, "bias_rel": -0.01, "bias_rel_se": 0.02,
        "perplexity": 31.2, "perplexity_se": 4.1, "perplexity_rel": 0.02, "perplexity_rel_se": 0.01,
        "n_descriptors": 14, "pair_fraction": 0.74}


def _masks(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, D)) >= rng.uniform(0.05, 0.15, size=(n, 1))  # distinct masks


@pytest.fixture(params=[100, 10_000], ids=["rows100", "rows10000"])
def filled(request, tmp_path):
    n = request.param
    store = EvaluationStore(tmp_path / "store.sqlite")
    masks = _masks(n, 0)
    for i in range(0, n, 500):
        chunk = masks[i:i + 500]
        store.put(FP, chunk, np.random.default_rng(i).random((len(chunk), 2)), infos=[INFO] * len(chunk))
    yield store, masks, n
    store.close()


def test_put_batch(benchmark, filled):
    store, _, _ = filled
    before = store.count(FP)
    benchmark.group = "put 10 masks"
    batches = iter(_masks(BATCH * 1000, 1).reshape(1000, BATCH, D))
    benchmark.pedantic(lambda: store.put(FP, next(batches), np.ones((BATCH, 2)), infos=[INFO] * BATCH),
                       rounds=50, iterations=1)
    assert store.count(FP) == before + 50 * BATCH


def test_get_hits(benchmark, filled):
    store, masks, _ = filled
    benchmark.group = "get 10 stored masks"
    ask = masks[np.random.default_rng(2).choice(len(masks), BATCH, replace=False)]
    got = benchmark(store.get, FP, ask)
    assert all(g is not None and np.array_equal(g.mask, m) for g, m in zip(got, ask, strict=True))


def test_get_misses(benchmark, filled):
    store, _, _ = filled
    benchmark.group = "get 10 unknown masks"
    got = benchmark(store.get, FP, _masks(BATCH, 3))
    assert got == [None] * BATCH
