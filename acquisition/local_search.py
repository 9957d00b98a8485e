"""Local search over single flips: an acquisition optimizer.

Every chain looks at all its valid one-head flips at once (one energy call of ``c * d`` rows
per step), moves to the best one if it lowers the energy, and stops at a local minimum, at
``max_steps`` or at the edge of its trust region (a Hamming radius around its start).
Cheaper than annealing when the acquisition is smooth around the told masks; annealing
crosses barriers that single flips cannot.
"""

from __future__ import annotations

import torch

from acquisition.annealing import EnergyFn, OptimizerResult, SimulatedAnnealing
from framework.space import HeadSpace

__all__ = ["LocalSearch"]


class LocalSearch:
    """Batched best-improvement local search over single flips of a :class:`HeadSpace`.

    Args:
        space: the search space (protected heads are never flipped; at most ``max_pruned`` pruned).
        max_steps: improving moves per chain at most (>= 1).
        n_snapshots: states kept per chain (the last ``n_snapshots`` visited before the end).
    """

    def __init__(self, space: HeadSpace, *, max_steps: int = 20, n_snapshots: int = 4) -> None:
        if max_steps < 1 or n_snapshots < 0:
            raise ValueError(f"max_steps must be >= 1 and n_snapshots >= 0, got {max_steps}, {n_snapshots}")
        self.space = space
        self.max_steps = int(max_steps)
        self.n_snapshots = int(n_snapshots)
        self._free = torch.as_tensor(~space.protected_mask)

    @torch.no_grad()
    def run(self, energy: EnergyFn, x0: torch.Tensor, generator: torch.Generator | None = None, *,
            max_distance: int | None = None) -> OptimizerResult:
        """Descend ``c`` chains from ``x0`` (``bool[c, d]``, valid); ``energy`` as for
        :meth:`SimulatedAnnealing.run`; ``generator`` is unused (the search is deterministic)."""
        if max_distance is not None and max_distance < 1:
            raise ValueError(f"max_distance must be >= 1 or None, got {max_distance}")
        x = torch.as_tensor(x0, dtype=torch.bool).clone()
        c, d = x.shape
        if d != self.space.dim:
            raise ValueError(f"x0 must have shape [c, {self.space.dim}], got {list(x.shape)}")
        bad = ~torch.as_tensor(self.space.is_valid(x.numpy()))
        if bad.any():
            raise ValueError(f"start states {torch.nonzero(bad).flatten()[:5].tolist()} break the space's constraints")
        chains = torch.arange(c)
        e = SimulatedAnnealing._energy_of(energy, x, chains)
        calls, anchor, moved_steps = 1, x.clone(), torch.zeros(c)
        eye = torch.eye(d, dtype=torch.bool)
        snapshots = []
        active = torch.ones(c, dtype=torch.bool)
        for _ in range(self.max_steps):
            if not active.any():
                break
            nb = x[:, None, :] ^ eye[None]  # [c, d, d]: flip head j of chain i
            n_pruned = (~nb).sum(dim=2)
            ok = self._free[None, :].expand(c, d) & (n_pruned <= self.space.max_pruned) & active[:, None]
            if max_distance is not None:
                ok &= (nb != anchor[:, None, :]).sum(dim=2) <= max_distance
            e_nb = SimulatedAnnealing._energy_of(energy, nb.reshape(c * d, d), chains.repeat_interleave(d))
            e_nb = e_nb.reshape(c, d)
            calls += 1
            e_nb = torch.where(ok, e_nb, torch.full_like(e_nb, float("inf")))
            best_e, best_j = e_nb.min(dim=1)
            step = best_e < e
            x = torch.where(step[:, None], nb[chains, best_j], x)
            e = torch.where(step, best_e, e)
            moved_steps += step.float()
            active &= step
            snapshots.append(x.clone())
        snaps = torch.stack(snapshots[-self.n_snapshots:]) if snapshots and self.n_snapshots \
            else torch.zeros(0, c, d, dtype=torch.bool)
        return OptimizerResult(best_x=x, best_energy=e, final_x=x.clone(), snapshots=snaps, t0=torch.zeros(c),
                               acceptance=moved_steps / self.max_steps, n_energy_calls=calls)
