"""The problem contract: what a strategy optimizes.

A problem maps ``bool[n, d]`` masks to ``float[n, m]`` objective values, every objective
minimized.  It carries the data needed to compare strategies fairly: a reference point for
hypervolume and normalization bounds, both in raw objective units (BoTorch's idiom: the
reference point is data on the problem, not a convention of a script).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.space import HeadSpace, as_masks

__all__ = ["Problem", "Sensitivities", "NoSensitivities", "SEARCH", "HELDOUT", "validate_roles"]

SEARCH = "search"
HELDOUT = "heldout"


class NoSensitivities(NotImplementedError):
    """The problem (or its current objective) offers no head sensitivities."""


@dataclass(frozen=True)
class Sensitivities:
    """First-order estimates of what flipping each head of ``mask`` does to each objective.

    ``delta[j, h]``: estimated change of objective ``j`` (raw units, minimized) when head ``h``
    alone is flipped from ``mask`` (switched off where kept, back on where pruned);
    ``se[j, h]``: its standard error over the metric's sampling units (NaN where the metric has
    none); ``values[j]``: the objectives at ``mask`` measured by the same pass (for reference: the
    evaluation of a mask is what :meth:`Problem.evaluate` returns).  ``info``: JSON-able extras
    (timing, noise model, per-objective notes).  One call costs one real evaluation of a budget.
    """

    mask: np.ndarray
    delta: np.ndarray
    se: np.ndarray
    values: np.ndarray
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def listed(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.atleast_2d(a)]

        return {"delta": listed(self.delta), "se": listed(self.se), "values": listed(self.values)[0],
                "info": self.info}

    @classmethod
    def from_json(cls, mask: np.ndarray, data: dict[str, Any]) -> Sensitivities:
        def arr(x) -> np.ndarray:
            return np.array(x, dtype=float)  # None -> nan

        return cls(np.asarray(mask, dtype=bool), arr(data["delta"]), arr(data["se"]), arr(data["values"]),
                   dict(data.get("info", {})))


def _index_tuple(costs: Any, problem: str) -> tuple:
    if isinstance(costs, (str, bytes)) or not hasattr(costs, "__iter__"):
        raise ValueError(f"problem {problem!r}: cost_objectives must be a tuple of objective indices, got {costs!r}")
    return tuple(costs)


def validate_roles(bias: Any, costs: Any, n_objectives: int, *,
                   problem: str = "problem") -> tuple[int, tuple[int, ...]]:
    """Check the objective roles of a problem with ``n_objectives`` objectives: ``bias`` an objective
    index, ``costs`` distinct objective indices other than ``bias``.  Returns them as
    ``(int, tuple[int, ...])``; raises a :class:`ValueError` naming ``problem`` otherwise."""
    def index(x: Any, what: str) -> int:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            raise ValueError(f"problem {problem!r}: {what} must be an objective index (int), got {x!r}")
        if not 0 <= int(x) < n_objectives:
            raise ValueError(f"problem {problem!r}: {what} {int(x)} is out of range: it has {n_objectives} "
                             f"objective(s), indices 0..{n_objectives - 1}")
        return int(x)

    b = index(bias, "bias_objective")
    c = tuple(index(x, "cost objective") for x in _index_tuple(costs, problem))
    if b in c:
        raise ValueError(f"problem {problem!r}: objective {b} is declared both the bias and a cost "
                         f"(bias_objective={b}, cost_objectives={c})")
    if len(set(c)) != len(c):
        raise ValueError(f"problem {problem!r}: cost_objectives {c} repeats an objective")
    return b, c


class Problem(ABC):
    """Base class of every problem.

    Subclasses set, in ``__init__``: ``space`` (a :class:`HeadSpace`), ``objective_names``,
    ``ref_point`` (``float[m]``) and ``bounds`` (``float[2, m]``: row 0 the ideal/lower
    values, row 1 the nadir/upper values used to normalize objectives to about [0, 1]);
    and implement :meth:`_evaluate` and :meth:`describe`.

    Problems whose objectives come from data (prompts, text) list the data splits they can
    evaluate on in ``splits``; the first is the one searched.  ``"heldout"`` must never be
    seen by a strategy: the framework only uses it to re-evaluate final fronts.

    ``_evaluate`` may return a non-finite row for a mask it could not evaluate: that
    evaluation is stored as failed (and still counts against the budget).

    Roles: which objective is which, for the pick rule, the verdict and the plots of a run.
    ``bias_objective`` (default ``0``) is the index of the bias, the objective a repair must
    lower; ``cost_objectives`` (default: every other objective, ``(1,)`` for two) are the
    utility costs a repair must keep within a limit of the unpruned model (the first one is the
    cost the pick rule bounds and the plots put on the x axis).  Strategies still see and
    minimize every objective alike.  A problem declares them as class attributes, or sets them
    in ``__init__``; :meth:`check_roles` validates them.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    space: HeadSpace
    objective_names: tuple[str, ...]
    ref_point: np.ndarray
    bounds: np.ndarray
    splits: tuple[str, ...] = (SEARCH,)
    bias_objective: int = 0
    _cost_objectives: tuple[int, ...] | None = None    # None: every objective but the bias

    @property
    def n_objectives(self) -> int:
        return len(self.objective_names)

    # -------------------------------------------------------------------- roles
    @property
    def cost_objectives(self) -> tuple[int, ...]:
        """Indices of the utility-cost objectives (declared, or every objective but the bias)."""
        if self._cost_objectives is not None:
            return tuple(self._cost_objectives)
        return tuple(j for j in range(self.n_objectives) if j != self.bias_objective)

    @cost_objectives.setter
    def cost_objectives(self, value: tuple[int, ...]) -> None:
        self._cost_objectives = _index_tuple(value, self.name or type(self).__name__)

    def check_roles(self) -> tuple[int, tuple[int, ...]]:
        """``(bias_objective, cost_objectives)`` once checked (:func:`validate_roles`); a
        :class:`ValueError` saying what is wrong otherwise."""
        return validate_roles(self.bias_objective, self.cost_objectives, self.n_objectives,
                              problem=self.name or type(self).__name__)

    # --------------------------------------------------------------- evaluation
    def evaluate(self, masks: np.ndarray, split: str = SEARCH) -> np.ndarray:
        """``bool[n, d]`` -> ``float[n, m]`` objective values (minimized) on ``split``."""
        return self.evaluate_with_info(masks, split)[0]

    def evaluate_with_info(self, masks: np.ndarray, split: str = SEARCH) -> tuple[np.ndarray, list[dict]]:
        """Like :meth:`evaluate`, plus one JSON-able dict per mask of extra figures
        (standard errors, raw metric values, ...) that the store keeps beside the values."""
        if split not in self.splits:
            raise ValueError(f"problem {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        m = as_masks(masks, self.space.dim)
        out = self._evaluate(m, split)
        values, info = out if isinstance(out, tuple) else (out, [{} for _ in range(len(m))])
        values = np.asarray(values, dtype=float)
        if values.shape != (len(m), self.n_objectives):
            raise RuntimeError(f"{type(self).__name__}._evaluate returned shape {list(values.shape)}, "
                               f"expected [{len(m)}, {self.n_objectives}]")
        return values, list(info)

    @abstractmethod
    def _evaluate(self, masks: np.ndarray, split: str) -> np.ndarray | tuple[np.ndarray, list[dict]]:
        """Evaluate validated ``bool[n, d]`` masks on ``split``."""

    # ------------------------------------------------------------ sensitivities
    @property
    def has_sensitivities(self) -> bool:
        """Whether :meth:`sensitivities` gives estimates (strategies ask; none requires it)."""
        return False

    def sensitivities(self, mask: np.ndarray, split: str = SEARCH) -> Sensitivities:
        """Estimated change of every objective when each head alone is flipped from ``mask``
        (``bool[d]``), on ``split``: a :class:`Sensitivities` with ``delta float[m, d]``.  Costs one
        real evaluation (the loop counts it and stores it).  :class:`NoSensitivities` when the
        problem has none."""
        if split not in self.splits:
            raise ValueError(f"problem {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        if not self.has_sensitivities:
            raise NoSensitivities(f"problem {self.name!r} offers no head sensitivities")
        m = as_masks(np.asarray(mask).reshape(1, -1), self.space.dim)[0]
        out = self._sensitivities(m, split)
        shape = (self.n_objectives, self.space.dim)
        if out.delta.shape != shape or out.se.shape != shape or out.values.shape != (self.n_objectives,):
            raise RuntimeError(f"{type(self).__name__}._sensitivities returned delta {list(out.delta.shape)}, "
                               f"se {list(out.se.shape)}, values {list(out.values.shape)}; expected {list(shape)}")
        return out

    def _sensitivities(self, mask: np.ndarray, split: str) -> Sensitivities:
        raise NoSensitivities(f"problem {self.name!r} offers no head sensitivities")

    # ----------------------------------------------------------------- identity
    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able settings that determine the objective values (model, data, metric sizes...)."""

    def fingerprint(self, split: str = SEARCH) -> str:
        """Hash that changes whenever the objective values for a mask could change."""
        payload = {"problem": self.name, "split": split, "settings": self.describe(),
                   "space": self.space.describe(), "objectives": list(self.objective_names)}
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    # --------------------------------------------------------------- comparison
    def normalize(self, values: np.ndarray, *, clip: bool = False) -> np.ndarray:
        """Map raw objective values with the problem's bounds: ideal -> 0, nadir -> 1.

        ``clip=True`` (what every quality indicator uses): values better than the ideal bound are
        set to it, so area beyond the bounds (e.g. a perplexity below the unpruned model's, which is
        measurement noise) adds no hypervolume."""
        lo, hi = np.asarray(self.bounds, dtype=float)
        y = (np.asarray(values, dtype=float) - lo) / np.where(hi > lo, hi - lo, 1.0)
        return np.maximum(y, 0.0) if clip else y

    def reference_front(self) -> np.ndarray | None:
        """Best known front ``float[k, m]`` (raw units) for IGD+, or ``None``."""
        return None

    def baseline(self, split: str = SEARCH) -> np.ndarray | None:
        """Objective values ``float[m]`` of the unpruned (keep-all) mask on ``split``, or ``None``
        when the problem has no such notion (synthetic problems)."""
        return None

    def report(self, masks: np.ndarray, splits: list[str], axes: list[str] | None = None,
               metrics: list[str] | None = None) -> dict[str, Any]:
        """JSON-able figures of ``masks`` on each split (``headrepair evaluate``).  Problems with
        richer metrics (standard errors, several bias axes, metric selection) override this;
        the base has no axes or metrics to select and refuses them."""
        if axes or metrics:
            raise ValueError(f"problem {self.name!r} has no axes or metrics to select")
        out: dict[str, Any] = {}
        for split in splits:
            values, info = self.evaluate_with_info(masks, split)
            out[split] = [{"objectives": dict(zip(self.objective_names, map(float, v), strict=True)), **i}
                          for v, i in zip(values, info, strict=True)]
        return out

    def verification_figures(self, mask: np.ndarray, split: str) -> dict[str, Any]:
        """Further figures of a chosen mask (``bool[d]``) on ``split`` that are not objectives (e.g.
        accuracy on a user's task), reported beside its objectives; each a dict with ``value``,
        ``se``, ``baseline`` (the unpruned model), ``change`` and ``change_se`` (paired).
        Default: none."""
        return {}

    def export(self, mask: np.ndarray, out_dir: str, metadata: dict[str, Any]) -> str:
        """Write the repaired artefact of ``mask`` (e.g. a pruned model) to ``out_dir``."""
        raise NotImplementedError(f"problem {self.name!r} has nothing to export")

    def stand_in_accuracy(self) -> list[dict] | None:
        """For a problem that stands in for a real one (``replay``): how well it answers, as rows
        ``{split, objective, region, r2, spearman, n}`` measured on real evaluations it was not
        fitted on; benchmark reports print them.  ``None`` (default): not a stand-in."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (models, files).  Default: nothing to release."""
