"""Thompson sampling: pick the masks that are best under draws from the surrogate's posterior.

Batch selection from a pool draws one *joint* sample over the whole pool per pick
(:meth:`~framework.surrogate.Surrogate.sample`: the GP's exact joint posterior, an ensemble's
members, independent Gaussians for a surrogate without either) and takes the best row under
an augmented Chebyshev scalarization with random weights, so a batch spreads over the front
the way posterior uncertainty says it might lie.

As an energy for an optimizer (annealing chains), member ``i`` scores ``mean + z_i * std`` with
a fixed standard-normal vector ``z_i`` per member: a sample that is consistent from one step
to the next (a chain needs one function to lower), perfectly correlated across masks; the
joint draws of the batch selection are what makes it Thompson sampling.
"""

from __future__ import annotations

import numpy as np
import torch

from acquisition.base import Acquisition, Selection
from acquisition.scalarizations import CHEBYSHEV_AUGMENT, spread_weights

__all__ = ["ThompsonSampling"]


class ThompsonSampling(Acquisition):
    """Chebyshev scalarization of posterior samples (joint over the pool in :meth:`select`)."""

    name = "thompson"
    summary = "Thompson sampling: best mask under joint posterior draws, random Chebyshev weights per pick"

    def _setup(self, rng: np.random.Generator) -> None:
        s = self.state
        front = s.front()
        ideal = front.min(axis=0)
        self._ideal = ideal
        self._scale = np.maximum(front.max(axis=0) - ideal, 0.05)
        self._w = spread_weights(self.n_members, s.n_objectives, rng)
        self._z = rng.standard_normal((self.n_members, s.n_objectives))
        self._rng = rng

    def _chebyshev(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        wd = w * (y - self._ideal) / self._scale
        return wd.max(axis=-1) + CHEBYSHEV_AUGMENT * wd.sum(axis=-1)

    def score(self, mean, std, member):
        z = torch.as_tensor(self._z, dtype=torch.float32)[member]
        y = (mean + z * std).double().numpy()
        return torch.as_tensor(self._chebyshev(y, self._w[member.numpy()]), dtype=torch.float32)

    def select(self, model, pool: np.ndarray, n: int, rng: np.random.Generator) -> Selection:
        mean, std = model.predict(pool)
        k = min(n, len(pool))
        rows: list[int] = []
        if k == 0:
            return Selection(rows, mean, std)
        draws = model.sample(pool, k, rng)  # float[k, len(pool), m]
        alive = np.ones(len(pool), dtype=bool)
        for i in range(k):
            w = rng.dirichlet(np.ones(self.state.n_objectives))
            e = self._chebyshev(draws[i], w)
            e[~alive] = np.inf
            best = int(np.argmin(e))
            rows.append(best)
            alive[best] = False
        return Selection(rows, mean, std)
