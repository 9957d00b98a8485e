"""Fit and predict cost of every registered surrogate (pytest-benchmark).

Not collected by the normal test run (``bench_*.py``); run it alone, nothing else busy:

    python -m pytest benchmarks/perf/bench_surrogates.py --benchmark-columns=min,median,max,rounds

Sizes: ``d = 270`` (SmolLM2-135M heads) at ``n = 100`` and ``500`` training points, prediction
of 1,000 masks (``predict``, numpy) and of 4,096 masks (``predict_torch``, one simulated-annealing
step over many chains); the GP also at ``d = 1024`` (Llama-2-7B heads), ``n = 500``.  One torch
thread, as in a strategy sharing the machine with real evaluations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framework.registry import SURROGATES

NAMES = SURROGATES.names()


def head_like_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Masks pruning 0-15% of ``d`` heads; two objectives: additive plus pairwise, and log-additive."""
    rng = np.random.default_rng(seed)
    w0, w1 = rng.normal(size=d), np.abs(rng.normal(size=d)) * 0.1
    pairs, strength = rng.choice(d, size=(d, 2)), rng.normal(size=d)
    X = rng.random((n, d)) >= rng.uniform(0.0, 0.15, size=(n, 1))
    pruned = (~X).astype(float)
    y0 = pruned @ w0 + (strength * pruned[:, pairs[:, 0]] * pruned[:, pairs[:, 1]]).sum(axis=1)
    y1 = np.exp(pruned @ w1)
    return X, np.stack([y0, y1], axis=1)


CASES = [(name, n, 270) for name in NAMES for n in (100, 500)] + [("gp", 500, 1024)]


@pytest.mark.parametrize(("name", "n", "d"), CASES, ids=[f"{c[0]}-n{c[1]}-d{c[2]}" for c in CASES])
def test_fit(benchmark, name, n, d):
    X, Y = head_like_data(n, d)
    benchmark.group = f"fit d={d}"
    model = benchmark.pedantic(lambda: SURROGATES.create(name, seed=0).fit(X, Y), rounds=3, iterations=1)
    assert model.predict(X[:2])[0].shape == (2, 2)


@pytest.mark.parametrize(("name", "n", "d"), CASES, ids=[f"{c[0]}-n{c[1]}-d{c[2]}" for c in CASES])
def test_predict_numpy_1000(benchmark, name, n, d):
    X, Y = head_like_data(n + 1000, d)
    model = SURROGATES.create(name, seed=0).fit(X[:n], Y[:n])
    benchmark.group = f"predict 1000 d={d}"
    mean, std = benchmark(model.predict, X[n:])
    assert mean.shape == std.shape == (1000, 2)


@pytest.mark.parametrize(("name", "n", "d"), CASES, ids=[f"{c[0]}-n{c[1]}-d{c[2]}" for c in CASES])
def test_predict_torch_4096(benchmark, name, n, d):
    X, Y = head_like_data(n, d)
    model = SURROGATES.create(name, seed=0).fit(X, Y)
    queries = (torch.rand(4096, d, generator=torch.Generator().manual_seed(1)) > 0.1).to(torch.float32)
    benchmark.group = f"predict_torch 4096 d={d}"
    mean, std = benchmark(model.predict_torch, queries)
    assert mean.shape == std.shape == (4096, 2)
