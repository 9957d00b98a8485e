"""A head-structured synthetic problem built from FASP's published per-head knock-out scores.

FASP (Zayed et al., AAAI 2024) published, for several models, the bias and perplexity
measured after removing each single attention head (``head_contributions.json``:
``cont_to_<axis>_bias`` and ``cont_to_ppl``, layer-major lists of ``L*H`` values).  This
problem turns them into a cheap, realistic, *non-separable* landscape over the model's real
head layout:

* unpruned values ``b0``, ``p0``: the medians of the single-head scores (most heads barely
  matter, so the median knock-out is close to the unpruned model);
* per-head effects ``db_i = bias_i - b0`` and ``dp_i = log(ppl_i / p0)``;
* bias(mask) = ``max(0, b0 + sum_{i pruned} db_i + sum_{i<j pruned, same layer} J_ij)``;
* log ppl(mask) = ``log p0 + sum_{i pruned} dp_i + sum_{i<j pruned, same layer} K_ij``;

with seeded pairwise interactions inside each layer: ``J_ij ~ N(0, (interaction * std(db))^2)``
and ``K_ij = |N(0, (interaction * mean|dp|)^2)|`` (pruning two heads of one layer costs more
than the sum, as measured on SmolLM2 in design.md).  Objectives: (bias, perplexity), both
minimized.  Reference point ``(b0, 1.5 * p0)``: a mask must beat the unpruned model's bias
and keep perplexity under +50% to add hypervolume.  Bounds: ``[[0.5 * b0, p0], ref]``.

The data file is read from a path the user gives (it is not shipped with the product).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from framework.problem import Problem
from framework.space import HeadSpace
from objectives.noisy_sensitivities import NoisyFlipSensitivities, noise_entry, noise_ratios

__all__ = ["FaspHeadsProblem"]

# layers x heads of the models in the published file (the file stores flat lists)
_LAYOUT = {"gpt2": (12, 12), "distilgpt2": (6, 12), "EleutherAI/gpt-neo-125M": (12, 12),
           "EleutherAI/pythia-70m": (6, 8), "EleutherAI/pythia-160m": (12, 12), "facebook/opt-350m": (24, 16)}


class FaspHeadsProblem(NoisyFlipSensitivities, Problem):
    """Head-structured landscape from FASP's per-head knock-out scores, with seeded in-layer interactions."""

    name = "fasp-heads"
    summary = "bias/perplexity landscape from FASP's published per-head scores + seeded in-layer interactions"
    bias_objective = 0             # objectives (bias, perplexity): perplexity is the utility cost
    cost_objectives = (1,)

    def __init__(self, *, path: str, model: str = "gpt2", axis: str = "gender_and_sex", interaction: float = 0.5,
                 seed: int = 0, max_pruned_fraction: float = 0.3, protected: tuple[int, ...] = (),
                 sensitivity_noise: float | list[float] | None = None) -> None:
        """Args:
            path: ``head_contributions.json`` as published with FASP.
            model: a model of that file with a known layout (gpt2, distilgpt2, EleutherAI/gpt-neo-125M, ...).
            axis: HolisticBias axis whose ``cont_to_<axis>_bias`` scores are used.
            interaction: scale of the in-layer pairwise interactions (0 = additive, separable).
            seed: seeds the interactions.
            sensitivity_noise: offer noisy head sensitivities (:mod:`objectives.noisy_sensitivities`);
                ``None``: none.
        """
        self.sensitivity_noise = noise_ratios(sensitivity_noise, 2)
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"fasp-heads: no file {str(p)!r} (FASP's head_contributions.json)")
        data = json.loads(p.read_text())
        if model not in data:
            raise ValueError(f"fasp-heads: model {model!r} not in {str(p)!r}; it has {sorted(data)}")
        if model not in _LAYOUT:
            raise ValueError(f"fasp-heads: layout of {model!r} unknown; known: {sorted(_LAYOUT)}")
        key = f"cont_to_{axis}_bias"
        if key not in data[model]:
            axes = sorted(k[len("cont_to_"):-len("_bias")] for k in data[model] if k.endswith("_bias"))
            raise ValueError(f"fasp-heads: axis {axis!r} not published for {model!r}; axes: {axes}")
        n_layers, n_heads = _LAYOUT[model]
        bias = np.asarray(data[model][key], dtype=float)
        ppl = np.asarray(data[model]["cont_to_ppl"], dtype=float)
        if bias.size != n_layers * n_heads or ppl.size != bias.size:
            raise ValueError(f"fasp-heads: {model!r} has {bias.size} scores, expected {n_layers * n_heads}")
        self.model, self.axis, self.interaction, self.seed = model, axis, float(interaction), int(seed)
        self.path = str(p)
        self._digest = hashlib.sha256(json.dumps([bias.tolist(), ppl.tolist()]).encode()).hexdigest()[:16]
        self.b0, self.p0 = float(np.median(bias)), float(np.median(ppl))
        self.db = bias - self.b0
        self.dp = np.log(ppl / self.p0)
        rng = np.random.default_rng(seed)
        d = n_layers * n_heads
        same_layer = np.equal.outer(np.arange(d) // n_heads, np.arange(d) // n_heads) & ~np.eye(d, dtype=bool)
        j = np.triu(rng.normal(0.0, self.interaction * self.db.std(), (d, d)) * same_layer, 1)
        k = np.triu(np.abs(rng.normal(0.0, self.interaction * np.abs(self.dp).mean(), (d, d))) * same_layer, 1)
        self.J, self.K = j + j.T, k + k.T
        self.space = HeadSpace(n_layers, n_heads, max_pruned_fraction=max_pruned_fraction,
                               protected=frozenset(protected))
        self.objective_names = ("bias", "perplexity")
        self.ref_point = np.array([self.b0, 1.5 * self.p0])
        self.bounds = np.array([[0.5 * self.b0, self.p0], self.ref_point])

    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray:
        pruned = (~masks).astype(float)
        pair = lambda m: 0.5 * np.einsum("ni,ij,nj->n", pruned, m, pruned)  # noqa: E731 - sum over i<j
        bias = np.maximum(0.0, self.b0 + pruned @ self.db + pair(self.J))
        ppl = self.p0 * np.exp(pruned @ self.dp + pair(self.K))
        return np.stack([bias, ppl], axis=1)

    def baseline(self, split: str = "search") -> np.ndarray:
        return np.array([self.b0, self.p0])

    def describe(self) -> dict:
        return {"model": self.model, "axis": self.axis, "interaction": self.interaction, "seed": self.seed,
                "data_sha256": self._digest, **noise_entry(self)}
