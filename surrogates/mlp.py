"""MLP ensemble surrogate: several small multi-output networks, mean and spread across them.

The members are trained together as one batched network (weights ``[E, fan_in, fan_out]``),
which on a CPU is several times faster than a loop over ``E`` separate ``nn.Module``s.
Each member has its own initialization, its own validation split (early stopping) and its
own mini-batch order, which is where the ensemble's diversity comes from.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from framework.surrogate import Surrogate
from surrogates._data import query_masks, training_data

__all__ = ["MLPEnsemble"]

_ACTIVATIONS = {"relu": torch.relu, "silu": torch.nn.functional.silu, "tanh": torch.tanh}
_ENCODINGS = ("pruned", "keep")
_MEDIAN_ABS_NORMAL = 0.6744897501960817  # median of |z| for a standard normal z


class _BatchedMLP(torch.nn.Module):
    """``E`` independent MLPs ``d -> hidden... -> m`` evaluated in one batched matmul per layer."""

    def __init__(self, n_members: int, sizes: list[int], activation: str, generator: torch.Generator,
                 linear_skip: bool = False) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # torch.nn.Linear's default init, drawn from our generator so a seed fixes it
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(n_members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(n_members, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))
        self.activation = _ACTIVATIONS[activation]
        self.skip = None
        if linear_skip:
            bound = 1.0 / math.sqrt(sizes[0])
            self.skip = torch.nn.Parameter((torch.rand(n_members, sizes[0], sizes[-1], generator=generator) * 2 - 1)
                                           * bound)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[E, B, d]`` (one batch per member) or ``[B, d]`` (shared) -> ``[E, B, m]``."""
        last = len(self.weights) - 1
        inputs = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w) if x.dim() == 3 else torch.matmul(x, w) + b
            if i < last:
                x = self.activation(x)
        if self.skip is not None:
            x = x + (torch.bmm(inputs, self.skip) if inputs.dim() == 3 else torch.matmul(inputs, self.skip))
        return x


