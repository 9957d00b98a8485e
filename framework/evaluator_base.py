"""The evaluator interface and the in-process evaluator (:mod:`framework.evaluators` explains both executors).

:func:`evaluate_guarded` evaluates a batch without letting one mask sink it; :class:`BatchResult` is
what an evaluator returns for a batch; :class:`Evaluator` is the interface the loop drives;
:class:`LocalEvaluator` (the default) evaluates in this process.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["BatchResult", "Evaluator", "LocalEvaluator", "evaluate_guarded"]


def _reason(exc: BaseException) -> str:
    from framework.validate import one_line

    return f"{type(exc).__name__}: {one_line(exc)}"[:500]


def evaluate_guarded(problem, masks: np.ndarray,
                     split: str) -> tuple[np.ndarray, list[dict], list[str | None], list[float]]:
    """Evaluate ``masks`` on ``split`` without letting one mask sink the batch.

    Returns ``(values float[n, m], infos, reasons, seconds)``: a batch whose evaluation raises is
    evaluated again mask by mask; a mask whose own evaluation raises gets NaN values and the
    exception as its reason (``"ValueError: ..."``); a non-finite value gets ``"non-finite
    objective: NAME=nan"``; ``reasons[i]`` is ``None`` for a good evaluation.  ``seconds[i]``: the
    mask's share of the time spent (a failed batch attempt shared among its masks)."""
    n = len(masks)
    t0 = time.perf_counter()
    try:
        values, infos = problem.evaluate_with_info(masks, split)
        values = np.asarray(values, dtype=float)
        reasons: list[str | None] = [None] * n
        seconds = [(time.perf_counter() - t0) / n] * n
    except Exception as exc:
        wasted = (time.perf_counter() - t0) / n
        if n == 1:
            values, infos, reasons, seconds = np.full((1, problem.n_objectives), np.nan), [{}], [_reason(exc)], [wasted]
        else:
            parts = [evaluate_guarded(problem, masks[i:i + 1], split) for i in range(n)]
            values = np.vstack([p[0] for p in parts])
            infos = [p[1][0] for p in parts]
            reasons = [p[2][0] for p in parts]
            seconds = [p[3][0] + wasted for p in parts]
    for i in range(n):
        if reasons[i] is None and not np.all(np.isfinite(values[i])):
            bad = ", ".join(f"{name}={v}" for name, v in zip(problem.objective_names, values[i], strict=True)
                            if not np.isfinite(v))
            reasons[i] = f"non-finite objective: {bad}"
    return values, list(infos), reasons, seconds


@dataclass
class BatchResult:
    """What an evaluator returns for one submitted batch (the fields of :func:`evaluate_guarded`)."""

    ticket: int
    values: np.ndarray
    infos: list[dict]
    reasons: list[str | None]
    seconds: list[float]


class Evaluator(ABC):
    """Evaluates batches of masks for :func:`~framework.loop.optimize`.

    ``bind(problem)`` is called once before the first batch (the loop's problem: an evaluator
    that builds its own copies checks that they have its fingerprint); ``submit`` hands over a
    batch and returns its ticket; ``next_done`` blocks until some submitted batch is evaluated
    and returns it (any order); ``close`` releases what the evaluator started.  ``slots``: how
    many batches it evaluates at the same time (the loop keeps up to that many in flight for a
    strategy that asks while evaluations are pending)."""

    name: ClassVar[str] = ""
    slots: int = 1

    def bind(self, problem) -> None:  # noqa: B027 - optional hook
        """Prepare to evaluate ``problem`` (called once, before the first :meth:`submit`)."""

    @abstractmethod
    def submit(self, masks: np.ndarray, split: str) -> int:
        """Start evaluating ``bool[n, d]`` masks on ``split``; returns the batch's ticket."""

    @abstractmethod
    def next_done(self) -> BatchResult:
        """Block until one submitted batch is evaluated and return it."""

    @abstractmethod
    def sensitivities(self, problem, mask: np.ndarray, split: str):
        """The problem's head sensitivities of ``mask`` (a :class:`~framework.problem.Sensitivities`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (batches still in flight are abandoned, never received)."""

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "slots": self.slots}


class LocalEvaluator(Evaluator):
    """In this process, one batch at a time, in the order submitted (the default)."""

    name = "local"

    def __init__(self) -> None:
        self.problem = None
        self._queue: deque[tuple[int, np.ndarray, str]] = deque()
        self._tickets = 0

    def bind(self, problem) -> None:
        self.problem = problem

    def submit(self, masks: np.ndarray, split: str) -> int:
        self._tickets += 1
        self._queue.append((self._tickets, masks, split))
        return self._tickets

    def next_done(self) -> BatchResult:
        ticket, masks, split = self._queue.popleft()
        values, infos, reasons, seconds = evaluate_guarded(self.problem, masks, split)
        return BatchResult(ticket, values, infos, reasons, seconds)

    def sensitivities(self, problem, mask: np.ndarray, split: str):
        return problem.sensitivities(mask, split)
