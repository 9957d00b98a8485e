"""Batched simulated annealing over head masks, in torch: an acquisition optimizer.

Many chains advance together: every step proposes one move per chain, scores all proposals
with **one** call of the energy function (``energy(x float[k, d], chain long[k]) -> float[k]``:
a surrogate's ``predict_torch`` behind each chain's own scalarization) and applies the
Metropolis rule per chain.

Moves keep every constraint of the :class:`~framework.space.HeadSpace`: protected heads are
never pruned and no state prunes more than ``space.max_pruned`` heads, provided the start
states are valid (they are checked).  The moves:

- ``flip``: flip one unprotected head (pruning only while there is room);
- ``swap``: restore one pruned head and prune one kept head anywhere (pruned count kept);
- ``kv_swap``: the same inside one KV group (``kind="kv"`` edges of ``space.graph``);
- ``layer_swap``: the same between KV groups of one layer (``kind="layer"`` edges);
- ``group``: restore a partly pruned KV group, or prune a whole kept one (where there is room).

The structure-aware moves exist only for structured spaces; a plain binary space uses
``flip`` and ``swap``.  Each step draws one move kind for all chains, in proportion to
:class:`MoveWeights` (a few tensor ops per step instead of all kinds' every step); a chain
where that kind is infeasible (a swap with nothing pruned) flips a head instead.

The initial temperature of each chain is set from a target initial acceptance ratio
(Kirkpatrick's rule, ``T0 = -mean(dE+) / ln(chi0)`` over trial moves from the start state);
it then cools geometrically or logarithmically to ``final_temperature_ratio * T0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields

import networkx as nx
import numpy as np
import torch

from framework.space import HeadSpace

__all__ = ["AnnealSchedule", "COOLINGS", "HeadMoves", "MoveWeights", "OptimizerResult", "SimulatedAnnealing",
           "temperature_schedule"]

COOLINGS = ("geometric", "logarithmic")

EnergyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MoveWeights:
    """Relative frequency of each move (non-negative; a zero weight disables the move)."""

    flip: float = 1.0
    swap: float = 1.0
    kv_swap: float = 0.5
    layer_swap: float = 0.5
    group: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            w = getattr(self, f.name)
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"move weight {f.name} must be a finite number >= 0, got {w!r}")
        if sum(astuple(self)) <= 0:
            raise ValueError("at least one move weight must be > 0")

    @classmethod
    def from_value(cls, value: MoveWeights | dict | None) -> MoveWeights:
        """Accept an instance, a ``{move: weight}`` dict (missing moves keep their default) or ``None``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            names = [f.name for f in fields(cls)]
            bad = sorted(set(value) - set(names))
            if bad:
                raise ValueError(f"unknown move(s) {bad}; moves are {names}")
            return cls(**{k: float(v) for k, v in value.items()})
        raise TypeError(f"move weights must be a MoveWeights, a dict or None, got {type(value).__name__}")

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


MOVES = tuple(f.name for f in fields(MoveWeights))


@dataclass(frozen=True)
class AnnealSchedule:
    """How a run of simulated annealing cools (validated once, here).

    Attributes:
        n_steps: steps per chain (one energy call per step for all chains), >= 1.
        cooling: ``"geometric"`` or ``"logarithmic"`` (see :func:`temperature_schedule`).
        initial_acceptance: target fraction of uphill moves accepted at the start, in (0, 1);
            sets each chain's initial temperature.
        final_temperature_ratio: last temperature as a fraction of the initial one, in (0, 1].
        n_trials: trial moves per chain used to set the initial temperature (one energy call), >= 1.
        n_snapshots: states recorded per chain over the second half of the run, >= 0.
    """

    n_steps: int = 1000
    cooling: str = "geometric"
    initial_acceptance: float = 0.5
    final_temperature_ratio: float = 1e-3
    n_trials: int = 16
    n_snapshots: int = 8

    def __post_init__(self) -> None:
        if not (isinstance(self.n_steps, (int, np.integer)) and self.n_steps >= 1):
            raise ValueError(f"n_steps must be an integer >= 1, got {self.n_steps!r}")
        if self.cooling not in COOLINGS:
            raise ValueError(f"cooling must be one of {COOLINGS}, got {self.cooling!r}")
        if not 0.0 < self.initial_acceptance < 1.0:
            raise ValueError(f"initial_acceptance must be in (0, 1), got {self.initial_acceptance}")
        if not 0.0 < self.final_temperature_ratio <= 1.0:
            raise ValueError(f"final_temperature_ratio must be in (0, 1], got {self.final_temperature_ratio}")
        if self.n_trials < 1 or self.n_snapshots < 0:
            raise ValueError(f"n_trials must be >= 1 and n_snapshots >= 0, got {self.n_trials}, {self.n_snapshots}")