class MLPEnsemble(Surrogate):
    """Ensemble of small multi-output MLPs (mean and spread across members), early-stopped."""

    summary = "ensemble of small torch MLPs, one output per objective; mean and spread across members"

    def __init__(self, *, n_members: int = 5, hidden: tuple[int, ...] = (128, 128), activation: str = "silu",
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 64,
                 max_epochs: int = 400, patience: int = 20, validation_fraction: float = 0.2,
                 encoding: str = "pruned", linear_skip: bool = False, calibrate_std: bool = True,
                 seed: int = 0) -> None:
        """Args:
            n_members: networks in the ensemble (>= 2, the spread needs two).
            hidden: widths of the hidden layers.
            activation: ``"relu"``, ``"silu"`` or ``"tanh"``.
            learning_rate: Adam step size.
            weight_decay: AdamW's decoupled weight-decay coefficient.
            batch_size: mini-batch rows per member per step.
            max_epochs: upper bound on passes over each member's training rows.
            patience: epochs without a better validation loss before a member's best weights are final
                (training stops when every member has run out of patience).
            validation_fraction: share of the rows each member holds out for early stopping
                (its own random split); no split below 10 rows (then ``max_epochs`` are run).
            encoding: network input: ``"pruned"`` = ``1 - mask`` (the unpruned model is the zero
                vector) or ``"keep"`` = the mask as 0/1.
            linear_skip: add a linear map from the inputs straight to the outputs (helps when an
                objective is close to additive in the heads; off by default).
            calibrate_std: rescale the spread per objective so that it matches the members'
                out-of-split errors (an ensemble of a few nets is otherwise over-confident).
            seed: fixes initialization, splits and mini-batch order.
        """
        if n_members < 2:
            raise ValueError(f"n_members must be >= 2 (the spread needs two members), got {n_members}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {hidden}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if encoding not in _ENCODINGS:
            raise ValueError(f"encoding must be one of {_ENCODINGS}, got {encoding!r}")
        if not 0.0 < validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in (0, 0.5), got {validation_fraction}")
        if learning_rate <= 0 or weight_decay < 0 or batch_size < 1 or max_epochs < 1 or patience < 1:
            raise ValueError(f"need learning_rate > 0, weight_decay >= 0, batch_size, max_epochs, patience >= 1; "
                             f"got {learning_rate}, {weight_decay}, {batch_size}, {max_epochs}, {patience}")
        self.n_members = int(n_members)
        self.hidden = hidden
        self.activation = activation
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.validation_fraction = float(validation_fraction)
        self.encoding = encoding
        self.calibrate_std = bool(calibrate_std)
        self.linear_skip = bool(linear_skip)
        self.seed = int(seed)
        self._net: _BatchedMLP | None = None
        self._n_bits: int | None = None
        self.epochs_run: int = 0
        """Epochs the last :meth:`fit` ran (diagnostics)."""

    # -- fitting ---------------------------------------------------------------------------
    def _encode(self, X: Tensor) -> Tensor:
        X = X.to(torch.float32)
        return 1.0 - X if self.encoding == "pruned" else X

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MLPEnsemble:
        """Fit on ``bool[n, d]`` masks and ``float[n, m]`` values (non-finite rows dropped); returns ``self``."""
        masks, values = training_data(X, Y)
        n, d = masks.shape
        m = values.shape[1]
        gen = torch.Generator().manual_seed(self.seed)
        E = self.n_members

        y_mean = values.mean(axis=0)
        y_std = values.std(axis=0)
        y_std = np.where(y_std > 1e-12, y_std, 1.0)
        x_all = self._encode(torch.from_numpy(masks))
        y_all = torch.from_numpy((values - y_mean) / y_std).to(torch.float32)

        net = _BatchedMLP(E, [d, *self.hidden, m], self.activation, gen, self.linear_skip)
        n_val = int(round(self.validation_fraction * n)) if n >= 10 else 0
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(E)])  # [E, n]
        val_idx, train_idx = perms[:, :n_val], perms[:, n_val:]
        n_train = n - n_val
        batch = min(self.batch_size, n_train)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True)

        best_loss = torch.full((E,), math.inf)
        best_params = [p.detach().clone() for p in net.parameters()]
        waited = torch.zeros(E, dtype=torch.long)
        members = torch.arange(E)[:, None]
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):  # noqa: B007 - epoch is reported after the loop
            net.train()
            order = torch.argsort(torch.rand(E, n_train, generator=gen), dim=1)
            shuffled = train_idx[members, order]  # [E, n_train], each member its own order
            for start in range(0, n_train, batch):
                idx = shuffled[:, start:start + batch]
                pred = net(x_all[idx])
                loss = (pred - y_all[idx]).pow(2).mean(dim=(1, 2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if n_val == 0:
                continue
            net.eval()
            with torch.no_grad():
                val_loss = (net(x_all[val_idx]) - y_all[val_idx]).pow(2).mean(dim=(1, 2))
                better = val_loss < best_loss * (1 - 1e-4)
                best_loss = torch.where(better, val_loss, best_loss)
                waited = torch.where(better, 0, waited + 1)
                if better.any():
                    for best, p in zip(best_params, net.parameters(), strict=True):
                        best[better] = p.detach()[better]
            if bool((waited >= self.patience).all()):
                break
        if n_val > 0:
            with torch.no_grad():
                for best, p in zip(best_params, net.parameters(), strict=True):
                    p.copy_(best)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)

        self._net = net
        self._n_bits = d
        self.epochs_run = epoch
        self._y_mean = torch.as_tensor(y_mean, dtype=torch.float32)
        self._y_std = torch.as_tensor(y_std, dtype=torch.float32)
        self._std_scale = torch.ones(m)
        if self.calibrate_std and n_val > 0:
            self._std_scale = self._spread_scale(x_all, y_all, val_idx)
        return self

    def _spread_scale(self, x: Tensor, y: Tensor, val_idx: Tensor) -> Tensor:
        """Per-objective factor ``c`` so that ``c * spread`` matches the ensemble mean's error.

        For a point no member trained on, ``y - f_e = (y - mean) + (mean - f_e)``: if the error
        of the mean has standard deviation ``c * spread``, a member's error has ``spread *
        sqrt(1 + c^2)`` (``spread`` with ``ddof=0``).  Each member's own validation rows stand in
        for such points; ``sqrt(1 + c^2)`` is set from the median of ``|y - f_e| / spread``
        (0.674 for a standard normal; the median resists the few points where the spread is
        tiny), and ``c`` is floored at 0.5 so that a lucky split cannot collapse the spread.
        """
        with torch.no_grad():
            preds = self._net(x)  # [E, n, m]
            spread = preds.std(dim=0, correction=0)  # [n, m]
            members = torch.arange(self.n_members)[:, None]
            ratio = (preds[members, val_idx] - y[val_idx]).abs() / spread[val_idx].clamp_min(1e-12)  # [E, n_val, m]
            inflation = ratio.reshape(-1, ratio.shape[-1]).median(dim=0).values / _MEDIAN_ABS_NORMAL
            c2 = (inflation.pow(2) - 1).clamp_min(0.25)
            # predict_torch uses the ddof=1 spread: convert c to that
            return (c2 * (self.n_members - 1) / self.n_members).sqrt()

    # -- prediction ------------------------------------------------------------------------
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``bool[k, d]`` -> ``(mean float[k, m], std float[k, m])`` in the units of the fitted ``Y``."""
        masks = query_masks(X, self._n_bits)
        mean, std = self.predict_torch(torch.from_numpy(masks))
        return mean.numpy().astype(float), std.numpy().astype(float)

    def sample(self, X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``float[n, k, m]``: the members' predictions (draw ``i`` is member ``i mod E``, members in
        an order drawn from ``rng``), their deviations from the mean scaled like the calibrated
        spread, so the draws spread as :meth:`predict`'s ``std`` says."""
        masks = torch.from_numpy(query_masks(X, self._n_bits))
        if self._net is None:
            raise RuntimeError("the surrogate is not fitted: call fit(X, Y) before sample")
        with torch.no_grad():
            preds = self._net(self._encode(masks))  # [E, k, m]
            mean = preds.mean(dim=0)
            draws = mean + (preds - mean) * self._std_scale * (self.n_members / (self.n_members - 1)) ** 0.5
        order = np.resize(rng.permutation(self.n_members), int(n))
        return (draws[torch.as_tensor(order)] * self._y_std + self._y_mean).numpy().astype(float)

    def predict_torch(self, X: Tensor, *, chunk_rows: int = 16384) -> tuple[Tensor, Tensor]:
        """``[k, d]`` tensor (bool or 0/1 float, ``1`` = keep) -> ``(mean, std)`` float32 tensors ``[k, m]``.

        No gradients, no numpy; rows are processed ``chunk_rows`` at a time to bound memory.
        """
        if self._net is None:
            raise RuntimeError("the surrogate is not fitted: call fit(X, Y) before predict")
        if X.dim() != 2 or X.shape[1] != self._n_bits:
            raise ValueError(f"X must have shape [k, {self._n_bits}], got {list(X.shape)}")
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk_rows):
                preds = self._net(self._encode(X[start:start + chunk_rows].cpu()))  # [E, k, m]
                means.append(preds.mean(dim=0))
                stds.append(preds.std(dim=0))
        mean = torch.cat(means) if means else torch.zeros(0, len(self._y_mean))
        std = torch.cat(stds) if stds else torch.zeros(0, len(self._y_mean))
        return mean * self._y_std + self._y_mean, std * (self._std_scale * self._y_std)
