"""Names of the ``masked-lm`` problem's metrics: bias metrics, utilities, the aggregates each bias metric accepts.

Re-exported by :mod:`objectives.masked_lm.problem`.
"""

from __future__ import annotations

from objectives.masked_lm.counterfactual import COUNTERFACTUAL_METRICS, PAIR_AGGREGATES, PRONOUN_AGGREGATES
from objectives.masked_lm.metrics import AGGREGATES

__all__ = ["BIAS_METRICS", "HOLISTIC_METRICS", "METRIC_AGGREGATES", "UTILITIES"]

HOLISTIC_METRICS = ("likelihood", "generation")
BIAS_METRICS = (*COUNTERFACTUAL_METRICS, *HOLISTIC_METRICS)
UTILITIES = ("perplexity",)
#: Aggregates each bias metric accepts; the first is its default.
METRIC_AGGREGATES = {"pronoun": PRONOUN_AGGREGATES, "swap": PAIR_AGGREGATES, "pairs": PAIR_AGGREGATES,
                     "likelihood": ("descriptor", *[a for a in AGGREGATES if a != "descriptor"]),
                     "generation": ("descriptor", *[a for a in AGGREGATES if a != "descriptor"])}
