"""A model-based strategy composed of registered parts: MLP ensemble + LCB + local search + hv-gain."""

from acquisition.composed import ModelBasedStrategy, RoundParts, local_search_factory
from acquisition.hypervolume import HypervolumeGain
from acquisition.scalarizations import LowerConfidenceBound
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap
from framework.designs import initial_design
from framework.registry import SURROGATES


class MLPLCBLocal(ModelBasedStrategy):
    """MLP ensemble, optimistic weighted-sum energy, single-flip local search, hypervolume-gain batch."""

    name = "mlp-lcb-local"
    summary = "MLP ensemble + LCB energy, single-flip local search in a Hamming trust region, hv-gain batch"

    def __init__(self, *, beta: float = 1.0, n_chains: int = 8, max_steps: int = 10,
                 initial_fraction: float = 0.3, surrogate_options: dict | None = None) -> None:
        """Args:
            beta: optimism of energy and selection (``mean - beta * std``), >= 0.
            n_chains: local-search chains per round, each with its own weight vector (>= 1).
            max_steps: improving flips per chain and round (>= 1).
            initial_fraction: share of the budget spent on the initial design, in (0, 1].
            surrogate_options: options of the ``mlp`` surrogate (``seed`` is set from the run's seed).
        """
        if not 0.0 < initial_fraction <= 1.0 or n_chains < 1 or max_steps < 1:
            raise ValueError(f"need initial_fraction in (0, 1], n_chains >= 1, max_steps >= 1; "
                             f"got {initial_fraction}, {n_chains}, {max_steps}")
        LowerConfidenceBound(beta=beta)  # validates beta now, not in the first round
        self.beta, self.n_chains, self.max_steps = float(beta), int(n_chains), int(max_steps)
        self.initial_fraction = float(initial_fraction)
        self.surrogate_options = dict(surrogate_options or {})
        SURROGATES.check_options("mlp", self.surrogate_options)

    def _make_surrogate(self):
        return SURROGATES.create("mlp", **{"seed": int(self.rng.integers(2**31)), **self.surrogate_options})

    def _setup(self) -> None:
        self._region = HammingTrustRegion(initial_ratio=0.05).start(self.problem.space.dim)  # adapts per round
        super()._setup()  # history, surrogate (_make_surrogate), design (_initial_design)

    def _initial_design(self):
        n = min(max(round(self.initial_fraction * self.budget), 4), self.budget)
        return list(initial_design(self.problem.space, n, self.rng, initial_max_ratio=self.initial_max_ratio))

    def _parts(self, state):
        return RoundParts(energy=LowerConfidenceBound(beta=self.beta), select=HypervolumeGain(beta=self.beta),
                          optimizer=local_search_factory(max_steps=self.max_steps), n_chains=self.n_chains,
                          cap=PrunedCountCap(growth=0.5), region=self._region, neighbours_per_chain=2)


if __name__ == "__main__":
    from framework.loop import optimize
    from framework.registry import PROBLEMS

    problem = PROBLEMS.create("rho-mnk", n_bits=16, k=1, rho=-0.5, seed=0)
    strategy = MLPLCBLocal(surrogate_options={"hidden": (32,), "max_epochs": 50})
    result = optimize(problem, strategy, budget=20, batch_size=4, seed=0, progress=False)
    print(f"evaluations {result.n_evaluations}, hypervolume {result.hypervolume:.4f}, "
          f"front {len(result.front_values)} masks, rounds {len(strategy.timings)}")
