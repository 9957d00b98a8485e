"""Hypervolume acquisitions: greedy hypervolume gain of optimistic predictions, and expected
hypervolume improvement (analytic, BoTorch's implementation of Yang et al. 2019, any number of
objectives).  Both count hypervolume inside the normalized reference box, over the told front
plus the picks already made in the batch.
"""

from __future__ import annotations

import moocore
import numpy as np
import torch
from botorch.acquisition.multi_objective.analytic import ExpectedHypervolumeImprovement as _BoTorchEHVI
from botorch.models.model import Model
from botorch.utils.multi_objective.box_decompositions.non_dominated import NondominatedPartitioning

from acquisition.base import Acquisition, Selection
from acquisition.scalarizations import _check_beta
from framework.pareto import non_dominated

__all__ = ["BOUNDED", "PENDING_RULES", "ExpectedHypervolumeImprovement", "HypervolumeGain", "hypervolume_improvement"]

PENDING_RULES = ("mean", "believer")
BOUNDED = ("none", "bias", "all")


def hypervolume_improvement(y: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``float[k]``: hypervolume improvement of each row of ``y`` over ``front`` (within ``ref``),
    or, where there is none, minus the additive shift the row needs before it would improve it
    (so dominated candidates still rank by how close they are)."""
    # shift needed: inside the reference box, and not weakly dominated by any front point
    need = np.max(y - ref, axis=1)
    if len(front):
        need = np.maximum(need, np.max(np.min(y[:, None, :] - front[None, :, :], axis=2), axis=1))
    score = -need
    hv0 = float(moocore.hypervolume(front, ref=ref)) if len(front) else 0.0
    for i in np.flatnonzero(need < 0):
        pts = np.vstack([front, y[i]]) if len(front) else y[i][None]
        score[i] = float(moocore.hypervolume(pts, ref=ref)) - hv0
    return score


class HypervolumeGain(Acquisition):
    """Minus the hypervolume the optimistic prediction ``mean - beta * std`` adds to the told
    front inside the reference box (dominated predictions: minus the shift they need).  In a
    batch each pick that improves the front joins it, so the next pick must add elsewhere."""

    name = "hv-gain"
    summary = "greedy hypervolume gain of the optimistic prediction over the told front (+ pending picks)"

    def __init__(self, *, beta: float = 0.5) -> None:
        self.beta = _check_beta(beta)

    def _setup(self, rng: np.random.Generator) -> None:
        self._front = self.state.front_inside()

    def score_numpy(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return -hypervolume_improvement(mean - self.beta * std, self._front, self.state.ref)

    def score(self, mean, std, member):
        e = self.score_numpy(mean.double().numpy(), std.double().numpy())
        return torch.as_tensor(e, dtype=torch.float32)

    def condition(self, mean, std, energy):
        y = mean - self.beta * std
        if np.all(y < self.state.ref) and -energy > 0:
            front = np.vstack([self._front, y])
            self._front = front[non_dominated(front)]


class _Predictions(Model):
    """A BoTorch ``Model`` whose posterior at ``X`` is the independent Gaussian ``(-mean, std^2)``
    handed in, so BoTorch's analytic EHVI (a maximizer) scores our minimized predictions."""

    def __init__(self, m: int) -> None:
        super().__init__()
        self._m = m
        self.mean = self.std = None

    @property
    def num_outputs(self) -> int:
        return self._m

    def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        return _Posterior(-self.mean.unsqueeze(-2), self.std.pow(2).unsqueeze(-2))


class _Posterior:
    def __init__(self, mean: torch.Tensor, variance: torch.Tensor) -> None:
        self.mean, self.variance = mean, variance


class ExpectedHypervolumeImprovement(Acquisition):
    """Minus the expected hypervolume improvement over the told front (plus pending picks, each
    at its predicted mean) inside the reference box, under independent Gaussian predictions
    ``N(mean, std^2)`` per objective: BoTorch's analytic EHVI on its box decomposition of the
    non-dominated region (exact for any number of objectives; the cells grow quickly beyond 3).

    Batch rule (``pending``): ``"mean"``: each pick joins the front at its predicted mean, the
    other candidates' predictions stay as they were, so ten near-copies of one good mask each
    keep their full spread and can fill a batch; ``"believer"`` (a kriging believer): besides,
    the surrogate is conditioned on the pick observed at its mean, which shrinks the spread of
    the candidates correlated with it (needs a surrogate with a joint posterior, ``joint(X)``,
    as the GP; others fall back to ``"mean"``).

    ``bounded`` says which objectives count improvement only up to their ideal bound (0 in
    normalized units), as the product's hypervolume does (it clips values beyond the ideal,
    :meth:`~framework.problem.Problem.normalize`): ``"none"`` (BoTorch's and ``gp-ehvi-sa``'s
    convention: the improvement box is open beyond the ideal), ``"bias"`` (the state's bias
    objective) or ``"all"``.  In a bounded objective the told front is clipped at the ideal and
    every cell of the decomposition ends there, so a prediction beyond it earns exactly what the
    ideal itself would (BoTorch's formula is exact for finite cells).  Open, a mask predicted far
    beyond the ideal (a bias of 0 where the ideal bound is 0.2) scores by area no indicator counts;
    but where the ideal is a measured baseline (a perplexity at the unpruned model's), the margin
    beyond it is what keeps a repair inside it on data the search never saw (docs/benchmarks.md,
    "EHVI bounded at the ideal")."""

    name = "ehvi"
    summary = "expected hypervolume improvement (analytic, BoTorch box decomposition), pending picks at their mean"

    def __init__(self, *, min_std: float = 1e-6, pending: str = "mean", bounded: str = "none") -> None:
        if not min_std > 0:
            raise ValueError(f"min_std must be > 0, got {min_std}")
        if pending not in PENDING_RULES:
            raise ValueError(f"pending must be one of {PENDING_RULES}, got {pending!r}")
        if bounded not in BOUNDED:
            raise ValueError(f"bounded must be one of {BOUNDED}, got {bounded!r}")
        self.min_std = float(min_std)
        self.pending = pending
        self.bounded = bounded

    def _setup(self, rng: np.random.Generator) -> None:
        m = self.state.n_objectives
        self._capped = {"none": [], "bias": [self.state.bias], "all": list(range(m))}[self.bounded]
        self._front = self._clip(self.state.front_inside())
        self._build()

    def _clip(self, front: np.ndarray) -> np.ndarray:
        if not self._capped or not len(front):
            return front
        front = front.copy()
        front[:, self._capped] = np.maximum(front[:, self._capped], 0.0)
        return front[non_dominated(front)]

    def _build(self) -> None:
        ref = torch.as_tensor(-self.state.ref, dtype=torch.float64)
        Y = torch.as_tensor(-self._front, dtype=torch.float64).reshape(-1, len(ref))
        self._model = _Predictions(len(ref))
        self._acq = _BoTorchEHVI(self._model, ref.tolist(), NondominatedPartitioning(ref_point=ref, Y=Y))
        if self._capped:  # BoTorch maximizes the negated values: the ideal 0 is the cells' upper end
            upper, lower = self._acq.cell_upper_bounds.clone(), self._acq.cell_lower_bounds.clone()
            upper[..., self._capped] = upper[..., self._capped].clamp_max(0.0)
            lower[..., self._capped] = lower[..., self._capped].clamp_max(0.0)
            self._acq.cell_upper_bounds, self._acq.cell_lower_bounds = upper, lower

    def _ehvi(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        self._model.mean = mean.double()
        self._model.std = std.double().clamp_min(self.min_std)
        with torch.no_grad():
            return self._acq(torch.zeros(len(mean), 1, 1, dtype=torch.float64))

    def score(self, mean, std, member):
        return -self._ehvi(mean, std).float()

    def score_numpy(self, mean, std):
        return -self._ehvi(torch.as_tensor(mean), torch.as_tensor(std)).numpy()

    def condition(self, mean, std, energy):
        if np.all(mean < self.state.ref):
            front = np.vstack([self._front, mean])
            self._front = self._clip(front[non_dominated(front)])
            self._build()

    def select(self, model, pool: np.ndarray, n: int, rng: np.random.Generator) -> Selection:
        if self.pending != "believer" or not hasattr(model, "joint"):
            return super().select(model, pool, n, rng)
        mean, cov, noise = model.joint(pool)  # [k, m], latent [m, k, k], [m]

        def spread(c: np.ndarray) -> np.ndarray:
            return np.sqrt(np.clip(np.diagonal(c, axis1=1, axis2=2).T, 0.0, None) + noise)

        latent = [cov]

        def observe(row: int) -> np.ndarray:  # the pick seen at its mean: mean unchanged, spread shrinks nearby
            c = latent[0][:, :, row]  # [m, k]
            gain = np.maximum(latent[0][:, row, row] + noise, 1e-12)[:, None, None]
            latent[0] = latent[0] - c[:, :, None] * c[:, None, :] / gain
            return spread(latent[0])

        std0 = spread(cov)
        return Selection(self._greedy(mean, std0, n, observe), mean, std0)
