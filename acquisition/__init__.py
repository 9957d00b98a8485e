"""The parts with which a fitted surrogate picks masks: acquisitions (registered under the
``headrepair.acquisitions`` entry point), acquisition optimizers (batched simulated annealing,
local search over single flips) and trust regions.

A model-based strategy is a composition: a surrogate (``surrogates/``) is fitted on the
:class:`~framework.history.History`; an :class:`Acquisition` turns its predictions into
energies; an optimizer lowers them inside a trust region; the acquisition picks the batch
from the optimizer's pool.  This package imports no strategy, problem or surrogate
implementation.
"""

from acquisition.annealing import AnnealSchedule, HeadMoves, MoveWeights, OptimizerResult, SimulatedAnnealing
from acquisition.base import Acquisition, SearchState, Selection
from acquisition.hypervolume import ExpectedHypervolumeImprovement, HypervolumeGain, hypervolume_improvement
from acquisition.local_search import LocalSearch
from acquisition.scalarizations import (
    ChebyshevScalarization,
    LowerConfidenceBound,
    MixedScalarization,
    ThresholdScalarization,
)
from acquisition.thompson import ThompsonSampling
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap

__all__ = [
    "Acquisition", "AnnealSchedule", "ChebyshevScalarization", "ExpectedHypervolumeImprovement",
    "HammingTrustRegion", "HeadMoves", "HypervolumeGain", "LocalSearch", "LowerConfidenceBound",
    "MixedScalarization", "MoveWeights", "OptimizerResult", "PrunedCountCap", "SearchState", "Selection",
    "SimulatedAnnealing", "ThompsonSampling", "ThresholdScalarization", "hypervolume_improvement",
]
