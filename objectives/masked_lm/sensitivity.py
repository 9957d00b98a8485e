"""Head sensitivities of the ``masked-lm`` problem: both objectives' gradients in the gates.

``problem_gradients(problem, gates, split)`` returns, for the bias objective and perplexity,
the value at continuous head gates ``gates`` and the gradient ``d objective / d g`` for the
point estimate and for each bootstrap replicate (the same resampled sampling units as the
evaluation's standard errors: occupations and templates, item families, descriptors with
templates and nouns, windows).  At ``gates = mask`` the first-order estimate of flipping head
``h`` is ``grad_h * (-1 if kept else +1)`` (:func:`sensitivities_of`).

Every likelihood-based bias metric has them (``pronoun``, ``swap``, ``pairs``,
``likelihood``); ``generation`` (sampled text scored by a classifier) has no gradient.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from framework.problem import NoSensitivities, Sensitivities
from objectives.masked_lm.counterfactual import COUNTERFACTUAL_METRICS
from objectives.masked_lm.gradients import (
    aggregate_gradients,
    frozen_parameters,
    sentence_jacobian,
    window_nll_jacobian,
)
from objectives.masked_lm.metrics import group_bias_torch

__all__ = ["problem_gradients", "sensitivities_of", "SENSITIVITY_METRICS"]

#: bias metrics with head sensitivities
SENSITIVITY_METRICS = (*COUNTERFACTUAL_METRICS, "likelihood")


def _bias_gradients(problem, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    kind = problem.bias_metric
    if kind in COUNTERFACTUAL_METRICS:
        return problem._counterfactual(kind).gradients(problem.model, problem.masker, gates, split)
    if kind != "likelihood":
        raise NoSensitivities(f"the {kind!r} bias metric has no head sensitivities (it scores generated text; "
                              f"sensitivities need a likelihood: one of {SENSITIVITY_METRICS})")
    data = problem._prepared(problem.axis, split, "likelihood")
    base = problem._baseline_raw(split, problem.axis, "likelihood")
    scope = "after" if problem.scope == "after" else "all"
    counts = np.maximum(np.asarray(base["n_after"] if scope == "after" else base["n_all"], dtype=float), 1.0)
    raw, jac = sentence_jacobian(problem.model, problem.masker, gates, data.encoded, scope)
    n = len(data.items)
    item_w = torch.as_tensor(np.vstack([np.ones((1, n)), data.boot.item]))
    unit_w = torch.as_tensor(np.vstack([np.ones((1, data.table.n_units)), data.boot.unit]))
    n_t = torch.as_tensor(counts)
    agg = problem._aggregate(kind)

    def objective(r: torch.Tensor) -> torch.Tensor:
        return group_bias_torch(r / n_t, data.table, aggregate=agg, item_weights=item_w, unit_weights=unit_w)

    return aggregate_gradients(objective, raw, jac)


def _perplexity_gradients(problem, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    win = problem._windows[split]
    nll, jac, n_scored = window_nll_jacobian(problem.model, problem.masker, gates, win.input_ids, win.stride,
                                             batch_size=problem.window_batch_size)
    n = nll.size
    rng = np.random.default_rng([problem.seed, 13])  # the draws of bootstrap_perplexity
    idx = torch.as_tensor(rng.integers(0, n, size=(problem.n_boot, n)))

    def objective(r: torch.Tensor) -> torch.Tensor:
        point = torch.exp(r.mean() / n_scored)[None]
        return torch.cat([point, torch.exp(r[idx].mean(1) / n_scored)])

    return aggregate_gradients(objective, nll, jac)


def problem_gradients(problem, gates: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(values float[2, 1 + B], gradients float[2, 1 + B, d])`` of (bias, perplexity) at ``gates``
    (``float[d]``): column 0 the point value, the others the bootstrap replicates."""
    g = np.asarray(gates, dtype=np.float32).reshape(-1)
    if g.size != problem.space.dim:
        raise ValueError(f"gates must have {problem.space.dim} entries, got {g.size}")
    problem.masker.set_masks(None)
    with frozen_parameters(problem.model):
        vb, gb = _bias_gradients(problem, g, split)
        vp, gp = _perplexity_gradients(problem, g, split)
    return np.stack([vb, vp]), np.stack([gb, gp])


def sensitivities_of(problem, mask: np.ndarray, split: str) -> Sensitivities:
    """The :class:`~framework.problem.Sensitivities` of ``mask`` (first order in the gates)."""
    t0 = time.perf_counter()
    values, grads = problem_gradients(problem, mask.astype(np.float32), split)
    sign = np.where(mask, -1.0, 1.0)                    # kept heads are switched off, pruned ones back on
    delta_reps = grads * sign                           # [2, 1 + B, d]
    se = delta_reps[:, 1:].std(axis=1, ddof=1)
    base = problem.baseline(split)
    info: dict[str, Any] = {"split": split, "bias_metric": problem.bias_metric, "method": "gate-gradient",
                            "baseline": base.tolist(), "seconds": time.perf_counter() - t0,
                            "value_se": values[:, 1:].std(axis=1, ddof=1).tolist(),
                            "n_boot": int(values.shape[1] - 1)}
    return Sensitivities(mask.copy(), delta_reps[:, 0], se, values[:, 0], info)
