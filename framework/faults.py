"""Fault injection for tests: make a process kill itself at a chosen point, not by luck.

``HEADREPAIR_FAULT=POINT:N`` (several separated by commas) makes the process send itself
``SIGKILL`` the ``N``-th time it reaches ``POINT`` (counted per process, from 1)::

    evaluate  inside a real evaluation of the loop: after the problem computed the batch's
              values, before the store commits them (the work is lost, as in a crash)
    commit    inside the store's write transaction of evaluations or sensitivities, after the
              rows were written and before COMMIT (SQLite rolls the transaction back)
    fit       inside a model-based strategy's round (surrogate-sa, gp-ehvi-sa, ...), right after
              the surrogate was fitted and before it is used (the fit is lost)
    worker    inside a Ray evaluator actor (``--executor ray``), after it computed a batch and before
              it returns it; only the first actor the evaluator starts gets the variable, so one
              actor dies and the one started to replace it does not

e.g. ``HEADREPAIR_FAULT=commit:3 headrepair run ...`` dies in the third commit.  The variable is
read once, when this module is imported; unset (always, outside tests), :func:`fault_point` is
one comparison and does nothing.  A malformed value is an error at import, so a test cannot
silently run without its fault.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "fault_point", "parse_faults"]

POINTS = ("evaluate", "commit", "fit", "worker")


def parse_faults(text: str | None) -> dict[str, int]:
    """``"evaluate:3,fit:1"`` -> ``{"evaluate": 3, "fit": 1}``; ``ValueError`` naming what is wrong."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        point, _, n = part.strip().partition(":")
        if point not in POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"HEADREPAIR_FAULT: expected POINT:N with POINT one of {', '.join(POINTS)} and N >= 1, "
                             f"got {part.strip()!r}")
        out[point] = int(n)
    return out


_FAULTS = parse_faults(os.environ.get("HEADREPAIR_FAULT")) or None
_REACHED: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Kill this process with ``SIGKILL`` if ``HEADREPAIR_FAULT`` names ``point`` and this is the
    ``N``-th time it is reached; otherwise nothing."""
    if _FAULTS is None:
        return
    _REACHED[point] = _REACHED.get(point, 0) + 1
    if _FAULTS.get(point) == _REACHED[point]:
        os.kill(os.getpid(), signal.SIGKILL)
