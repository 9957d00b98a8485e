"""GP + expected hypervolume improvement, optimized by simulated annealing: a composition.

The recipe: the low-ratio initial design of :func:`~framework.designs.initial_design`; a GP
surrogate (Hamming kernel); batched simulated annealing of analytic EHVI (one chain per
restart, all chains on the same acquisition, started at the best told masks under it) inside
the pruned-count cap and an adaptive Hamming trust region; the batch picked greedily by EHVI,
each pick joining the front at its predicted mean before the next.
"""

from __future__ import annotations

from acquisition.annealing import AnnealSchedule
from acquisition.composed import ModelBasedStrategy, RoundParts, annealer_factory
from acquisition.hypervolume import ExpectedHypervolumeImprovement
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap
from framework.designs import initial_design
from framework.registry import SURROGATES

__all__ = ["GPEHVISA"]


class GPEHVISA(ModelBasedStrategy):
    """GP surrogate, EHVI acquisition, SA optimizer, adaptive Hamming trust region."""

    name = "gp-ehvi-sa"
    summary = "GP surrogate + expected hypervolume improvement, optimized by batched SA in a Hamming trust region"

    def __init__(self, *, surrogate_options: dict | None = None, initial_fraction: float = 0.3, min_initial: int = 8,
                 initial_max_ratio: float = 0.05, n_chains: int = 16, n_steps: int = 200,
                 trust_radius: float = 0.02, pruned_growth: float = 0.5, torch_threads: int | None = 1) -> None:
        """Args:
            surrogate_options: options of the ``gp`` surrogate (``seed`` is set from the run's seed).
            initial_fraction: share of the budget spent on the initial design, in (0, 1].
            min_initial: smallest initial design.
            initial_max_ratio: largest pruning ratio of the design's random masks, in (0, 1].
            n_chains, n_steps: annealing chains and steps per chain per round.
            trust_radius: initial Hamming radius as a share of the heads.
            pruned_growth: pruned-count cap beyond the told front's most pruned mask.
            torch_threads: torch threads while fitting and annealing (``None``: unchanged).
        """
        if not 0.0 < initial_fraction <= 1.0 or not 0.0 < initial_max_ratio <= 1.0 or min_initial < 1:
            raise ValueError(f"need initial_fraction and initial_max_ratio in (0, 1], min_initial >= 1; got "
                             f"{initial_fraction}, {initial_max_ratio}, {min_initial}")
        if n_chains < 1:
            raise ValueError(f"n_chains must be >= 1, got {n_chains}")
        self.surrogate_options = dict(surrogate_options or {})
        SURROGATES.check_options("gp", self.surrogate_options)  # before any problem or model loads
        self.initial_fraction, self.min_initial = float(initial_fraction), int(min_initial)
        self.initial_max_ratio = float(initial_max_ratio)
        self.n_chains, self.n_steps = int(n_chains), int(n_steps)
        self._schedule = AnnealSchedule(n_steps=self.n_steps)
        self._region = HammingTrustRegion(initial_ratio=trust_radius)
        self._cap = PrunedCountCap(growth=pruned_growth)
        self.trust_radius, self.pruned_growth = float(trust_radius), float(pruned_growth)
        self.torch_threads = torch_threads

    def _make_surrogate(self):
        return SURROGATES.create("gp", **{"seed": int(self.rng.integers(2**31)), **self.surrogate_options})

    def _initial_design(self):
        self._region.start(self.problem.space.dim)
        n = min(max(int(round(self.initial_fraction * self.budget)), self.min_initial), self.budget)
        return list(initial_design(self.problem.space, n, self.rng, initial_max_ratio=self.initial_max_ratio))

    def _parts(self, state) -> RoundParts:
        return RoundParts(energy=ExpectedHypervolumeImprovement(), select=ExpectedHypervolumeImprovement(),
                          optimizer=annealer_factory(self._schedule, None), n_chains=self.n_chains,
                          cap=self._cap, region=self._region, starts="front")

    def diagnostics(self) -> dict:
        from surrogates.quality import model_based_diagnostics

        return model_based_diagnostics(self, "gp", self.surrogate_options)
