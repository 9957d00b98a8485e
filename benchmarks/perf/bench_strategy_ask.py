"""Strategy time of one ``ask`` at d=270, batch 10: the default strategy against ``qnehvi``.

Not collected by the normal test run (``bench_*.py``); run it alone, nothing else busy:

    python -m pytest benchmarks/perf/bench_strategy_ask.py --benchmark-columns=min,median,max,rounds

Each strategy runs ``n`` real evaluations of ``mnk-N270-K2-r-0.5`` (270 heads, as the embedded
SmolLM2; batch 10, seed 0), then one more ``ask(10)`` is timed: a model-based round with ``n``
told masks (fit, acquisition optimization, batch selection: everything a round costs besides the
real evaluations).  ``test_ask_ratio`` reports the default's time as a ratio of
``qnehvi``'s, both measured in the same run; the primary-strategy issue asks for under 10%.
One torch thread, as in a strategy sharing the machine with real evaluations.
"""

from __future__ import annotations

import time

import pytest
import torch

from framework.config import DEFAULTS
from framework.loop import optimize
from framework.registry import PROBLEMS, STRATEGIES

TOLD = (40, 90)
STRATEGY_NAMES = (DEFAULTS.strategy, "qnehvi", "gp-ehvi-sa")


def _problem():
    return PROBLEMS.create("rho-mnk", n_bits=270, k=2, rho=-0.5, seed=1, max_pruned_fraction=0.5)


def _told_strategy(name: str, n: int, seed: int = 0):
    """``name`` after a run of ``n`` real evaluations (batch 10, seed ``seed``): the next ask is a
    model-based round with ``n`` told masks."""
    strategy = STRATEGIES.create(name)
    optimize(_problem(), strategy, n, batch_size=10, seed=seed, progress=False)
    return strategy


def _time_ask(name: str, n: int) -> float:
    strategy = _told_strategy(name, n)
    t0 = time.perf_counter()
    masks = strategy.ask(10)
    dt = time.perf_counter() - t0
    assert masks.shape == (10, 270) and masks.dtype == bool
    return dt


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("n", TOLD)
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_ask(benchmark, name, n):
    benchmark.group = f"ask(10) after {n} told, d=270"
    strategy_holder = {}

    def setup():
        strategy_holder["s"] = _told_strategy(name, n)
        return (), {}

    masks = benchmark.pedantic(lambda: strategy_holder["s"].ask(10), setup=setup, rounds=2, iterations=1)
    assert masks.shape == (10, 270)


@pytest.mark.parametrize("n", TOLD)
def test_ask_ratio(benchmark, n):
    """The default's ask time as a share of qnehvi's (same run, same told data)."""
    benchmark.group = f"ratio default / qnehvi, {n} told"
    default = min(_time_ask(DEFAULTS.strategy, n) for _ in range(2))
    bo = min(_time_ask("qnehvi", n) for _ in range(2))
    benchmark.extra_info.update({"default_s": default, "qnehvi_s": bo, "ratio": default / bo})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\nask(10) after {n} told: {DEFAULTS.strategy} {default:.2f} s, qnehvi {bo:.2f} s, "
          f"ratio {default / bo:.3f}")