def _pick(allowed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One column per row of ``allowed`` (``bool[c, k]``), uniformly among the True ones.

    Returns ``(index long[c], ok bool[c])``; ``ok`` is False for rows with nothing allowed."""
    u = torch.rand(allowed.shape, generator=generator)
    u = torch.where(allowed, u + 1.0, torch.zeros_like(u))  # allowed entries in [1, 2), others 0
    return u.argmax(dim=1), allowed.any(dim=1)


class HeadMoves:
    """Constraint-preserving random moves on ``bool[c, d]`` states of one :class:`HeadSpace`."""

    def __init__(self, space: HeadSpace, weights: MoveWeights | dict | None = None) -> None:
        self.space = space
        self.weights = MoveWeights.from_value(weights)
        self.free = torch.as_tensor(~space.protected_mask)  # bool[d]
        self.max_pruned = int(space.max_pruned)
        # KV groups = components of the "kv" edges; layers = components of all edges.  Group
        # counts (one small matmul) tell which pruned heads have a kept partner, instead of a
        # [d, d] adjacency product per step.
        g = space.graph
        kv_graph = nx.Graph([(a, b) for a, b, kind in g.edges(data="kind") if kind == "kv"])
        kv_graph.add_nodes_from(g.nodes)
        self._kv_of = _component_ids(kv_graph)  # long[d]
        self._layer_of = _component_ids(g)  # long[d]
        free_f = self.free.float()
        self._kv_members = torch.nn.functional.one_hot(self._kv_of).float() * free_f[:, None]  # [d, gk]
        self._layer_members = torch.nn.functional.one_hot(self._layer_of).float() * free_f[:, None]  # [d, gl]
        group_sizes = self._kv_members.sum(dim=0)  # free heads per KV group
        has_kv = bool(((group_sizes - 1).clamp(min=0) > 0).any())
        has_layer = bool((self._layer_members.sum(dim=0)[self._layer_of] - group_sizes[self._kv_of] > 0).any())
        w = self.weights.as_dict()
        enabled = {"flip": True, "swap": True,
                   "kv_swap": space.structured and has_kv,
                   "layer_swap": space.structured and has_layer,
                   "group": space.structured and has_kv}
        self.active = tuple(mv for mv in MOVES if enabled[mv] and w[mv] > 0)
        if not self.active:
            raise ValueError(f"no move is enabled for this space with weights {w}")
        self._w = torch.tensor([w[mv] for mv in self.active], dtype=torch.float32)
        self._group_size = group_sizes  # float[gk]

    def check(self, x: torch.Tensor) -> None:
        """Raise if any state breaks the space's constraints."""
        bad = ~torch.as_tensor(self.space.is_valid(x.cpu().numpy().astype(bool)))
        if bad.any():
            rows = torch.nonzero(bad).flatten()[:5].tolist()
            raise ValueError(f"start states {rows} break the space's constraints "
                             f"(max {self.max_pruned} pruned, protected heads kept)")

    def sample_move(self, generator: torch.Generator) -> str:
        """One move name drawn in proportion to the weights of the active moves."""
        return self.active[int(torch.multinomial(self._w, 1, generator=generator))]

    def propose(self, x: torch.Tensor, generator: torch.Generator,
                move: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One random move per state of ``x`` (``bool[c, d]``).

        All states make the same kind of move (``move``, or one drawn by :meth:`sample_move`),
        each at its own random site: one move kind per call keeps a step to a few tensor ops.
        A state where that move is infeasible (e.g. a swap with nothing pruned) flips a head
        instead.  Returns ``(proposal bool[c, d], moved bool[c])``; ``moved`` is False where
        no move at all is feasible (e.g. every head protected) and the state is unchanged."""
        if move is None:
            move = self.sample_move(generator)
        elif move not in self.active:
            raise ValueError(f"move {move!r} is not active here; active moves: {self.active}")
        kept_free = x & self.free
        pruned_free = ~x & self.free
        n_pruned = (~x).sum(dim=1, keepdim=True)
        out = x.clone()
        rows = torch.arange(x.shape[0])
        if move == "group":
            kept_kv = kept_free.float() @ self._kv_members  # [c, gk] kept free heads per KV group
            size = self._group_size[None, :]
            partly = (kept_kv < size) & (size > 0)
            fits = (kept_kv == size) & (size > 0) & (n_pruned + size <= self.max_pruned)
            group, ok = _pick(partly | fits, generator)
            members = (self._kv_members.T[group] > 0) & ok[:, None]  # [c, d]
            restore = partly[rows, group][:, None]
            out = torch.where(members, restore.expand_as(members), out)
        elif move == "flip":
            ok = torch.zeros(x.shape[0], dtype=torch.bool)
        else:
            if move == "swap":
                sites = pruned_free & kept_free.any(dim=1, keepdim=True)
            elif move == "kv_swap":
                kept_kv = kept_free.float() @ self._kv_members
                sites = pruned_free & (kept_kv[:, self._kv_of] > 0)
            else:  # layer_swap: a kept head of the same layer in another KV group
                kept_kv = kept_free.float() @ self._kv_members
                kept_layer = kept_free.float() @ self._layer_members
                sites = pruned_free & ((kept_layer[:, self._layer_of] - kept_kv[:, self._kv_of]) > 0)
            first, ok = _pick(sites, generator)
            partners = kept_free & ok[:, None]
            if move != "swap":
                same_kv = self._kv_of[None, :] == self._kv_of[first][:, None]
                if move == "kv_swap":
                    partners &= same_kv
                else:
                    partners &= (self._layer_of[None, :] == self._layer_of[first][:, None]) & ~same_kv
            second, _ = _pick(partners, generator)
            out[rows, first] = x[rows, first] | ok
            out[rows, second] = x[rows, second] & ~ok
        # flip: the chosen move, or the fallback where it was infeasible
        flip_sites = (pruned_free | (kept_free & (n_pruned < self.max_pruned))) & ~ok[:, None]
        head, flip = _pick(flip_sites, generator)
        out[rows, head] = out[rows, head] ^ flip
        return out, ok | flip


def _component_ids(graph: nx.Graph) -> torch.Tensor:
    """``long[n]``: index of the connected component of each node ``0..n-1`` (ordered by smallest node)."""
    ids = torch.empty(graph.number_of_nodes(), dtype=torch.long)
    comps = sorted(nx.connected_components(graph), key=min)
    for k, comp in enumerate(comps):
        ids[list(comp)] = k
    return ids


def temperature_schedule(t0: torch.Tensor, n_steps: int, *, cooling: str = "geometric",
                         final_ratio: float = 1e-3) -> torch.Tensor:
    """``float[n_steps, c]`` temperatures from ``t0`` (``float[c]``) down to ``final_ratio * t0``.

    ``geometric``: ``T_k = T0 * a**k``; ``logarithmic``: ``T_k = T0 / (1 + b * ln(1 + k))``,
    with ``a``, ``b`` chosen so that the last step has ``final_ratio * T0`` (logarithmic cooling
    drops fast at first and lingers at low temperature)."""
    if cooling not in COOLINGS:
        raise ValueError(f"cooling must be one of {COOLINGS}, got {cooling!r}")
    if not 0.0 < final_ratio <= 1.0:
        raise ValueError(f"final_ratio must be in (0, 1], got {final_ratio}")
    k = torch.arange(n_steps, dtype=torch.float64)
    last = max(n_steps - 1, 1)
    if cooling == "geometric":
        factor = final_ratio ** (k / last)
    else:
        b = (1.0 / final_ratio - 1.0) / math.log1p(last)
        factor = 1.0 / (1.0 + b * torch.log1p(k))
    return (factor[:, None] * t0.double()[None, :]).float()


@dataclass
class OptimizerResult:
    """Outcome of one batched run of ``c`` chains (annealing or local search) over ``d`` heads.

    Attributes:
        best_x: ``bool[c, d]`` lowest-energy state each chain visited.
        best_energy: ``float[c]`` its energy.
        final_x: ``bool[c, d]`` each chain's last state.
        snapshots: ``bool[s, c, d]`` states at ``s`` evenly spaced steps of the second half.
        t0: ``float[c]`` initial temperature of each chain (0 for local search).
        acceptance: ``float[c]`` fraction of steps that moved.
        n_energy_calls: calls of the energy function (each on all chains at once).
    """

    best_x: torch.Tensor
    best_energy: torch.Tensor
    final_x: torch.Tensor
    snapshots: torch.Tensor
    t0: torch.Tensor
    acceptance: torch.Tensor
    n_energy_calls: int

    def pool(self) -> torch.Tensor:
        """``bool[k, d]``: best, final and snapshot states of every chain (may repeat)."""
        d = self.best_x.shape[1]
        return torch.cat([self.best_x, self.final_x, self.snapshots.reshape(-1, d)], dim=0)


class SimulatedAnnealing:
    """Batched simulated annealing over the masks of one :class:`HeadSpace`.

    Args:
        space: the search space (constraints and head topology).
        schedule: the cooling schedule (:class:`AnnealSchedule`; default ``AnnealSchedule()``).
        move_weights: relative frequency of each move (:class:`MoveWeights` or a dict).
    """

    def __init__(self, space: HeadSpace, schedule: AnnealSchedule | None = None, *,
                 move_weights: MoveWeights | dict | None = None) -> None:
        if schedule is not None and not isinstance(schedule, AnnealSchedule):
            raise TypeError(f"schedule must be an AnnealSchedule, got {type(schedule).__name__}")
        self.space = space
        self.schedule = schedule or AnnealSchedule()
        self.moves = HeadMoves(space, move_weights)

    @torch.no_grad()
    def initial_temperature(self, energy: EnergyFn, x: torch.Tensor, e: torch.Tensor,
                            generator: torch.Generator) -> torch.Tensor:
        """``float[c]``: ``T0 = -mean(dE+) / ln(initial_acceptance)`` over ``n_trials`` moves per chain.

        All trial moves of all chains are scored in one energy call.  A chain whose trials
        never went uphill takes the median T0 of the others (or a small scale of its energy)."""
        c = x.shape[0]
        prop = torch.cat([self.moves.propose(x, generator)[0] for _ in range(self.schedule.n_trials)])  # trial-major
        chain = torch.arange(c).repeat(self.schedule.n_trials)
        e_trial = self._energy_of(energy, prop, chain).reshape(self.schedule.n_trials, c)
        delta = e_trial - e[None, :]
        up = torch.where(delta > 0, delta, torch.zeros_like(delta))
        n_up = (delta > 0).sum(dim=0)
        mean_up = up.sum(dim=0) / n_up.clamp(min=1)
        t0 = -mean_up / math.log(self.schedule.initial_acceptance)
        ok = n_up > 0
        if ok.any():
            fallback = t0[ok].median()
        else:
            fallback = torch.tensor(1e-3) * e.abs().mean().clamp(min=1e-6)
        return torch.where(ok, t0, fallback).clamp(min=1e-12)

    @staticmethod
    def _energy_of(energy: EnergyFn, x: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        e = energy(x.float(), chain)
        if e.shape != (len(chain),):
            raise ValueError(f"energy function returned shape {list(e.shape)}, expected [{len(chain)}]")
        return torch.nan_to_num(e.float(), nan=float("inf"))

    @torch.no_grad()
    def run(self, energy: EnergyFn, x0: torch.Tensor, generator: torch.Generator, *,
            max_distance: int | None = None) -> OptimizerResult:
        """Anneal ``c`` chains from ``x0`` (``bool[c, d]``, valid states).

        ``energy(x, chain)`` maps ``float[k, d]`` 0/1 states and the ``long[k]`` chain index of
        each row to ``float[k]`` energies (lower is better), so every chain may have its own
        scalarization.  Steps call it with ``k = c``; the temperature trials with ``k = n_trials * c``.
        ``max_distance``: a trust region, each chain stays within this Hamming distance of its
        start (moves that would leave it are rejected); ``None`` = no limit."""
        if max_distance is not None and max_distance < 1:
            raise ValueError(f"max_distance must be >= 1 or None, got {max_distance}")
        x = torch.as_tensor(x0, dtype=torch.bool).clone()
        if x.ndim != 2 or x.shape[1] != self.space.dim:
            raise ValueError(f"x0 must have shape [c, {self.space.dim}], got {list(x.shape)}")
        self.moves.check(x)
        c = x.shape[0]
        chains = torch.arange(c)
        e = self._energy_of(energy, x, chains)
        calls = 1
        t0 = self.initial_temperature(energy, x, e, generator)
        calls += 1
        temps = temperature_schedule(t0, self.schedule.n_steps, cooling=self.schedule.cooling,
                                     final_ratio=self.schedule.final_temperature_ratio)
        best_x, best_e = x.clone(), e.clone()
        anchor = x.clone()
        accepted = torch.zeros(c)
        half = self.schedule.n_steps // 2
        sch = self.schedule
        snap_at = set(np.linspace(half, sch.n_steps - 1, sch.n_snapshots).round().astype(int).tolist()) \
            if sch.n_snapshots else set()
        snapshots = []
        for k in range(self.schedule.n_steps):
            prop, moved = self.moves.propose(x, generator)
            if max_distance is not None:
                moved = moved & ((prop != anchor).sum(dim=1) <= max_distance)
            e_prop = self._energy_of(energy, prop, chains)
            calls += 1
            delta = e_prop - e
            u = torch.rand(c, generator=generator)
            accept = moved & ((delta <= 0) | (u < torch.exp(-delta.clamp(min=0) / temps[k])))
            x = torch.where(accept[:, None], prop, x)
            e = torch.where(accept, e_prop, e)
            accepted += accept.float()
            better = e < best_e
            best_x = torch.where(better[:, None], x, best_x)
            best_e = torch.where(better, e, best_e)
            if k in snap_at:
                snapshots.append(x.clone())
        snaps = torch.stack(snapshots) if snapshots else torch.zeros(0, c, self.space.dim, dtype=torch.bool)
        return OptimizerResult(best_x=best_x, best_energy=best_e, final_x=x, snapshots=snaps, t0=t0,
                            acceptance=accepted / self.schedule.n_steps, n_energy_calls=calls)

