"""Attribution-greedy: follow the head sensitivities, verify every step on the real objective.

Needs a problem with head sensitivities (:meth:`~framework.problem.Problem.sensitivities`:
the first-order change of every objective when each head alone is flipped, one budget unit
per call).  Starting from the unpruned model:

1. sensitivities at the current mask (its objective values come with them);
2. candidates: flips (switch a kept head off, or a pruned one back on) with an estimated
   bias gain, best first, skipping flips whose estimated utility cost would leave the current
   utility limit; steps of ``k`` flips for each ``k`` in ``steps`` (greedy prefixes of the
   candidate list whose summed estimated utility cost stays inside the limit);
3. verify the steps with real evaluations; move to the verified mask with the lowest bias
   whose real utility is inside the limit, if it beats the current one, and go to 1;
   otherwise the flips of the failed steps become tabu at this mask and the next candidates
   are tried with the same sensitivities; when none is left, the utility limit moves to the
   next of ``limits`` (a looser one), so the run traces the front from cheap repairs to
   costly ones.

Objectives are compared normalized by the problem's bounds (0 = ideal, 1 = reference
point); ``limits`` are in those units on every utility objective.  When every limit is used
up, the remaining budget explores single and double flips around the best verified masks,
ranked by the latest sensitivities.  The budget counts evaluations and sensitivity calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framework.history import History, pack_mask
from framework.strategy import Strategy, StrategyNotApplicable

__all__ = ["AttributionGreedy"]


class AttributionGreedy(Strategy):
    """Greedy head flips ranked by head sensitivities, each step verified for real."""

    name = "attribution-greedy"
    summary = "flip the heads whose sensitivities promise the best bias gain inside a utility limit, verify, repeat"

    def __init__(self, *, limits: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0), steps: Sequence[int] = (1, 2, 4),
                 bias_objective: int = 0) -> None:
        """Args:
            limits: utility limits (normalized units: 0 = the bounds' ideal, 1 = the reference
                point), used in order; each must be > 0, increasing.
            steps: numbers of flips verified per step (greedy prefixes of the ranked candidates).
            bias_objective: index of the objective to lower; every other one is a utility
                objective held inside the limit.
        """
        limits = [float(x) for x in limits]
        steps = sorted({int(k) for k in steps})
        if not limits or any(x <= 0 for x in limits) or limits != sorted(limits):
            raise ValueError(f"limits must be positive and increasing, got {limits}")
        if not steps or steps[0] < 1:
            raise ValueError(f"steps must be integers >= 1, got {steps}")
        self.limits = limits
        self.steps = steps
        self.bias_objective = int(bias_objective)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        info = self.problem
        if not 0 <= self.bias_objective < info.n_objectives:
            raise ValueError(f"bias_objective={self.bias_objective} is not an objective index "
                             f"({list(info.objective_names)})")
        if not info.has_sensitivities:
            raise StrategyNotApplicable("attribution-greedy needs a problem with head sensitivities (masked-lm with "
                                        "a likelihood-based bias metric, or a synthetic problem with "
                                        "sensitivity_noise set); this one has none")
        if self.budget < 2:
            raise StrategyNotApplicable(f"attribution-greedy needs a budget of at least 2 (one sensitivity call and "
                                        f"one evaluation), got {self.budget}")
        space = info.space
        self._util = [j for j in range(info.n_objectives) if j != self.bias_objective]
        lo, hi = np.asarray(info.bounds, dtype=float)
        self._scale = np.where(hi > lo, hi - lo, 1.0)
        self._current = space.keep_all()[0].copy()
        self._current_y: np.ndarray | None = None      # normalized objectives of the current mask
        self._limit = 0
        self._sens = None                              # Sensitivities of the current mask
        self._wanted: np.ndarray | None = self._current.copy()
        self._pending: list[np.ndarray] = []
        self._step: set[bytes] = set()                 # masks of the step being verified, not yet told
        self._step_heads: list[np.ndarray] = []        # flipped heads of each mask of the step
        self._tabu: set[int] = set()
        self._told = History.of(info)                  # told masks, raw values (normalized on read)
        self._decisions: list[dict] = []

    # -------------------------------------------------------- sensitivities
    def sensitivity_request(self) -> np.ndarray | None:
        return None if self._wanted is None else self._wanted.copy()

    def tell_sensitivities(self, sensitivities) -> None:
        if self._wanted is None or not np.array_equal(sensitivities.mask, self._wanted):
            return
        self._wanted = None
        self._sens = sensitivities
        if self._current_y is None:
            self._current_y = self.problem.normalize(np.asarray(sensitivities.values, dtype=float))
        self._tabu = set()
        self._plan()

    # ---------------------------------------------------------------- plan
    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalized estimated change per head: bias ``float[d]``, worst utility ``float[d]``."""
        delta = np.asarray(self._sens.delta, dtype=float) / self._scale[:, None]
        db = np.nan_to_num(delta[self.bias_objective], nan=np.inf)
        du = np.nan_to_num(delta[self._util], nan=np.inf).max(axis=0)
        return db, du

    def _flippable(self) -> np.ndarray:
        space = self.problem.space
        ok = ~space.protected_mask
        if int((~self._current).sum()) >= space.max_pruned:
            ok &= ~self._current  # at the cap only restores are allowed
        return ok

    def _plan(self) -> None:
        """Queue the steps of the next candidates at the current mask and limit."""
        while self._limit < len(self.limits):
            steps = self._candidate_steps(self.limits[self._limit])
            if steps:
                self._pending = [m for m, _ in steps]
                self._step = {pack_mask(m) for m in self._pending}
                self._step_heads = [h for _, h in steps]
                return
            self._limit += 1
            self._tabu = set()
        self._pending, self._step, self._step_heads = [], set(), []

    def _candidate_steps(self, limit: float) -> list[tuple[np.ndarray, np.ndarray]]:
        db, du = self._estimates()
        u0 = float(np.max(self._current_y[self._util]))
        ok = self._flippable() & (db < 0)
        if u0 > limit:  # over the limit (a looser limit's mask): flips that win back utility first
            ok = self._flippable() & (du < 0)
            key = du
        else:
            key = db
        ok[list(self._tabu)] = False
        order = [int(h) for h in np.flatnonzero(ok)[np.argsort(key[ok], kind="stable")]]
        space = self.problem.space
        out, seen = [], set()
        for k in self.steps:
            chosen, cost, pruned = [], u0, int((~self._current).sum())
            for h in order:
                if len(chosen) == k:
                    break
                if u0 <= limit and cost + max(du[h], 0.0) > limit:
                    continue
                turns_off = bool(self._current[h])
                if turns_off and pruned + 1 > space.max_pruned:
                    continue
                chosen.append(h)
                cost += max(du[h], 0.0)
                pruned += 1 if turns_off else -1
            if not chosen:
                continue
            mask = self._current.copy()
            mask[chosen] = ~mask[chosen]
            key_m = pack_mask(mask)
            if key_m in seen or key_m in self._told or not space.is_valid(mask[None])[0]:
                continue
            seen.add(key_m)
            out.append((mask, np.array(chosen)))
        return out

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        taken: set[bytes] = set()
        while self._pending and len(out) < n:
            m = self._pending.pop(0)
            if m not in self._told:
                out.append(m)
                taken.add(pack_mask(m))
        if len(out) < n:
            out += self._explore(n - len(out), taken)
        return np.array(out, dtype=bool).reshape(n, self.problem.space.dim)

    def tell(self, masks: np.ndarray, values: np.ndarray) -> None:
        self._told.add(masks, values)
        for m in np.asarray(masks, dtype=bool):
            self._step.discard(pack_mask(m))
        if self._sens is not None and self._wanted is None and not self._step and self._step_heads:
            self._decide()

    def _decide(self) -> None:
        """All masks of the step are told: move, or mark the step's flips tabu and plan again."""
        limit = self.limits[min(self._limit, len(self.limits) - 1)]
        b0 = float(self._current_y[self.bias_objective])
        u0 = float(np.max(self._current_y[self._util]))
        best, best_key = None, None
        for heads in self._step_heads:
            mask = self._current.copy()
            mask[heads] = ~mask[heads]
            raw = self._told.value(mask)
            y = None if raw is None else self.problem.normalize(raw)
            if y is None or not np.all(np.isfinite(y)):
                continue
            u = float(np.max(y[self._util]))
            inside = u <= limit
            better = (y[self.bias_objective] < b0 and inside) or (u0 > limit and u < u0)
            rank = (0 if inside else 1, float(y[self.bias_objective]) if inside else u)
            if better and (best_key is None or rank < best_key):
                best, best_key = (mask, y), rank
        heads_tried = [int(h) for hs in self._step_heads for h in hs]
        self._step_heads = []
        if best is not None:
            self._current, self._current_y = best[0].copy(), best[1].copy()
            self._decisions.append({"move": int((~self._current).sum()), "limit": limit})
            self._wanted = self._current.copy()  # fresh sensitivities at the new mask
            return
        self._tabu.update(heads_tried)
        self._plan()

    # ------------------------------------------------------------- fallback
    def _explore(self, n: int, taken: set[bytes]) -> list[np.ndarray]:
        """``n`` new valid masks: one or two flips of verified front masks, heads ranked by the
        latest sensitivities (random where there are none), then random masks."""
        space = self.problem.space
        out: list[np.ndarray] = []
        seen = self._told.keys() | taken
        if len(self._told):  # the verified front (every told mask while none succeeded)
            bases = self._told.front()[0] if self._told.n_finite() else self._told.masks
        else:
            bases = self._current[None]
        if self._sens is not None:
            db, _ = self._estimates()
            weights = np.exp(-np.argsort(np.argsort(db)) / max(1.0, 0.1 * space.dim))
        else:
            weights = np.ones(space.dim)
        free = ~space.protected_mask
        p = np.where(free, weights, 0.0)
        p = p / p.sum() if p.sum() > 0 else None
        for _ in range(40 * max(n, 1)):
            if len(out) == n or p is None:
                break
            base = bases[self.rng.integers(len(bases))]
            k = 1 + int(self.rng.random() < 0.5)
            heads = self.rng.choice(space.dim, size=k, replace=False, p=p)
            mask = base.copy()
            mask[heads] = ~mask[heads]
            key = pack_mask(mask)
            if key not in seen and space.is_valid(mask[None])[0]:
                seen.add(key)
                out.append(mask)
        while len(out) < n:
            mask = space.sample(1, self.rng)[0]
            if pack_mask(mask) not in seen or len(seen) >= 2 ** min(space.dim, 30):
                seen.add(pack_mask(mask))
                out.append(mask)
        return out

    def diagnostics(self) -> dict:
        return {"moves": list(self._decisions), "limit_index": self._limit}
