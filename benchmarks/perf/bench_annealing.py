"""Speed of batched simulated annealing on an MLP surrogate at d = 270 (pytest-benchmark).

Not collected by the normal test run (``bench_*.py``); run it alone, nothing else busy:

    python -m pytest benchmarks/perf/bench_annealing.py -s --benchmark-columns=min,median,max,rounds

Space: the embedded SmolLM2-135M layout (30 layers x 9 query heads, 3 KV heads per layer,
at most 30% pruned).  Surrogate: the registered ``mlp`` with its default architecture, fitted
once on 100 low-ratio masks.  Cases, one torch thread (as in a strategy sharing the machine
with real evaluations):

* ``anneal``: :meth:`SimulatedAnnealing.run` of ``CHAINS`` chains for ``STEPS`` steps on a
  threshold scalarization of the surrogate's prediction (all moves enabled);
* ``surrogate-call``: the same number of ``predict_torch`` calls on ``[CHAINS, 270]`` alone,
  the floor of the annealing's cost;
* ``propose``: the same number of move proposals alone.

With ``-s``, ``test_interleaved_ratio`` runs the three round-robin (load from other processes
hits each alike) and prints SA steps/s (all chains advancing one step) and the share of a step
spent in the surrogate call and in the moves.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from acquisition.annealing import AnnealSchedule, SimulatedAnnealing
from framework.registry import SURROGATES
from framework.space import HeadSpace

CHAINS, STEPS = 32, 200
SPACE = HeadSpace(30, 9, 3, max_pruned_fraction=0.3)


@pytest.fixture(scope="module")
def setting():
    """(annealer, energy, start states, surrogate) on a fitted MLP at d = 270."""
    rng = np.random.default_rng(0)
    X = SPACE.sample(100, rng, max_ratio=0.05)
    pruned = (~X).astype(float)
    Y = np.stack([1.0 + pruned @ rng.normal(-0.01, 0.05, SPACE.dim), np.exp(pruned @ rng.gamma(1.0, 0.03, SPACE.dim))],
                 axis=1)
    model = SURROGATES.create("mlp", seed=0).fit(X, Y)
    threshold = torch.tensor(1.1)

    def energy(x: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        mean, _ = model.predict_torch(x)
        return mean[:, 0] + 10.0 * (mean[:, 1] - threshold).clamp(min=0)

    sa = SimulatedAnnealing(SPACE, AnnealSchedule(n_steps=STEPS))
    x0 = torch.as_tensor(SPACE.sample(CHAINS, rng, max_ratio=0.03))
    return sa, energy, x0, model


def _anneal(setting):
    sa, energy, x0, _ = setting
    sa.run(energy, x0, torch.Generator().manual_seed(0))


def _surrogate_calls(setting):
    _, _, x0, model = setting
    x = x0.float()
    for _ in range(STEPS):
        model.predict_torch(x)


def _proposals(setting):
    sa, _, x0, _ = setting
    g = torch.Generator().manual_seed(0)
    x = x0
    for _ in range(STEPS):
        x, _ = sa.moves.propose(x, g)


def test_anneal(benchmark, setting):
    benchmark.extra_info.update(chains=CHAINS, steps=STEPS, dim=SPACE.dim)
    benchmark.pedantic(_anneal, args=(setting,), rounds=5, iterations=1)


def test_surrogate_call(benchmark, setting):
    benchmark.extra_info.update(chains=CHAINS, calls=STEPS, dim=SPACE.dim)
    benchmark.pedantic(_surrogate_calls, args=(setting,), rounds=5, iterations=1)


def test_propose(benchmark, setting):
    benchmark.extra_info.update(chains=CHAINS, steps=STEPS, dim=SPACE.dim)
    benchmark.pedantic(_proposals, args=(setting,), rounds=5, iterations=1)


def test_interleaved_ratio(setting):
    cases = {"anneal": _anneal, "surrogate-call": _surrogate_calls, "propose": _proposals}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(5):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn(setting)
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\nSA at d={SPACE.dim}, {CHAINS} chains: {STEPS / med['anneal']:.0f} steps/s "
          f"({CHAINS * STEPS / med['anneal']:.0f} chain-steps/s); per step: surrogate call "
          f"{med['surrogate-call'] / med['anneal']:.0%}, moves {med['propose'] / med['anneal']:.0%}")
    assert all(t > 0 for t in med.values())
