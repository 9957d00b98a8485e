"""The skeleton of a model-based strategy, to be filled with named parts.

:class:`ModelBasedStrategy` asks, in order: the masks of its initial design; then, once three
told values are finite, the picks of a model-based round; then new masks around the told front
(:func:`~framework.designs.fill_new`) for whatever is left of the batch.  A round is

1. fit the surrogate on the told data (:class:`~framework.history.History`, normalized by the
   problem's bounds and squashed (log) beyond ``max(1, reference point)`` so a few wild values
   do not dominate the fit; the transform is monotone and the identity wherever hypervolume
   is counted);
2. set up the *energy* acquisition with one member per chain, start each chain at the told
   mask (inside the pruned-count cap) best under its member, and run the optimizer inside the
   Hamming trust region;
3. pick the batch from the optimizer's pool (best, last and snapshot states, plus random moves
   around each chain's best) with the *selection* acquisition.

A subclass names its parts in :meth:`_parts` (called once per round) and may override
:meth:`_propose` for another round structure (the one-shot mode of the paper).  It also
records what the surrogate predicted for every mask it picked, before the real value came
back, so the run report can say how well the surrogate ranked out of sample; a surrogate whose
last picks ranked no better than chance (Kendall tau < 0.1) gets half the batch, the other
half explores around the front.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from acquisition.annealing import HeadMoves, MoveWeights, SimulatedAnnealing
from acquisition.base import Acquisition, SearchState
from acquisition.local_search import LocalSearch
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap
from framework.designs import fill_new
from framework.faults import fault_point
from framework.history import History, pack_mask, squash_beyond
from framework.pareto import hypervolume, non_dominated
from framework.strategy import Strategy

__all__ = ["ModelBasedStrategy", "RoundParts", "annealer_factory", "local_search_factory", "torch_threads"]


@dataclass
class RoundParts:
    """The parts of one model-based round.

    Attributes:
        energy: acquisition the optimizer lowers (one member per chain).
        select: acquisition that picks the batch from the optimizer's pool.
        optimizer: a factory ``space -> SimulatedAnnealing | LocalSearch`` (the space may be
            narrowed by the pruned-count cap).
        n_chains: chains optimized together.
        cap: pruned-count trust region, or ``None``.
        region: Hamming trust region (already started), or ``None``.
        neighbours_per_chain: random moves around each chain's best added to the pool.
        starts: ``"best"``: each chain starts at the told mask best under its own member;
            ``"front"``: chain ``i`` starts at the ``i``-th told front mask (cycling), for
            acquisitions that score every told mask alike (EHVI: no improvement over itself).
    """

    energy: Acquisition
    select: Acquisition
    optimizer: Any
    n_chains: int
    cap: PrunedCountCap | None = None
    region: HammingTrustRegion | None = None
    neighbours_per_chain: int = 0
    starts: str = "best"

    def __post_init__(self) -> None:
        if self.starts not in ("best", "front"):
            raise ValueError(f"starts must be 'best' or 'front', got {self.starts!r}")
        if self.n_chains < 1 or self.neighbours_per_chain < 0:
            raise ValueError(f"need n_chains >= 1 and neighbours_per_chain >= 0, got {self.n_chains}, "
                             f"{self.neighbours_per_chain}")


class ModelBasedStrategy(Strategy):
    """Design, then rounds of fit / optimize / select, then fill (see the module docstring).

    Subclasses set in ``__init__``: ``initial_max_ratio`` (largest pruning ratio of random
    fill masks), ``move_weights`` (a dict, for the fill moves), ``torch_threads``; and
    implement :meth:`_make_surrogate`, :meth:`_initial_design` and :meth:`_parts`.
    """

    initial_max_ratio: float = 0.05
    move_weights: dict | None = None
    torch_threads: int | None = 1

    # ------------------------------------------------------------- hooks
    def _make_surrogate(self):
        """A fresh, unfitted surrogate seeded from ``self.rng``."""
        raise NotImplementedError

    def _initial_design(self) -> list[np.ndarray]:
        """The masks asked before any model (in order)."""
        raise NotImplementedError

    def _parts(self, state: SearchState) -> RoundParts:
        """The parts of the next round, for the told data ``state``."""
        raise NotImplementedError

    @property
    def fill_max_ratio(self) -> float:
        """Largest pruning ratio of random fill masks (default: ``initial_max_ratio``)."""
        return self.initial_max_ratio

    # ------------------------------------------------------------- setup
    def _setup(self) -> None:
        self._gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        self._model = self._make_surrogate()
        self._moves = HeadMoves(self.problem.space, self.move_weights)
        self.history = History.of(self.problem)
        self._design: list[np.ndarray] = list(self._initial_design())
        self._region_in_use: HammingTrustRegion | None = None
        self._hv_before: float | None = None  # set by a round, read by the next tell
        self._timings: list[dict[str, float]] = []
        # out-of-sample check: what the surrogate predicted for masks it picked, against their real values
        self._predicted: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._checks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # mean, std, real, round
        self._distrust = False

    @property
    def timings(self) -> list[dict[str, float]]:
        """Seconds spent per model-based round: ``fit``, ``anneal``, ``select`` (diagnostics)."""
        return self._timings

    # ------------------------------------------------------------- data
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite told data: ``bool[n, d]`` masks and normalized, squashed ``float[n, m]`` values."""
        X, Yn = self.history.normalized()
        return X, self._squash(Yn)

    def _squash(self, yn: np.ndarray) -> np.ndarray:
        return squash_beyond(yn, self._ref_n())

    def _ref_n(self) -> np.ndarray:
        return self.problem.normalize(self.problem.ref_point)

    def _front_hv(self) -> float:
        return hypervolume(self.data()[1], self._ref_n()) if len(self.history) else 0.0

    def state(self) -> SearchState:
        """The told data as acquisitions see it (baseline: the unpruned mask's values, the
        column-wise best told value where it is unknown)."""
        X, Yn = self.data()
        raw = self.history.value(self.problem.space.keep_all()[0])
        lo, hi = np.asarray(self.problem.bounds, dtype=float)
        if raw is None or not np.isfinite(raw).all():
            raw = lo + Yn.min(axis=0) * np.where(hi > lo, hi - lo, 1.0)
        bias, costs = self.problem.bias_objective, tuple(self.problem.cost_objectives)
        return SearchState(X, Yn, self._ref_n(), self.problem.normalize(raw), np.asarray(raw, dtype=float),
                           np.asarray(self.problem.bounds, dtype=float), bias, costs)

    # ------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        taken: set[bytes] = set()

        def take(mask: np.ndarray) -> None:
            out.append(mask)
            taken.add(pack_mask(mask))

        while self._design and len(out) < n:
            mask = self._design.pop(0)
            if self.history.is_new(mask, taken):
                take(mask)
        if len(out) < n and self.history.n_finite() >= 3:
            want = n - len(out) if not self._distrust else max(1, (n - len(out)) // 2)
            with torch_threads(self.torch_threads):
                for mask in self._propose(want, self.history.keys() | taken):
                    take(mask)
        for mask in self._fill(n - len(out), self.history.keys() | taken):
            take(mask)
        return np.array(out, dtype=bool).reshape(n, self.problem.space.dim)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        masks = np.asarray(masks, dtype=bool)
        values = np.asarray(values, dtype=float).reshape(len(masks), -1)
        for mask, value, new in zip(masks, values, self.history.add(masks, values), strict=True):
            pred = self._predicted.pop(pack_mask(mask), None) if new else None
            if pred is not None and np.all(np.isfinite(value)):
                self._checks.append((*pred, self._squash(self.problem.normalize(value)), len(self._timings)))
        self._distrust = self._recent_tau() < 0.1
        if self._hv_before is not None and self._region_in_use is not None:
            self._region_in_use.update(self._front_hv() > self._hv_before + 1e-12)
        self._hv_before = None

    # ------------------------------------------------------------- rounds
    def _propose(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """One round: ``n`` distinct new masks (see the module docstring)."""
        self._hv_before = self._front_hv()
        pool, parts, state, timing = self._optimize()
        t0 = time.perf_counter()
        if parts.select is not parts.energy:
            parts.select.setup(state, 1, self.rng)
        picks = self._pick(parts.select, pool, n, excluded)
        timing["select"] = time.perf_counter() - t0
        self._timings.append(timing)
        return picks

    def _optimize(self) -> tuple[np.ndarray, RoundParts, SearchState, dict[str, float]]:
        """Fit, optimize the energy acquisition; the pool ``bool[k, d]``, the parts, the state and timings."""
        X, Yn = self.data()
        t0 = time.perf_counter()
        self._model.fit(X, Yn)
        fault_point("fit")  # tests only: HEADREPAIR_FAULT=fit:N kills the process here (framework/faults.py)
        t1 = time.perf_counter()
        state = self.state()
        parts = self._parts(state)
        self._region_in_use = parts.region
        space = parts.cap.limit(self.problem.space, state) if parts.cap is not None else self.problem.space
        optimizer = parts.optimizer(space)
        parts.energy.setup(state, parts.n_chains, self.rng)
        # each chain starts from the told mask (inside the trust region) best under its own member
        inside = space.is_valid(X)
        if parts.starts == "front":
            rows = np.flatnonzero(inside)
            front = rows[non_dominated(Yn[rows])]
            x0 = torch.as_tensor(X[front[np.arange(parts.n_chains) % len(front)]])
        else:
            e_obs = torch.stack([parts.energy.observed(Yn[inside], i) for i in range(parts.n_chains)])
            x0 = torch.as_tensor(X[inside][e_obs.argmin(dim=1).numpy()])
        result = optimizer.run(lambda x, chain: parts.energy.energy(self._model, x, chain), x0, self._gen,
                               max_distance=None if parts.region is None else parts.region.max_distance)
        pool = [result.pool()]
        if parts.neighbours_per_chain:
            moves = optimizer.moves if hasattr(optimizer, "moves") else HeadMoves(space, self.move_weights)
            pool.append(moves.propose(result.best_x.repeat(parts.neighbours_per_chain, 1), self._gen)[0])
        return torch.cat(pool).numpy(), parts, state, {"fit": t1 - t0, "anneal": time.perf_counter() - t1}

    def _pick(self, select: Acquisition, pool: np.ndarray, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """Up to ``n`` distinct masks of ``pool`` not in ``excluded``, in the order the (set up)
        selection acquisition picks them."""
        keys, rows, seen = [], [], set(excluded)
        for i, mask in enumerate(pool):
            key = pack_mask(mask)
            if key not in seen:
                seen.add(key)
                keys.append(key)
                rows.append(i)
        if not rows or n <= 0:
            return []
        cand = pool[rows]
        chosen = select.select(self._model, cand, n, self.rng)
        for i, key in enumerate(keys):
            self._predicted[key] = (chosen.mean[i], chosen.std[i])
        return [cand[i] for i in chosen.rows]

    def _fill(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """``n`` new masks: 1-3 moves around the told front, then random low-ratio masks."""
        if n <= 0:
            return []
        if self.history.n_finite():
            X, Yn = self.data()
            bases = X[non_dominated(Yn)]
        else:
            bases = self.history.masks
        return fill_new(self.problem.space, n, self.rng, excluded, bases=bases,
                        perturb=lambda x: self._moves.propose(torch.as_tensor(x), self._gen)[0].numpy(),
                        initial_max_ratio=self.fill_max_ratio)

    # ------------------------------------------------------------- quality
    def _recent_tau(self) -> float:
        """Best Kendall tau over objectives between the surrogate's predictions for the last two
        rounds' picks (made before their real values were known) and those values; +inf when
        too few.  Ranking is what annealing needs; R^2 among picks suffers from the winner's curse."""
        from scipy.stats import kendalltau

        last = [c for c in self._checks if c[3] >= len(self._timings) - 1]
        if len(last) < 4:
            return math.inf
        mean = np.array([c[0] for c in last])
        real = np.array([c[2] for c in last])
        taus = [kendalltau(real[:, j], mean[:, j]).statistic for j in range(real.shape[1])
                if np.ptp(real[:, j]) > 0 and np.ptp(mean[:, j]) > 0]
        return float(max(taus)) if taus else math.inf

    def prediction_checks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, real)`` ``float[k, m]`` of every picked mask told so far: the surrogate's
        prediction (made before the real evaluation) and the real normalized value."""
        m = self.problem.n_objectives
        if not self._checks:
            return np.zeros((0, m)), np.zeros((0, m)), np.zeros((0, m))
        return tuple(np.array([c[j] for c in self._checks]) for j in range(3))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch intra-op threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def annealer_factory(schedule, move_weights: dict | MoveWeights | None):
    """``space -> SimulatedAnnealing`` with ``schedule`` and ``move_weights`` (a :class:`RoundParts` optimizer)."""
    return lambda space: SimulatedAnnealing(space, schedule, move_weights=move_weights)


def local_search_factory(**options):
    """``space -> LocalSearch`` with ``options`` (a :class:`RoundParts` optimizer)."""
    return lambda space: LocalSearch(space, **options)

