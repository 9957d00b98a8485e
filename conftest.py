"""Shared pytest set-up for tests/ and the benchmark files in benchmarks/perf/."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread for every test and benchmark: on a shared 2-core machine, spinning worker threads slowed
    forward passes and fits many times over (an embedded-model test took 18 s instead of 1.7 s)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
