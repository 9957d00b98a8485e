"""Surrogate-assisted simulated annealing (Attention Pruning, Dasu et al. 2025), two modes.

``mode="oneshot"`` (paper-faithful): most of the budget goes to an initial design; one
surrogate is fitted; batched SA chains minimize the predicted primary objective (objective
0, the bias) plus a penalty where a predicted constrained objective (1.., the perplexity)
exceeds a threshold relative to the unpruned model; the rest of the budget verifies the best
distinct masks the chains found.

``mode="iterative"`` (default, multi-objective): an initial design, then rounds until the
budget is spent: refit the surrogate; run many SA chains at once, each on its own
scalarization (thresholds relative to the unpruned model, and augmented Chebyshev weights
spread over the observed front); from the chains' best, last and snapshot states (plus a
few moves around them) pick the batch of distinct masks that most improves the predicted
front, each prediction made optimistic by ``exploration`` times the surrogate's spread.

The initial design (both modes) is built for landscapes where random pruning is costly
(on the embedded 270-head model, pruning 5% of the heads at random raised perplexity by
38% on average): the unpruned mask first (the thresholds' baseline), a share of single-head
knock-outs, a share of whole-KV-group knock-outs (structured spaces), and low-ratio random
masks (pruned count log-uniform in ``[1, initial_max_ratio * d]``) whose heads are drawn
least-used-first, so the design covers the heads evenly.

Head sensitivities (``sensitivities="design"``, the default, used only where the problem has
them): the run's first budget unit is a sensitivity call at the unpruned mask; the design's
knock-outs then take the heads whose estimated effects are best (Pareto rank of estimated
bias change vs utility cost, best first) instead of random ones, and its random masks draw
their heads with weights that favour those ranks (``exp(-rank / 2)``, a tenth for heads with
no estimated bias gain), divided by how often a head was already used.

Two trust regions keep the chains where the surrogate has seen data (far from it, an
ensemble's optimism is unfounded and a few wild values wreck the batch): the pruned count is
capped a little above the most heads pruned by an observed front mask, and (iterative mode)
each chain stays within a Hamming radius of its start, widened after rounds that improved
the observed front and narrowed after rounds that did not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import moocore
import numpy as np
import torch

from framework.pareto import hypervolume, non_dominated
from framework.registry import SURROGATES
from framework.store import pack_mask
from framework.strategy import Strategy
from strategies.annealing import COOLINGS, HeadMoves, MoveWeights, SimulatedAnnealing

__all__ = ["SurrogateSA"]

MODES = ("iterative", "oneshot")
SENSITIVITY_USES = ("design", "off")
SCALARIZATIONS = ("mixed", "threshold", "chebyshev")
_CHEBYSHEV_AUGMENT = 0.05  # weight of the sum term of the augmented Chebyshev scalarization


class SurrogateSA(Strategy):
    """Surrogate-assisted simulated annealing over head masks (``oneshot`` or ``iterative``).

    All objectives are minimized.  Objective 0 is the primary one (the bias); objectives 1..
    are the constrained ones (the utility cost) for threshold scalarizations.  Works for any
    number ``m >= 2`` of objectives; values are normalized with the problem's bounds before
    the surrogate sees them.
    """

    name = "surrogate-sa"
    summary = "surrogate-assisted simulated annealing: initial design, surrogate, batched SA chains, verify"

    def __init__(self, *, mode: str = "iterative", surrogate: str = "mlp", surrogate_options: dict | None = None,
                 initial_fraction: float | None = None, min_initial: int = 8, initial_max_ratio: float = 0.05,
                 knockout_fraction: float = 0.4, group_fraction: float = 0.1,
                 n_chains: int = 32, n_steps: int | None = None, cooling: str = "geometric",
                 initial_acceptance: float = 0.5, final_temperature_ratio: float = 1e-3,
                 move_weights: dict | None = None, scalarization: str | None = None,
                 thresholds: tuple[float, float] = (0.01, 0.30), penalty: float = 10.0,
                 exploration: float = 0.5, neighbours_per_chain: int = 4,
                 pruned_growth: float | None = 0.5, trust_radius: float | None = 0.02,
                 torch_threads: int | None = 1, sensitivities: str = "design") -> None:
        """Args:
            mode: ``"iterative"`` (rounds of refit/anneal/select) or ``"oneshot"`` (paper: design,
                one fit, one annealing, verify).
            surrogate: registered surrogate name (``headrepair list surrogates``).
            surrogate_options: keyword options of that surrogate (``seed`` is set from the run's seed).
            initial_fraction: share of the budget spent on the initial design; ``None`` = 0.3
                (iterative) or 0.8 (oneshot).
            min_initial: smallest initial design (when the budget allows).
            initial_max_ratio: largest pruning ratio of the design's random masks (pruned count
                log-uniform in ``[1, max(2, round(initial_max_ratio * d))]``).
            knockout_fraction: share of the design (after the unpruned mask) spent on single-head
                knock-outs (heads drawn at random, at most one per head).
            group_fraction: share of the design spent on whole-KV-group knock-outs (structured
                spaces with KV groups of two or more heads only).
            n_chains: SA chains run together (one batched surrogate call per step).
            n_steps: SA steps per chain; ``None`` = 500 (iterative, per round) or 4000 (oneshot).
            cooling: ``"geometric"`` or ``"logarithmic"``.
            initial_acceptance: target share of uphill moves accepted at the start (sets T0 per chain).
            final_temperature_ratio: last temperature as a fraction of T0.
            move_weights: ``{move: weight}`` over ``flip``, ``swap``, ``kv_swap``, ``layer_swap``,
                ``group`` (missing moves keep their defaults 1, 1, 0.5, 0.5, 0.25).
            scalarization: ``"threshold"`` (primary objective plus a penalty above each threshold),
                ``"chebyshev"`` (augmented Chebyshev, weights spread over the front) or ``"mixed"``
                (half the chains each); ``None`` = mixed (iterative) or threshold (oneshot).
            thresholds: ``(low, high)`` relative thresholds ``t`` on objectives 1..: a chain allows
                ``y <= (1 + t) * y(unpruned)`` (``y(unpruned) + t`` in normalized units where the
                unpruned value is not positive), ``t`` spread geometrically over the chains.
            penalty: penalty per normalized unit a predicted objective exceeds its threshold.
            exploration: optimism ``beta``: SA and the batch selection use ``mean - beta * std``
                (iterative mode; oneshot uses the mean, as the paper).
            neighbours_per_chain: random moves around each chain's best state added to the pool of
                candidates (cheap diversity for the batch selection).
            pruned_growth: trust region on the pruned count: chains prune at most
                ``max(k + 2, (1 + pruned_growth) * k)`` heads, ``k`` the most heads pruned by an
                observed non-dominated mask inside the reference box (any, if none is), so SA
                stays where the surrogate has data (far from it a surrogate's optimism is
                unfounded); ``None`` = only the space's limit.
            trust_radius: iterative mode: each chain stays within a Hamming radius of its start
                (a told mask), initially ``max(2, ceil(trust_radius * d))``, times 1.5 after a round
                that improved the observed front's hypervolume, divided by 1.5 after one that did not
                (back to the initial radius below 1); ``None`` = no radius.  Oneshot: no radius.
            torch_threads: torch intra-op threads while the strategy fits and anneals (restored
                afterwards); its tensors are small (``[n_chains, d]``) and gain nothing from more,
                while extra threads on a busy machine slowed them 5-50x in measurements;
                ``None`` = leave torch's setting alone.
            sensitivities: ``"design"``: where the problem has head sensitivities, spend one budget
                unit on them at the unpruned mask and aim the initial design at the heads they rank
                best (see the module docstring); ``"off"``: never ask for them.
        """
        if sensitivities not in SENSITIVITY_USES:
            raise ValueError(f"sensitivities must be one of {SENSITIVITY_USES}, got {sensitivities!r}")
        self.sensitivities = sensitivities
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if initial_fraction is not None and not 0.0 < initial_fraction <= 1.0:
            raise ValueError(f"initial_fraction must be in (0, 1], got {initial_fraction}")
        if min_initial < 1:
            raise ValueError(f"min_initial must be >= 1, got {min_initial}")
        if not 0.0 < initial_max_ratio <= 1.0:
            raise ValueError(f"initial_max_ratio must be in (0, 1], got {initial_max_ratio}")
        for label, v in (("knockout_fraction", knockout_fraction), ("group_fraction", group_fraction)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {v}")
        if knockout_fraction + group_fraction > 1.0:
            raise ValueError(f"knockout_fraction + group_fraction must be <= 1, "
                             f"got {knockout_fraction} + {group_fraction}")
        if n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {n_chains}")
        if n_steps is not None and n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if cooling not in COOLINGS:
            raise ValueError(f"cooling must be one of {COOLINGS}, got {cooling!r}")
        if not 0.0 < initial_acceptance < 1.0:
            raise ValueError(f"initial_acceptance must be in (0, 1), got {initial_acceptance}")
        if not 0.0 < final_temperature_ratio <= 1.0:
            raise ValueError(f"final_temperature_ratio must be in (0, 1], got {final_temperature_ratio}")
        if scalarization is not None and scalarization not in SCALARIZATIONS:
            raise ValueError(f"scalarization must be one of {SCALARIZATIONS}, got {scalarization!r}")
        if isinstance(thresholds, str):  # "0.01,0.3" from a command line
            thresholds = thresholds.split(",")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 2 or not 0.0 <= thresholds[0] <= thresholds[1]:
            raise ValueError(f"thresholds must be (low, high) with 0 <= low <= high, got {thresholds}")
        if trust_radius is not None and not 0.0 < trust_radius <= 1.0:
            raise ValueError(f"trust_radius must be in (0, 1] or None, got {trust_radius}")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {torch_threads}")
        if pruned_growth is not None and pruned_growth < 0:
            raise ValueError(f"pruned_growth must be >= 0 or None, got {pruned_growth}")
        if penalty <= 0 or exploration < 0 or neighbours_per_chain < 0:
            raise ValueError(f"need penalty > 0, exploration >= 0, neighbours_per_chain >= 0; "
                             f"got {penalty}, {exploration}, {neighbours_per_chain}")
        self.mode = mode
        self.surrogate = surrogate
        self.surrogate_options = dict(surrogate_options or {})
        self.initial_fraction = float(initial_fraction if initial_fraction is not None
                                      else (0.3 if mode == "iterative" else 0.8))
        self.min_initial = int(min_initial)
        self.initial_max_ratio = float(initial_max_ratio)
        self.knockout_fraction = float(knockout_fraction)
        self.group_fraction = float(group_fraction)
        self.n_chains = int(n_chains)
        self.n_steps = int(n_steps if n_steps is not None else (500 if mode == "iterative" else 4000))
        self.cooling = cooling
        self.initial_acceptance = float(initial_acceptance)
        self.final_temperature_ratio = float(final_temperature_ratio)
        self.move_weights = MoveWeights.from_value(move_weights).as_dict()
        self.scalarization = scalarization or ("mixed" if mode == "iterative" else "threshold")
        self.thresholds = thresholds
        self.penalty = float(penalty)
        self.exploration = float(exploration)
        self.neighbours_per_chain = int(neighbours_per_chain)
        self.pruned_growth = None if pruned_growth is None else float(pruned_growth)
        self.trust_radius = None if trust_radius is None else float(trust_radius)
        self.torch_threads = None if torch_threads is None else int(torch_threads)
        self._timings: list[dict[str, float]] = []

    @property
    def timings(self) -> list[dict[str, float]]:
        """Seconds spent per model-based round: ``fit``, ``anneal``, ``select`` (diagnostics)."""
        return self._timings

    def options(self) -> dict:
        out = super().options()
        out["surrogate_options"] = dict(self.surrogate_options)
        out["move_weights"] = dict(self.move_weights)
        return out

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        space = self.problem.space
        self._gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        self._model = SURROGATES.create(self.surrogate, **{"seed": int(self.rng.integers(2**31)),
                                                          **self.surrogate_options})
        self._moves = HeadMoves(space, self.move_weights)
        self._masks: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._known: dict[bytes, int] = {}
        self._n_init = min(max(int(round(self.initial_fraction * self.budget)), self.min_initial), self.budget)
        use = self.sensitivities == "design" and self.problem.has_sensitivities and self.budget > 1
        self._wanted = space.keep_all()[0] if use else None  # sensitivities asked before the design is made
        self._head_weights: np.ndarray | None = None
        self._design = [] if use else list(self.initial_design(self._n_init))
        self._queue: list[np.ndarray] | None = None  # oneshot: masks left to verify
        self._radius0 = None if self.trust_radius is None else max(2.0, math.ceil(self.trust_radius * space.dim))
        self._radius = self._radius0
        self._hv_before: float | None = None  # set by an iterative round, read by the next tell
        self._timings = []
        # out-of-sample check: what the surrogate predicted for masks it picked, against their real values
        self._predicted: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._checks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # mean, std, real, round
        self._distrust = False

    # ---------------------------------------------------------- sensitivities
    def sensitivity_request(self) -> np.ndarray | None:
        return None if self._wanted is None else self._wanted.copy()

    def tell_sensitivities(self, sensitivities) -> None:
        if self._wanted is None:
            return
        self._wanted = None
        self._head_weights = _head_weights(self.problem, sensitivities)
        self._design = list(self.initial_design(self._n_init))

    def initial_design(self, n: int) -> np.ndarray:
        """``bool[n, d]`` distinct valid masks: the unpruned mask, single-head and KV-group
        knock-outs, then low-ratio random masks with heads drawn least-used-first (aimed by the
        head sensitivities' ranks where the strategy has them)."""
        space, rng = self.problem.space, self.rng
        d, free = space.dim, np.flatnonzero(~space.protected_mask)
        out: list[np.ndarray] = [space.keep_all()[0]]
        if n <= 1 or space.max_pruned == 0 or free.size == 0:
            return np.array(out[:n], dtype=bool).reshape(-1, d)
        usage = np.zeros(d)
        rest = n - 1
        weights = self._head_weights
        knock = (free[np.argsort(-weights[free], kind="stable")] if weights is not None else rng.permutation(free))
        for head in knock[:int(round(self.knockout_fraction * rest))]:
            mask = np.ones(d, dtype=bool)
            mask[head] = False
            out.append(mask)
            usage[head] += 1
        groups = [g for g in (np.flatnonzero((space.kv_group_of == k) & ~space.protected_mask)
                              for k in np.unique(space.kv_group_of)) if 1 < g.size <= space.max_pruned]
        if space.structured and groups:
            for k in rng.permutation(len(groups))[:int(round(self.group_fraction * rest))]:
                mask = np.ones(d, dtype=bool)
                mask[groups[k]] = False
                out.append(mask)
                usage[groups[k]] += 1
        k_max = max(2, int(round(self.initial_max_ratio * d)))
        k_max = max(1, min(k_max, space.max_pruned, free.size))
        seen = {pack_mask(m) for m in out}
        tries = 0
        while len(out) < n and tries < 50 * n:
            tries += 1
            k = int(np.clip(np.floor(np.exp(rng.uniform(0.0, np.log(k_max + 1)))), 1, k_max))
            if weights is not None:  # Gumbel top-k: heads drawn with probability ~ weight / (1 + usage)
                w = weights[free] / (1.0 + usage[free])
                order = free[np.argsort(-(np.log(w) + rng.gumbel(size=free.size)), kind="stable")]
            else:
                order = free[np.argsort(usage[free] + rng.random(free.size), kind="stable")]
            mask = np.ones(d, dtype=bool)
            mask[order[:k]] = False
            key = pack_mask(mask)
            if key in seen:
                continue
            seen.add(key)
            out.append(mask)
            usage[order[:k]] += 1
        while len(out) < n:  # tiny spaces: whatever valid masks remain
            out.append(space.sample(1, rng)[0])
        return np.array(out, dtype=bool)

    # ---------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        taken: set[bytes] = set()

        def take(mask: np.ndarray) -> None:
            out.append(mask)
            taken.add(pack_mask(mask))

        while self._design and len(out) < n:
            mask = self._design.pop(0)
            if pack_mask(mask) not in self._known and pack_mask(mask) not in taken:
                take(mask)
        if len(out) < n and self._n_finite() >= 3:
            excluded = set(self._known) | taken
            # a surrogate whose last picks ranked no better than chance (tau < 0.1) gets half the batch;
            # the other half explores around the observed front
            want = n - len(out) if not self._distrust else max(1, (n - len(out)) // 2)
            with _torch_threads(self.torch_threads):
                picks = self._oneshot_picks(want, excluded) if self.mode == "oneshot" \
                    else self._round(want, excluded)
            for mask in picks:
                take(mask)
        for mask in self._novel(n - len(out), set(self._known) | taken):
            take(mask)
        return np.array(out, dtype=bool).reshape(n, self.problem.space.dim)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float).reshape(len(masks), -1)
        for mask, value in zip(np.asarray(masks, dtype=bool), values, strict=True):
            key = pack_mask(mask)
            if key not in self._known:
                self._known[key] = len(self._masks)
                self._masks.append(mask.copy())
                self._values.append(value.copy())
                pred = self._predicted.pop(key, None)
                if pred is not None and np.all(np.isfinite(value)):
                    self._checks.append((*pred, self._squash(self.problem.normalize(value)), len(self._timings)))
        self._distrust = self._recent_tau() < 0.1
        if self._hv_before is not None and self._radius is not None:
            improved = self._front_hv() > self._hv_before + 1e-12
            self._radius = self._radius * 1.5 if improved else self._radius / 1.5
            if self._radius < 1.0:
                self._radius = self._radius0
            self._radius = min(self._radius, float(self.problem.space.dim))
        self._hv_before = None

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

    def diagnostics(self) -> dict:
        """Surrogate quality and time for the run report: out-of-sample figures of every mask the
        surrogate picked (predicted before its real evaluation), a k-fold check on all the data,
        and seconds spent fitting, annealing and selecting."""
        from surrogates.quality import prediction_scores, surrogate_quality

        names = self.problem.objective_names
        out: dict = {"surrogate": self.surrogate, "mode": self.mode, "model_rounds": len(self._timings),
                     "seconds": {k: round(sum(t.get(k, 0.0) for t in self._timings), 2)
                                 for k in ("fit", "anneal", "select")}}
        if len(self._checks) >= 4:
            mean = np.array([c[0] for c in self._checks])
            std = np.array([c[1] for c in self._checks])
            real = np.array([c[2] for c in self._checks])
            out["picked_masks_out_of_sample"] = {
                "n": len(self._checks),
                **{n: {k: round(v, 3) for k, v in prediction_scores(real[:, j], mean[:, j], std[:, j]).items()}
                   for j, n in enumerate(names)}}
        X, Yn = self._data()
        if len(X) >= 10:
            rep = surrogate_quality(lambda: SURROGATES.create(self.surrogate, **{"seed": 0, **self.surrogate_options}),
                                    X, Yn, objective_names=list(names), seed=0)
            out["k_fold_on_all_evaluations"] = {
                "method": rep["method"], "n": rep["n_test"],
                **{n: {k: round(v, 3) for k, v in s.items()} for n, s in rep["objectives"].items()}}
        return out

    def _front_hv(self) -> float:
        """Hypervolume of the told values (normalized) against the normalized reference point."""
        return hypervolume(self._data()[1], self._ref_n()) if self._values else 0.0

    # ---------------------------------------------------------------- data
    def _n_finite(self) -> int:
        return int(np.isfinite(np.array(self._values)).all(axis=1).sum()) if self._values else 0

    def _data(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite told data: ``bool[n, d]`` masks and normalized ``float[n, m]`` values, squashed
        (log) beyond ``max(1, reference point)`` so that a few wild values (perplexity blown up
        by heavy pruning) do not dominate the surrogate's fit; the transform is monotone and the
        identity wherever hypervolume is counted."""
        X, Y = np.array(self._masks, dtype=bool), np.array(self._values, dtype=float)
        ok = np.isfinite(Y).all(axis=1)
        return X[ok], self._squash(self.problem.normalize(Y[ok]))

    def _squash(self, yn: np.ndarray) -> np.ndarray:
        top = np.maximum(self._ref_n(), 1.0)
        return np.where(yn > top, top + np.log1p(np.maximum(yn - top, 0.0)), yn)

    def _ref_n(self) -> np.ndarray:
        return self.problem.normalize(self.problem.ref_point)

    def _annealer(self, X: np.ndarray, Yn: np.ndarray) -> SimulatedAnnealing:
        """An annealer on the space, its pruned count limited to the trust region."""
        space = self.problem.space
        if self.pruned_growth is not None:
            front = non_dominated(Yn)
            inside = front & np.all(Yn < self._ref_n(), axis=1)
            front = inside if inside.any() else front  # masks that count, else the whole front
            k = int((~X[front]).sum(axis=1).max()) if front.any() else 0
            cap = max(k + 2, int(math.ceil((1.0 + self.pruned_growth) * k)))
            if cap < space.max_pruned:
                space = dataclasses.replace(space, max_pruned_fraction=cap / space.dim)
        return SimulatedAnnealing(space, n_steps=self.n_steps, cooling=self.cooling,
                                  initial_acceptance=self.initial_acceptance,
                                  final_temperature_ratio=self.final_temperature_ratio,
                                  move_weights=self.move_weights)

    def _baseline(self, Yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw and normalized values of the unpruned mask (column-wise best observed if unknown)."""
        i = self._known.get(pack_mask(self.problem.space.keep_all()[0]))
        raw = np.array(self._values[i], dtype=float) if i is not None else np.full(self.problem.n_objectives, np.nan)
        if not np.isfinite(raw).all():
            lo, hi = self.problem.bounds
            best = Yn.min(axis=0)
            raw = lo + best * np.where(hi > lo, hi - lo, 1.0)
        return raw, self.problem.normalize(raw)

    # ---------------------------------------------------------------- scalarizations
    def _scalarizations(self, Yn: np.ndarray, n_chains: int) -> dict[str, torch.Tensor]:
        """Per-chain scalarization parameters: ``kind`` (0 threshold, 1 Chebyshev),
        ``thr float[c, m]`` (normalized thresholds, ``inf`` on objective 0), ``w float[c, m]``,
        ``ideal float[m]``, ``scale float[m]`` (the observed front's extent)."""
        m = self.problem.n_objectives
        if self.scalarization == "threshold":
            n_thr = n_chains
        elif self.scalarization == "chebyshev":
            n_thr = 0
        else:
            n_thr = n_chains // 2
        n_cheb = n_chains - n_thr
        raw, base_n = self._baseline(Yn)
        lo, hi = self.problem.bounds
        span = np.where(hi > lo, hi - lo, 1.0)
        ts = np.geomspace(max(self.thresholds[0], 1e-6), max(self.thresholds[1], 1e-6), n_thr) if n_thr > 1 \
            else np.array([math.sqrt(max(self.thresholds[0], 1e-6) * max(self.thresholds[1], 1e-6))])[:n_thr]
        thr = np.full((n_chains, m), np.inf)
        for i, t in enumerate(ts):
            rel = ((1.0 + t) * raw - lo) / span
            thr[i, 1:] = np.where(raw[1:] > 0, rel[1:], base_n[1:] + t)
        w = np.full((n_chains, m), 1.0 / m)
        if n_cheb:
            if m == 2:
                a = np.linspace(0.05, 0.95, n_cheb) if n_cheb > 1 else np.array([0.5])
                w[n_thr:] = np.stack([a, 1.0 - a], axis=1)
            else:
                w[n_thr:] = self.rng.dirichlet(np.ones(m), size=n_cheb)
        front = Yn[non_dominated(Yn)]
        ideal = front.min(axis=0)
        scale = np.maximum(front.max(axis=0) - ideal, 0.05)
        kind = np.zeros(n_chains, dtype=np.int64)
        kind[n_thr:] = 1
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        return {"kind": torch.as_tensor(kind), "thr": as_t(thr), "w": as_t(w), "ideal": as_t(ideal),
                "scale": as_t(scale)}

    def _scalarize(self, y: torch.Tensor, chain: torch.Tensor, s: dict[str, torch.Tensor]) -> torch.Tensor:
        """``float[k]`` energies of predicted normalized values ``y float[k, m]`` for chains ``chain long[k]``."""
        excess = (y - s["thr"][chain]).clamp(min=0.0)
        excess = torch.where(torch.isfinite(s["thr"][chain]), excess, torch.zeros_like(excess))
        e_thr = y[:, 0] + self.penalty * excess.sum(dim=1)
        wd = s["w"][chain] * (y - s["ideal"]) / s["scale"]
        e_cheb = wd.max(dim=1).values + _CHEBYSHEV_AUGMENT * wd.sum(dim=1)
        return torch.where(s["kind"][chain] == 0, e_thr, e_cheb)

    # ---------------------------------------------------------------- model-based rounds
    def _anneal(self, X: np.ndarray, Yn: np.ndarray, beta: float,
                radius: float | None) -> tuple[np.ndarray, dict[str, float]]:
        """Fit, anneal ``n_chains`` chains; return the pool of candidate masks ``bool[k, d]`` and timings."""
        t0 = time.perf_counter()
        self._model.fit(X, Yn)
        t1 = time.perf_counter()
        s = self._scalarizations(Yn, self.n_chains)
        sa = self._annealer(X, Yn)
        # each chain starts from the told mask (inside the trust region) best under its own scalarization
        inside = sa.space.is_valid(X)
        e_obs = torch.stack([self._scalarize(torch.as_tensor(Yn[inside], dtype=torch.float32),
                                             torch.full((int(inside.sum()),), i), s) for i in range(self.n_chains)])
        x0 = torch.as_tensor(X[inside][e_obs.argmin(dim=1).numpy()])

        def energy(x: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
            mean, std = self._model.predict_torch(x)
            return self._scalarize(mean - beta * std, chain, s)

        result = sa.run(energy, x0, self._gen, max_distance=None if radius is None else int(math.ceil(radius)))
        pool = [result.pool()]
        if self.neighbours_per_chain:
            around = result.best_x.repeat(self.neighbours_per_chain, 1)
            pool.append(sa.moves.propose(around, self._gen)[0])
        t2 = time.perf_counter()
        return torch.cat(pool).numpy(), {"fit": t1 - t0, "anneal": t2 - t1}

    def _round(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """One iterative round: ``n`` distinct new masks that most improve the predicted front."""
        X, Yn = self._data()
        self._hv_before = self._front_hv()
        pool, timing = self._anneal(X, Yn, self.exploration, self._radius)
        t0 = time.perf_counter()
        picks = self._select(pool, Yn, n, excluded, self.exploration)
        timing["select"] = time.perf_counter() - t0
        self._timings.append(timing)
        return picks

    def _oneshot_picks(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """Oneshot: anneal once (at the first call after the design), then hand out the
        selected masks in order of predicted front improvement."""
        if self._queue is None:
            X, Yn = self._data()
            pool, timing = self._anneal(X, Yn, 0.0, None)
            t0 = time.perf_counter()
            left = self.budget - len(self._masks)
            self._queue = self._select(pool, Yn, max(left, n), excluded, 0.0)
            timing["select"] = time.perf_counter() - t0
            self._timings.append(timing)
        out: list[np.ndarray] = []
        while self._queue and len(out) < n:
            mask = self._queue.pop(0)
            key = pack_mask(mask)
            if key not in excluded:
                out.append(mask)
                excluded.add(key)
        return out

    def _select(self, pool: np.ndarray, Yn: np.ndarray, n: int, excluded: set[bytes],
                beta: float) -> list[np.ndarray]:
        """Greedy batch: up to ``n`` distinct masks of ``pool`` not in ``excluded``, each the one
        whose optimistic prediction most improves the hypervolume of the observed front plus
        the predictions already picked (a dominated candidate ranks by how far it is from
        improving it)."""
        keys, rows = [], []
        seen = set(excluded)
        for i, mask in enumerate(pool):
            key = pack_mask(mask)
            if key not in seen:
                seen.add(key)
                keys.append(key)
                rows.append(i)
        if not rows or n <= 0:
            return []
        cand = pool[rows]
        mean, std = self._model.predict(cand)
        y = mean - beta * std
        for i, key in enumerate(keys):
            self._predicted[key] = (mean[i], std[i])
        ref = self._ref_n()
        front = Yn[non_dominated(Yn) & np.all(Yn < ref, axis=1)]
        picked: list[int] = []
        alive = np.ones(len(cand), dtype=bool)
        for _ in range(min(n, len(cand))):
            score = _improvement(y, front, ref)
            score[~alive] = -np.inf
            best = int(np.argmax(score))
            picked.append(best)
            alive[best] = False
            if np.all(y[best] < ref) and score[best] > 0:
                front = np.vstack([front, y[best]])
                front = front[non_dominated(front)]
        return [cand[i] for i in picked]

    # ---------------------------------------------------------------- fallback
    def _novel(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        """``n`` new valid masks (fewer only when the space is nearly exhausted, then known ones
        fill the batch): moves around the observed front (1-3 moves), random masks of growing
        pruning ratio, and at last random masks of any ratio."""
        space = self.problem.space
        out: list[np.ndarray] = []
        if n <= 0:
            return out
        X, Yn = self._data() if self._n_finite() else (np.array(self._masks, dtype=bool).reshape(-1, space.dim),
                                                        np.zeros((0, 0)))
        base = X[non_dominated(Yn)] if len(Yn) else X
        if len(base) == 0:
            base = space.keep_all()
        seen = set(excluded)
        for attempt in range(21):
            if attempt < 20:
                x = torch.as_tensor(base[self.rng.integers(len(base), size=4 * n)])
                for _ in range(1 + attempt % 3):
                    x = self._moves.propose(x, self._gen)[0]
                top = min(self.initial_max_ratio * (1 + attempt), 1.0)
                cands = [*x.numpy(), *space.sample(2 * n, self.rng, max_ratio=top)]
            else:  # last resort: anywhere in the space
                cands = list(space.sample(100 * n, self.rng))
            for mask in cands:
                key = pack_mask(mask)
                if key not in seen:
                    seen.add(key)
                    out.append(mask)
                    if len(out) == n:
                        return out
        # the space is (nearly) exhausted: repeat known masks (they cost nothing)
        while len(out) < n:
            out.append(space.sample(1, self.rng)[0])
        return out


def _head_weights(problem, sens) -> np.ndarray:
    """``float[d]`` design weights of the heads from the sensitivities of the unpruned mask:
    ``exp(-rank / 2)`` by Pareto rank of (estimated bias change, estimated worst utility cost),
    both normalized by the bounds; a tenth for heads without an estimated bias gain."""
    lo, hi = np.asarray(problem.bounds, dtype=float)
    delta = np.asarray(sens.delta, dtype=float) / np.where(hi > lo, hi - lo, 1.0)[:, None]
    db = np.nan_to_num(delta[0], nan=np.inf)
    du = np.nan_to_num(np.maximum(delta[1:], 0.0), nan=np.inf).max(axis=0) if len(delta) > 1 else np.zeros_like(db)
    pts = np.stack([db, du], axis=1)
    rank = np.full(len(db), len(db), dtype=float)
    left = np.flatnonzero(np.isfinite(pts).all(axis=1))
    r = 0
    while left.size:
        front = left[non_dominated(pts[left])]
        rank[front] = r
        left = np.setdiff1d(left, front)
        r += 1
    return np.exp(-rank / 2.0) * np.where(db < 0, 1.0, 0.1)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run a block with ``n`` torch intra-op threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _improvement(y: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``float[k]``: hypervolume improvement of each row of ``y`` over ``front`` (within ``ref``),
    or, where there is none, minus the additive shift the row needs before it would improve it."""
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
