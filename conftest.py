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


@pytest.fixture(autouse=True)
def _torch_threads_left_as_found(_one_torch_thread):
    """A test (or the product code it runs) that changes torch's thread count and leaves it changed fails
    here: the tests after it would run with other threads, and float results that depend on the thread
    count (a Ray actor's against this process's) would differ for a reason no test names."""
    import torch

    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"torch threads left at {after} (were {before}): restore them (acquisition.composed.torch_threads)",
                    pytrace=False)
