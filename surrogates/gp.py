"""Gaussian-process surrogate with a kernel for binary inputs.

One BoTorch ``SingleTaskGP`` holds ``m`` independent GPs (a batch, one per objective, each
with its own hyperparameters), targets standardized, a Gaussian likelihood with a noise
floor, hyperparameters fitted by exact marginal likelihood (``botorch.fit_gpytorch_mll``,
L-BFGS-B).  Kernels:

- ``"hamming"``: exponentiated Hamming distance, ``k(x, x') = exp(-hamming(x, x') / (d * l))``
  (the same as an RBF kernel on 0/1 inputs without ARD, with the distance per bit);
- ``"tanimoto"``: ``<x, x'> / (|x| + |x'| - <x, x'>)`` on the keep masks (no lengthscale);
- ``"rbf-ard"``: an RBF kernel with one lengthscale per head, ``exp(-sum_i [x_i != x'_i] / (2 l_i^2))``
  on 0/1 inputs, under BoTorch's dimension-scaled log-normal prior on the lengthscales, which
  start at the prior's mode and stay above 0.025 (what BoTorch's ``SingleTaskGP`` uses by
  default, and so ``qnehvi``; here with an output scale): it can learn which heads matter at
  all, which an isotropic kernel cannot;
- ``"auto"``: each fit chooses between ``"hamming"`` and ``"rbf-ard"`` by forward validation: both
  are fitted on the told masks but the last quarter (the most recent, which is what the next
  round's proposals resemble) and scored by the Spearman correlation of their predictions there
  (mean over objectives); the better is refitted on all masks (``"hamming"`` on a tie, and with
  fewer than ``auto_min_rows`` masks, too few to learn a lengthscale per head; with
  ``auto_margin_se`` > 0, ``"rbf-ard"`` must win by that many bootstrap standard errors).  The log-likelihood
  of leave-one-out predictions was not used: on rho-MNK N144 it preferred ``"rbf-ard"`` while its
  predictions of the later masks ranked worse.

Prediction does not go through ``model.posterior``: after fitting, the Cholesky factor of the
training covariance is inverted once, so a batch of ``k`` queries costs two matrix products
(``k x n x d`` for the cross-kernel, ``k x n x n`` for the variance), which is what simulated
annealing needs when it scores thousands of candidates per step.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from framework.surrogate import Surrogate
from surrogates._data import query_masks, training_data

__all__ = ["AUTO_CHOICES", "GPSurrogate", "HammingKernel", "TanimotoKernel"]


def _matching_counts(x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(<x1, x2>, |x1|, |x2|)`` for 0/1 inputs, broadcast to ``[..., n1, n2]`` (one matmul)."""
    inner = x1 @ x2.transpose(-1, -2)
    return inner, x1.sum(-1, keepdim=True), x2.sum(-1).unsqueeze(-2)


class HammingKernel(Kernel):
    """``exp(-hamming(x1, x2) / (d * lengthscale))`` for 0/1 inputs ``[..., n, d]``.

    The Hamming distance is computed as ``|x1| + |x2| - 2 <x1, x2>`` (a matrix product, exact
    for 0/1 inputs), not by comparing every pair of bits.
    """

    has_lengthscale = True

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        d = x1.shape[-1]
        if diag:
            dist = (x1 - x2).abs().sum(-1)
        else:
            inner, n1, n2 = _matching_counts(x1, x2)
            dist = (n1 + n2 - 2 * inner).clamp_min(0)
        lengthscale = self.lengthscale[..., 0] if diag else self.lengthscale
        return torch.exp(-dist / (d * lengthscale))


class TanimotoKernel(Kernel):
    """Tanimoto (Jaccard) similarity ``<x1, x2> / (|x1| + |x2| - <x1, x2>)`` of 0/1 inputs.

    Two all-zero inputs have similarity 1 (they are identical).
    """

    has_lengthscale = False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        if diag:
            inner = (x1 * x2).sum(-1)
            union = x1.sum(-1) + x2.sum(-1) - inner
        else:
            inner, n1, n2 = _matching_counts(x1, x2)
            union = n1 + n2 - inner
        return torch.where(union > 0, inner / union.clamp_min(1e-12), torch.ones_like(union))


_KERNELS = ("hamming", "tanimoto", "rbf-ard", "auto")
#: What ``kernel="auto"`` chooses between (the first on a tie).
AUTO_CHOICES = ("hamming", "rbf-ard")


