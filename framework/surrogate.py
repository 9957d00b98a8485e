"""The surrogate contract: a multi-output regressor from masks to objective values."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

__all__ = ["Surrogate"]


class Surrogate(ABC):
    """Base class of every surrogate model.

    Constructors take keyword-only options; ``seed`` makes fitting deterministic.
    ``fit(X, Y)`` takes ``bool[n, d]`` masks and ``float[n, m]`` targets (finite rows only);
    ``predict(X)`` returns ``(mean, std)``, both ``float[k, m]``, ``std >= 0`` (the model's
    own uncertainty: ensemble spread or posterior standard deviation).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    @abstractmethod
    def fit(self, X: np.ndarray, Y: np.ndarray) -> Surrogate:
        """Fit on ``bool[n, d]`` masks and ``float[n, m]`` values; returns ``self``."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``bool[k, d]`` -> ``(mean float[k, m], std float[k, m])``."""

    def sample(self, X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``float[n, k, m]``: ``n`` draws of the model's belief at the ``bool[k, d]`` masks, joint
        over the ``k`` masks where the model knows their correlation (Thompson sampling).  The
        default draws independent Gaussians ``N(mean, std^2)`` per mask and objective; a GP draws
        from its joint posterior, an ensemble hands out its members."""
        mean, std = self.predict(X)
        return mean[None] + std[None] * rng.standard_normal((int(n), *mean.shape))

    def predict_torch(self, X):  # pragma: no cover - default path, overridden by torch surrogates
        """Batched prediction on a ``torch`` tensor ``[k, d]`` (0/1 float or bool), returning
        ``(mean, std)`` tensors ``[k, m]``.  Used by samplers that stay in torch (simulated
        annealing).  The default converts through :meth:`predict`."""
        import torch

        mean, std = self.predict(X.detach().cpu().numpy().astype(bool))
        return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
