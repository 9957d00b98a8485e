"""Noisy head sensitivities for synthetic problems, so that strategies using them can be
benchmarked without a model.

A real model's sensitivities are first-order estimates from one backward pass; they rank the
heads well but not exactly (``headrepair attribute --compare``).  Offering the exact flip
deltas instead would hand a strategy ``d`` real evaluations for the price of one, so a
synthetic problem with ``sensitivity_noise`` set gives them with Gaussian noise:

    ``delta_hat[j, h] = delta[j, h] + sigma_j * sd_j * z[j, h]``,  ``z ~ N(0, 1)``

where ``delta[j, h]`` is the exact change of objective ``j`` when head ``h`` alone is flipped
from the mask, ``sd_j`` the standard deviation of ``delta[j, :]`` over the heads and ``sigma_j``
the noise ratio of objective ``j`` (``sensitivity_noise``, one value per objective or one for
all).  The correlation of estimate and truth over heads is then about ``1 / sqrt(1 + sigma^2)``
(0.71 at ``sigma = 1``); ``sigma`` must be positive.  Measured on the embedded model
(``headrepair attribute --compare 60``), the real estimates rank single-head effects at about
0.9 for the pronoun bias and 0.6-0.8 for perplexity: ``[0.5, 1.0]`` mimics that.  ``z`` is
seeded by the problem's seed, the split and the mask, so a mask always gets the same
estimates; the reported ``se`` is ``sigma_j * sd_j``.  The model has no bias term: the real
perplexity estimates are also biased low (first order misses the curvature of removing a
head), which this noise does not imitate.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from framework.history import pack_mask
from framework.problem import Sensitivities

__all__ = ["NoisyFlipSensitivities", "noise_ratios", "noise_entry"]


def noise_ratios(noise: float | Sequence[float] | None, n_objectives: int) -> tuple[float, ...] | None:
    """Validated ``sigma_j`` per objective (``None``: no sensitivities)."""
    if noise is None:
        return None
    vals = [float(noise)] * n_objectives if np.isscalar(noise) else [float(x) for x in noise]  # type: ignore[arg-type]
    if len(vals) != n_objectives or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise ValueError(f"sensitivity_noise must be one value > 0 or {n_objectives} (one per objective; exact "
                         f"flip deltas for one evaluation would make a benchmark meaningless), got {noise!r}")
    return tuple(vals)


def noise_entry(problem) -> dict:
    """Settings entry of the sensitivity noise (absent when off, so fingerprints without it stay)."""
    return {} if problem.sensitivity_noise is None else {"sensitivity_noise": list(problem.sensitivity_noise)}


class NoisyFlipSensitivities:
    """Mixin for problems whose evaluation is cheap: sets ``has_sensitivities`` when
    ``self.sensitivity_noise`` (``tuple[float, ...]`` or ``None``) is set and answers
    :meth:`~framework.problem.Problem.sensitivities` by the noise model of this module."""

    sensitivity_noise: tuple[float, ...] | None = None
    seed: int = 0

    @property
    def has_sensitivities(self) -> bool:
        return self.sensitivity_noise is not None

    def _sensitivities(self, mask: np.ndarray, split: str) -> Sensitivities:
        d = self.space.dim
        flips = np.repeat(mask[None], d, axis=0)
        flips[np.arange(d), np.arange(d)] = ~mask
        v0 = self.evaluate(mask[None], split)[0]
        true = (self.evaluate(flips, split) - v0).T                      # [m, d]
        sigma = np.asarray(self.sensitivity_noise, dtype=float)[:, None]
        sd = np.nanstd(true, axis=1, keepdims=True)
        rng = np.random.default_rng([int(self.seed), 97, zlib.crc32(split.encode()), zlib.crc32(pack_mask(mask))])
        noise_sd = sigma * sd
        delta = true + noise_sd * rng.standard_normal(true.shape)
        info = {"method": "exact flips + gaussian noise", "noise_ratio": list(self.sensitivity_noise),
                "split": split}
        return Sensitivities(mask.copy(), delta, np.broadcast_to(noise_sd, true.shape).copy(), v0, info)
