"""Plain progress for runs: one line per batch (:class:`ProgressLines`, for logs, pipes and cluster
jobs) and short durations (:func:`format_duration`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from framework.loop import RunProgress

__all__ = ["ProgressLines", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``, ``8.24`` -> ``"8.2s"``."""
    if not np.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLines:
    """A callback of :func:`~framework.loop.optimize` that writes one plain line per batch (for logs,
    pipes and cluster jobs, where a progress bar is noise)::

        progress: 20/50 evaluations, best bias=0.4121 perplexity=31.07, hv=0.2871, elapsed 1m52s, remaining ~2m48s

    ``remaining`` extrapolates the time per budget unit so far.  ``write`` defaults to a flushed print."""

    def __init__(self, objective_names: Sequence[str], *, write: Callable[[str], None] | None = None) -> None:
        self.names = tuple(objective_names)
        self.write = write or (lambda line: print(line, flush=True))
        self.t0 = time.perf_counter()

    def __call__(self, state: RunProgress) -> None:
        elapsed = time.perf_counter() - self.t0
        n, total = state.n_evaluations, state.budget
        remaining = elapsed / n * max(total - n, 0) if n else float("nan")
        best = " ".join(f"{name}={b:.4g}" for name, b in zip(self.names, state.best, strict=True))
        self.write(f"progress: {n}/{total} evaluations, best {best}, hv={state.hypervolume:.4f}, "
                   f"elapsed {format_duration(elapsed)}, remaining ~{format_duration(remaining)}")
