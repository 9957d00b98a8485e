"""headrepair's core: contracts, registries, the evaluation store, the optimization loop, Pareto tools.

Public names are re-exported here; implementation lives in the submodules.
"""

from framework.history import History
from framework.loop import RunProgress, StrategyStalled, optimize
from framework.pareto import hypervolume, hypervolume_curve, igd_plus, non_dominated
from framework.problem import HELDOUT, SEARCH, Problem
from framework.registry import ACQUISITIONS, PROBLEMS, STRATEGIES, SURROGATES, Registry, RegistryError
from framework.results import OptimizationResult
from framework.space import HeadSpace, read_mask_file
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo, Strategy
from framework.surrogate import Surrogate

__all__ = [
    "ACQUISITIONS", "HELDOUT", "PROBLEMS", "SEARCH", "STRATEGIES", "SURROGATES", "EvaluationStore", "HeadSpace",
    "History",
    "OptimizationResult", "Problem", "ProblemInfo", "Registry", "RegistryError", "RunProgress", "Strategy",
    "StrategyStalled", "Surrogate", "hypervolume", "hypervolume_curve", "igd_plus", "non_dominated", "optimize",
    "read_mask_file",
]