class GPSurrogate(Surrogate):
    """Exact GP per objective with a binary-input kernel, fitted by marginal likelihood."""

    summary = ("exact Gaussian process per objective, Hamming, Tanimoto, per-head RBF or chosen-per-fit kernel, "
               "fitted by marginal likelihood")

    def __init__(self, *, kernel: str = "hamming", noise_floor: float = 1e-4, include_noise: bool = True,
                 max_iterations: int = 200, seed: int = 0, auto_min_rows: int = 40,
                 auto_margin_se: float = 0.0) -> None:
        """Args:
            kernel: ``"hamming"`` (exponentiated Hamming distance), ``"tanimoto"``, ``"rbf-ard"``
                (one lengthscale per head) or ``"auto"`` (each fit chooses ``"hamming"`` or
                ``"rbf-ard"`` by forward validation; see the module docstring).
            noise_floor: smallest observation-noise variance, in units of the standardized targets
                (keeps the Cholesky factorization stable when masks repeat).
            include_noise: ``std`` is that of a new real evaluation (posterior variance plus the
                fitted noise) when ``True``, of the latent function only when ``False``.
            max_iterations: L-BFGS-B iterations for the hyperparameters.
            seed: seeds torch's generator during fitting (BoTorch redraws initial values from the
                priors if an optimization attempt fails); the fit is otherwise deterministic.
            auto_min_rows: with ``kernel="auto"``, the fewest finite told masks for which the
                kernels are compared (fewer: ``"hamming"``).
            auto_margin_se: with ``kernel="auto"``, ``"rbf-ard"`` is chosen only when its validation
                score beats Hamming's by more than this many standard errors of the difference
                (bootstrap over the validation masks, 200 resamples); 0: by any amount.
        """
        if kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
        if not noise_floor > 0:
            raise ValueError(f"noise_floor must be > 0, got {noise_floor}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        if not auto_margin_se >= 0:
            raise ValueError(f"auto_margin_se must be >= 0, got {auto_margin_se}")
        if auto_min_rows < 8:
            raise ValueError(f"auto_min_rows must be >= 8 (2 validation masks at the least), got {auto_min_rows}")
        self.kernel = kernel
        self.noise_floor = float(noise_floor)
        self.include_noise = bool(include_noise)
        self.max_iterations = int(max_iterations)
        self.seed = int(seed)
        self.auto_min_rows = int(auto_min_rows)
        self.auto_margin_se = float(auto_margin_se)
        self.fitted_kernel: str | None = None
        """The kernel of the last fit (what ``"auto"`` chose)."""
        self.kernel_scores: dict[str, float] = {}
        """``"auto"``: each candidate's forward-validation Spearman at the last fit (empty if not compared)."""
        self._n_bits: int | None = None
        self.model: SingleTaskGP | None = None
        """The fitted BoTorch model (for acquisition functions and diagnostics)."""

    def _covar_module(self, kernel: str, batch_shape: torch.Size, n_bits: int) -> ScaleKernel:
        if kernel == "rbf-ard":
            # BoTorch's default: LogNormal(sqrt(2) + log(d) / 2, sqrt(3)) on each lengthscale
            prior = LogNormalPrior(math.sqrt(2) + 0.5 * math.log(n_bits), math.sqrt(3))
            base = RBFKernel(ard_num_dims=n_bits, batch_shape=batch_shape, lengthscale_prior=prior,
                             lengthscale_constraint=GreaterThan(2.5e-2, transform=None, initial_value=prior.mode))
            return ScaleKernel(base, batch_shape=batch_shape)
        if kernel == "hamming":
            # log-normal prior around l = 0.5 (per bit): the correlation of two masks falls to 1/e
            # when half of the bits differ; wide enough for near-additive and rugged objectives
            base = HammingKernel(batch_shape=batch_shape, lengthscale_prior=LogNormalPrior(np.log(0.5), 1.5))
        else:
            base = TanimotoKernel(batch_shape=batch_shape)
        return ScaleKernel(base, batch_shape=batch_shape)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> GPSurrogate:
        """Fit on ``bool[n, d]`` masks and ``float[n, m]`` values (non-finite rows dropped); returns ``self``."""
        masks, values = training_data(X, Y)
        kernel = self.kernel
        self.kernel_scores = {}
        if kernel == "auto":
            kernel = self._choose_kernel(masks, values)
        self._fit(masks, values, kernel)
        return self

    def _choose_kernel(self, masks: np.ndarray, values: np.ndarray) -> str:
        """``"auto"``: the candidate whose fit on all but the last quarter of the told masks ranks that
        quarter best (mean Spearman over objectives; the first candidate on a tie or too few masks)."""
        from scipy.stats import spearmanr

        n = masks.shape[0]
        if n < self.auto_min_rows:
            return AUTO_CHOICES[0]
        cut = n - max(2, n // 4)
        truth = values[cut:]

        def score(predicted: np.ndarray, rows: np.ndarray) -> float:
            rhos = []
            for j in range(values.shape[1]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a constant column: no correlation, counted as 0
                    rho = spearmanr(predicted[rows, j], truth[rows, j])[0]
                rhos.append(float(rho) if np.isfinite(rho) else 0.0)
            return float(np.mean(rhos))

        every = np.arange(n - cut)
        predictions = {}
        for name in AUTO_CHOICES:
            gp = GPSurrogate(kernel=name, noise_floor=self.noise_floor, include_noise=self.include_noise,
                             max_iterations=self.max_iterations, seed=self.seed)
            predictions[name] = gp.fit(masks[:cut], values[:cut]).predict(masks[cut:])[0]
            self.kernel_scores[name] = score(predictions[name], every)
        simple, rich = AUTO_CHOICES
        gain = self.kernel_scores[rich] - self.kernel_scores[simple]
        if gain <= 0:
            return simple
        if self.auto_margin_se > 0:
            rng = np.random.default_rng(self.seed)
            diffs = []
            for _ in range(200):
                rows = rng.integers(0, n - cut, n - cut)
                diffs.append(score(predictions[rich], rows) - score(predictions[simple], rows))
            if gain <= self.auto_margin_se * float(np.std(diffs)):
                return simple
        return rich

    def _fit(self, masks: np.ndarray, values: np.ndarray, kernel: str) -> None:
        n, d = masks.shape
        m = values.shape[1]
        train_x = torch.from_numpy(masks).to(torch.float64)
        train_y = torch.from_numpy(values).to(torch.float64)
        batch_shape = torch.Size([m]) if m > 1 else torch.Size()
        likelihood = GaussianLikelihood(batch_shape=batch_shape,
                                        noise_prior=LogNormalPrior(-4.0, 1.0),
                                        noise_constraint=GreaterThan(self.noise_floor, transform=None,
                                                                     initial_value=max(self.noise_floor, 1e-2)))
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(self.seed)
            # constant objectives make Standardize warn; the fit handles them (std set to 1)
            warnings.filterwarnings("ignore", message=".*standard deviation.*")
            model = SingleTaskGP(train_x, train_y, likelihood=likelihood,
                                 covar_module=self._covar_module(kernel, batch_shape, d),
                                 outcome_transform=Standardize(m=m))
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.max_iterations}})
        model.eval()
        self.model = model
        self.fitted_kernel = kernel
        self._n_bits = d
        self._prepare_prediction(train_x)

    def _prepare_prediction(self, train_x: Tensor) -> None:
        """Cache ``alpha = K^-1 (y - c)`` and ``L^-1`` (``K = L L^T``) per objective, float64."""
        model = self.model
        with torch.no_grad():
            y = model.train_targets  # standardized, [m, n] or [n]
            y = y.reshape(-1, train_x.shape[0])
            m = y.shape[0]
            kernel = model.covar_module
            K = kernel(train_x).to_dense().reshape(m, *([train_x.shape[0]] * 2))
            noise = model.likelihood.noise.reshape(m, 1)
            const = model.mean_module.constant.reshape(m, 1)
            L = torch.linalg.cholesky(K + torch.diag_embed(noise.expand(m, train_x.shape[0])))
            eye = torch.eye(train_x.shape[0], dtype=L.dtype).expand(m, -1, -1)
            L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
            self._alpha = (L_inv.transpose(-1, -2) @ (L_inv @ (y - const).unsqueeze(-1))).squeeze(-1)  # [m, n]
            self._L_inv = L_inv
            self._train_x = train_x
            self._const = const.squeeze(-1)
            self._outputscale = kernel.outputscale.reshape(m)
            self._noise = noise.squeeze(-1)
            tf = model.outcome_transform
            self._y_mean = tf.means.reshape(m)
            self._y_std = tf.stdvs.reshape(m)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``bool[k, d]`` -> ``(mean float[k, m], std float[k, m])`` in the units of the fitted ``Y``."""
        masks = query_masks(X, self._n_bits)
        mean, std = self._predict(torch.from_numpy(masks).to(torch.float64), chunk_rows=4096)
        return mean.numpy(), std.numpy()

    def _joint_standardized(self, X: np.ndarray) -> tuple[Tensor, Tensor]:
        """Standardized latent posterior at ``bool[k, d]`` masks: mean ``[m, k]``, covariance ``[m, k, k]``
        (``K** - K*n (K + s^2 I)^-1 Kn*``)."""
        if self._n_bits is None:
            raise RuntimeError("the surrogate is not fitted: call fit(X, Y) first")
        x = torch.from_numpy(query_masks(X, self._n_bits)).to(torch.float64)
        m, k = self._alpha.shape[0], x.shape[0]
        with torch.no_grad():
            k_cross = self.model.covar_module(x, self._train_x).to_dense().reshape(m, k, -1)  # [m, k, n]
            k_self = self.model.covar_module(x).to_dense().reshape(m, k, k)
            v = k_cross @ self._L_inv.transpose(-1, -2)  # [m, k, n]
            mean = self._const[:, None] + (k_cross @ self._alpha.unsqueeze(-1)).squeeze(-1)  # [m, k]
            return mean, k_self - v @ v.transpose(-1, -2)

    def joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The joint posterior at ``bool[k, d]`` masks, in the units of the fitted ``Y``:
        ``mean float[k, m]``, latent covariance ``float[m, k, k]`` and the observation-noise
        variance ``float[m]`` (0 unless ``include_noise``), so ``predict``'s variance is the
        covariance's diagonal plus the noise.  What a batch rule needs to condition on pending picks."""
        mean, cov = self._joint_standardized(X)
        var = self._y_std ** 2
        noise = self._noise * var if self.include_noise else torch.zeros_like(self._noise)
        return ((mean * self._y_std[:, None] + self._y_mean[:, None]).T.numpy(), (cov * var[:, None, None]).numpy(),
                noise.detach().numpy())

    def sample(self, X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``float[n, k, m]``: draws from the joint posterior at the ``bool[k, d]`` masks, per
        objective (``K** - K*n (K + s^2 I)^-1 Kn*``, plus the noise where ``include_noise``)."""
        mean, cov = self._joint_standardized(X)
        m, k = mean.shape
        with torch.no_grad():
            if self.include_noise:
                cov = cov + torch.diag_embed(self._noise[:, None].expand(m, k))
            evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
            root = evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)  # [m, k, k]
            z = torch.as_tensor(rng.standard_normal((int(n), m, k)), dtype=torch.float64)
            draws = mean + (root @ z.unsqueeze(-1)).squeeze(-1)  # [n, m, k]
            draws = draws * self._y_std[:, None] + self._y_mean[:, None]
        return draws.transpose(1, 2).numpy()

    def predict_torch(self, X: Tensor, *, chunk_rows: int = 4096) -> tuple[Tensor, Tensor]:
        """``[k, d]`` tensor (bool or 0/1 float, ``1`` = keep) -> ``(mean, std)`` float32 tensors ``[k, m]``.

        No gradients, no numpy; rows are processed ``chunk_rows`` at a time to bound memory
        (``m * chunk_rows * n`` doubles per chunk).
        """
        if self._n_bits is None:
            raise RuntimeError("the surrogate is not fitted: call fit(X, Y) before predict")
        if X.dim() != 2 or X.shape[1] != self._n_bits:
            raise ValueError(f"X must have shape [k, {self._n_bits}], got {list(X.shape)}")
        mean, std = self._predict(X.cpu().to(torch.float64), chunk_rows=chunk_rows)
        return mean.to(torch.float32), std.to(torch.float32)

    def _predict(self, X: Tensor, *, chunk_rows: int) -> tuple[Tensor, Tensor]:
        """Posterior mean and standard deviation for float64 ``X [k, d]`` -> ``[k, m]`` each."""
        m = self._alpha.shape[0]
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk_rows):
                x = X[start:start + chunk_rows]
                k_cross = self.model.covar_module(x, self._train_x).to_dense().reshape(m, x.shape[0], -1)  # [m, k, n]
                mean = self._const[:, None] + (k_cross @ self._alpha.unsqueeze(-1)).squeeze(-1)  # [m, k]
                explained = (k_cross @ self._L_inv.transpose(-1, -2)).pow(2).sum(-1)  # [m, k]
                # k(x, x) is the outputscale for every kernel here (each kernel is 1 on the diagonal)
                var = (self._outputscale[:, None] - explained).clamp_min(0)
                if self.include_noise:
                    var = var + self._noise[:, None]
                means.append(mean * self._y_std[:, None] + self._y_mean[:, None])
                stds.append(var.sqrt() * self._y_std[:, None])
        if not means:
            return torch.zeros(0, m, dtype=torch.float64), torch.zeros(0, m, dtype=torch.float64)
        return torch.cat(means, dim=1).T, torch.cat(stds, dim=1).T
