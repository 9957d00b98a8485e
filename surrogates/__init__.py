"""Surrogates: models that predict objective values from masks (``bool[n, d]`` -> ``float[n, m]``).

Registered through the ``headrepair.surrogates`` entry points (``mlp``, ``gp``); the names
below are imported lazily so that ``import surrogates.mlp`` does not pay for BoTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["MLPEnsemble", "GPSurrogate", "surrogate_quality", "format_quality"]

_WHERE = {"MLPEnsemble": "surrogates.mlp", "GPSurrogate": "surrogates.gp",
          "surrogate_quality": "surrogates.quality", "format_quality": "surrogates.quality"}

if TYPE_CHECKING:  # pragma: no cover
    from surrogates.gp import GPSurrogate
    from surrogates.mlp import MLPEnsemble
    from surrogates.quality import format_quality, surrogate_quality


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'surrogates' has no attribute {name!r}")
