"""Surrogate-assisted simulated annealing (Attention Pruning, Dasu et al. 2025).

``surrogate-sa`` (iterative, multi-objective; the product's default strategy), composed of:

- design: :func:`~framework.designs.initial_design`, ``initial_fraction`` of the budget: the
  unpruned mask, then, aimed by head sensitivities where the problem has them, single-head and
  KV-group knock-outs of the heads they rank best and masks pruning at most 5% of the heads that
  favour them; without sensitivities, random masks pruning up to 25% of the heads (pruned count
  log-uniform, heads drawn least-used first) (:data:`DESIGNS`);
- surrogate: any registered one (a GP with the Hamming kernel by default), refitted every round;
- acquisition (``acquisition="ehvi"``, the default): the chains start at the told front and lower
  minus the :class:`~acquisition.hypervolume.ExpectedHypervolumeImprovement`, and the batch is
  picked by it, each pick joining the front at its predicted mean and the surrogate conditioned
  on it there (a kriging believer, ``pending="believer"``), so the next picks go where the
  surrogate is still unsure, not to copies of the first; ``"scalarized"``: the chains
  lower a :class:`~acquisition.scalarizations.MixedScalarization` of ``mean - exploration * std``
  (half hold the cost under a relative threshold, half follow augmented Chebyshev weights) and
  the batch is picked by :class:`~acquisition.hypervolume.HypervolumeGain` of the optimistic
  predictions (the default before the primary-strategy benchmark, with the ``mlp`` surrogate);
- optimizer: batched :class:`~acquisition.annealing.SimulatedAnnealing`;
- trust regions: :class:`~acquisition.trust_regions.PrunedCountCap` and an adaptive
  :class:`~acquisition.trust_regions.HammingTrustRegion` around each chain's start.

Why this combination is the default: ``docs/benchmarks.md``, "How the default was chosen".

``surrogate-sa-oneshot`` (:class:`SurrogateSAOneshot`, or ``surrogate-sa`` with
``mode="oneshot"``) is the paper's procedure: most of the budget on the design, one fit, one
long annealing of the threshold scalarization of the mean (MLP ensemble surrogate, as the
paper), then the rest of the budget verifies the masks the chains found, in order of predicted
hypervolume gain.

Head sensitivities (``sensitivities="design"``, the default, used only where the problem has
them): the run's first budget unit is a sensitivity call at the unpruned mask; the design's
knock-outs then take the heads ranked best by
:func:`~framework.designs.sensitivity_weights`, and its random masks favour them.
"""

from __future__ import annotations

import time

import numpy as np

from acquisition.annealing import AnnealSchedule, MoveWeights
from acquisition.base import SearchState
from acquisition.composed import ModelBasedStrategy, RoundParts, annealer_factory
from acquisition.hypervolume import BOUNDED, PENDING_RULES, ExpectedHypervolumeImprovement, HypervolumeGain
from acquisition.scalarizations import MixedScalarization
from acquisition.trust_regions import HammingTrustRegion, PrunedCountCap
from framework.designs import PRUNED_COUNTS, initial_design, sensitivity_weights
from framework.history import pack_mask
from framework.registry import SURROGATES

__all__ = ["SurrogateSA", "SurrogateSAOneshot"]

MODES = ("iterative", "oneshot")
ACQUISITIONS = ("scalarized", "ehvi")
SENSITIVITY_USES = ("design", "off")
SCALARIZATIONS = {"mixed": 0.5, "threshold": 1.0, "chebyshev": 0.0}  # share of threshold chains
# the design when options leave it open (None), by whether head sensitivities aim it: aimed, the
# knock-outs and low-ratio masks of the heads they rank best; blind, random masks over a wider range
# of pruned counts (single knock-outs add almost no hypervolume, and on the benchmark problems the
# front is not confined to 5% of the heads; docs/benchmarks.md, "How the default was chosen")
# (the one-shot mode keeps the focused design it always had)
DESIGNS = {"focused": {"knockout_fraction": 0.4, "group_fraction": 0.1, "initial_max_ratio": 0.05,
                       "pruned_counts": "log"},
           "wide": {"knockout_fraction": 0.0, "group_fraction": 0.0, "initial_max_ratio": 0.25, "pruned_counts": "log"}}


class SurrogateSA(ModelBasedStrategy):
    """Surrogate-assisted simulated annealing over head masks (``iterative``, or ``oneshot``).

    Objectives are normalized with the problem's bounds before the surrogate sees them; the
    problem's roles say which objective the threshold chains lower (the bias) and which they
    bound (the costs).
    """

    name = "surrogate-sa"
    summary = "surrogate-assisted simulated annealing: initial design, surrogate, batched SA chains, verify"

    def __init__(self, *, mode: str = "iterative", surrogate: str | None = None, surrogate_options: dict | None = None,
                 initial_fraction: float | None = None, min_initial: int = 8,
                 initial_max_ratio: float | None = None, knockout_fraction: float | None = None,
                 group_fraction: float | None = None, pruned_counts: str | None = None,
                 n_chains: int = 32, n_steps: int | None = None, cooling: str = "geometric",
                 initial_acceptance: float = 0.5, final_temperature_ratio: float = 1e-3,
                 move_weights: dict | None = None, scalarization: str | None = None,
                 thresholds: tuple[float, float] = (0.01, 0.30), penalty: float = 10.0,
                 exploration: float = 0.5, neighbours_per_chain: int = 4,
                 pruned_growth: float | None = 0.5, trust_radius: float | None = 0.02,
                 torch_threads: int | None = 1, sensitivities: str = "design",
                 acquisition: str = "ehvi", pending: str = "believer", bounded: str = "none") -> None:
        """Args:
            mode: ``"iterative"`` (rounds of refit/anneal/select) or ``"oneshot"`` (the paper: design,
                one fit, one annealing, verify; the same as ``surrogate-sa-oneshot``).
            surrogate: registered surrogate name (``headrepair list surrogates``); ``None`` = ``"gp"``
                (iterative) or ``"mlp"`` (oneshot, as the paper).
            surrogate_options: keyword options of that surrogate (``seed`` is set from the run's seed).
            initial_fraction: share of the budget spent on the initial design; ``None`` = 0.3
                (iterative) or 0.8 (oneshot).
            min_initial: smallest initial design (when the budget allows).
            initial_max_ratio: largest pruning ratio of the design's random masks; ``None`` = 0.05
                when the design is aimed by head sensitivities (and in oneshot mode), else 0.25
                (:data:`DESIGNS`).
            knockout_fraction: share of the design (after the unpruned mask) spent on single-head
                knock-outs; ``None`` = 0.4 when aimed by sensitivities (and in oneshot mode), else 0.
            group_fraction: share of the design spent on whole-KV-group knock-outs (structured
                spaces); ``None`` = 0.1 when aimed by sensitivities (and in oneshot mode), else 0.
            pruned_counts: how the design draws the pruned count of its random masks: ``"log"``
                (log-uniform, most prune few heads), ``"uniform"`` or ``"mixed"`` (each in turn);
                ``None`` = ``"log"``.
            n_chains: SA chains run together (one batched surrogate call per step).
            n_steps: SA steps per chain; ``None`` = 500 (iterative, per round) or 4000 (oneshot).
            cooling, initial_acceptance, final_temperature_ratio: the annealing schedule
                (:class:`~acquisition.annealing.AnnealSchedule`).
            move_weights: ``{move: weight}`` over ``flip``, ``swap``, ``kv_swap``, ``layer_swap``,
                ``group`` (missing moves keep their defaults 1, 1, 0.5, 0.5, 0.25).
            scalarization: ``"threshold"``, ``"chebyshev"`` or ``"mixed"`` (half the chains each);
                ``None`` = mixed (iterative) or threshold (oneshot).
            thresholds: ``(low, high)`` relative cost thresholds spread over the threshold chains.
            penalty: penalty per normalized unit a predicted cost exceeds its threshold.
            exploration: optimism ``beta`` of annealing and selection (``mean - beta * std``;
                iterative mode; oneshot uses the mean, as the paper).
            neighbours_per_chain: random moves around each chain's best state added to the pool.
            pruned_growth: pruned-count trust region (:class:`~acquisition.trust_regions.PrunedCountCap`);
                ``None`` = only the space's limit.
            trust_radius: iterative mode: initial Hamming radius as a share of the heads
                (:class:`~acquisition.trust_regions.HammingTrustRegion`); ``None`` = no radius.
            torch_threads: torch intra-op threads while the strategy fits and anneals (restored
                afterwards; its tensors are small and extra threads on a busy machine slowed them
                5-50x); ``None`` = leave torch's setting alone.
            sensitivities: ``"design"``: where the problem has head sensitivities, spend one budget
                unit on them at the unpruned mask and aim the design at the heads they rank best;
                ``"off"``: never ask for them.
            acquisition: iterative mode: ``"scalarized"`` (the chains lower the mixed threshold /
                Chebyshev scalarization of ``mean - exploration * std``, the batch is picked by
                optimistic hypervolume gain) or ``"ehvi"`` (the chains, started at the told front,
                lower minus the expected hypervolume improvement, and the batch is picked by it,
                with pending picks counted as ``pending`` says).
            pending: ``acquisition="ehvi"``: how a pick counts for the next pick of the batch
                (:class:`~acquisition.hypervolume.ExpectedHypervolumeImprovement`): ``"believer"``
                (the default since 2026-12-06: it joins the front at its predicted mean and the
                surrogate is conditioned on it there, shrinking the spread of correlated
                candidates) or ``"mean"`` (it only joins the front; the default before).
            bounded: ``acquisition="ehvi"``: which objectives count expected improvement only up to
                their ideal bound, as the product's hypervolume does: ``"none"``, ``"bias"`` or
                ``"all"`` (:class:`~acquisition.hypervolume.ExpectedHypervolumeImprovement`).
        """
        checks = [(mode in MODES, f"mode must be one of {MODES}, got {mode!r}"),
                  (acquisition in ACQUISITIONS, f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}"),
                  (pending in PENDING_RULES, f"pending must be one of {PENDING_RULES}, got {pending!r}"),
                  (bounded in BOUNDED, f"bounded must be one of {BOUNDED}, got {bounded!r}"),
                  (sensitivities in SENSITIVITY_USES,
                   f"sensitivities must be one of {SENSITIVITY_USES}, got {sensitivities!r}"),
                  (initial_fraction is None or 0.0 < initial_fraction <= 1.0,
                   f"initial_fraction must be in (0, 1], got {initial_fraction}"),
                  (min_initial >= 1, f"min_initial must be >= 1, got {min_initial}"),
                  (initial_max_ratio is None or 0.0 < initial_max_ratio <= 1.0,
                   f"initial_max_ratio must be in (0, 1] or None, got {initial_max_ratio}"),
                  (all(f is None or 0.0 <= f <= 1.0 for f in (knockout_fraction, group_fraction))
                   and (knockout_fraction or 0.0) + (group_fraction or 0.0) <= 1.0,
                   f"knockout_fraction and group_fraction must be in [0, 1] (or None) with a sum <= 1, "
                   f"got {knockout_fraction} + {group_fraction}"),
                  (pruned_counts is None or pruned_counts in PRUNED_COUNTS,
                   f"pruned_counts must be one of {PRUNED_COUNTS} or None, got {pruned_counts!r}"),
                  (n_chains >= 1, f"n_chains must be >= 1, got {n_chains}"),
                  (scalarization is None or scalarization in SCALARIZATIONS,
                   f"scalarization must be one of {tuple(SCALARIZATIONS)}, got {scalarization!r}"),
                  (trust_radius is None or 0.0 < trust_radius <= 1.0,
                   f"trust_radius must be in (0, 1] or None, got {trust_radius}"),
                  (torch_threads is None or torch_threads >= 1,
                   f"torch_threads must be >= 1 or None, got {torch_threads}"),
                  (pruned_growth is None or pruned_growth >= 0,
                   f"pruned_growth must be >= 0 or None, got {pruned_growth}"),
                  (exploration >= 0 and neighbours_per_chain >= 0,
                   f"need exploration >= 0, neighbours_per_chain >= 0; got {exploration}, {neighbours_per_chain}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        iterative = mode == "iterative"
        self.mode = mode
        self.surrogate = surrogate
        self.surrogate_options = dict(surrogate_options or {})
        self._surrogate = surrogate or ("gp" if iterative else "mlp")
        SURROGATES.check_options(self._surrogate, self.surrogate_options)  # before any problem or model loads
        self.initial_fraction = initial_fraction
        self.min_initial = int(min_initial)
        self.initial_max_ratio = None if initial_max_ratio is None else float(initial_max_ratio)
        self.knockout_fraction = None if knockout_fraction is None else float(knockout_fraction)
        self.group_fraction = None if group_fraction is None else float(group_fraction)
        self.pruned_counts = pruned_counts
        self.n_chains = int(n_chains)
        self.n_steps = n_steps
        self.cooling = cooling
        self.initial_acceptance = float(initial_acceptance)
        self.final_temperature_ratio = float(final_temperature_ratio)
        self._schedule = AnnealSchedule(n_steps=int(n_steps if n_steps is not None else (500 if iterative else 4000)),
                                        cooling=cooling, initial_acceptance=initial_acceptance,
                                        final_temperature_ratio=final_temperature_ratio)
        self.move_weights = MoveWeights.from_value(move_weights).as_dict()
        self.scalarization = scalarization
        self._mixed = MixedScalarization(threshold_share=SCALARIZATIONS[scalarization or
                                                                        ("mixed" if iterative else "threshold")],
                                         thresholds=thresholds, penalty=penalty)  # validates both
        self.thresholds = self._mixed.thresholds
        self.penalty = float(penalty)
        self.exploration = float(exploration)
        self.neighbours_per_chain = int(neighbours_per_chain)
        self.pruned_growth = None if pruned_growth is None else float(pruned_growth)
        self.trust_radius = None if trust_radius is None else float(trust_radius)
        self.torch_threads = None if torch_threads is None else int(torch_threads)
        self.sensitivities = sensitivities
        self.acquisition = acquisition
        self.pending = pending
        self.bounded = bounded

    @property
    def schedule(self) -> AnnealSchedule:
        """The annealing schedule the options give (``n_steps=None`` resolved by mode)."""
        return self._schedule

    # ------------------------------------------------------------------ parts
    def _make_surrogate(self):
        return SURROGATES.create(self._surrogate, **{"seed": int(self.rng.integers(2**31)), **self.surrogate_options})

    def _setup(self) -> None:
        iterative = self.mode == "iterative"
        fraction = self.initial_fraction if self.initial_fraction is not None else (0.3 if iterative else 0.8)
        self.initial_design_size = min(max(int(round(fraction * self.budget)), self.min_initial), self.budget)
        self._wanted = (self.problem.space.keep_all()[0] if self.sensitivities == "design"
                        and self.problem.has_sensitivities and self.budget > 1 else None)
        self._head_weights: np.ndarray | None = None
        preset = DESIGNS["focused" if self._wanted is not None or not iterative else "wide"]
        self._design_options = {k: preset[k] if getattr(self, k) is None else getattr(self, k) for k in preset}
        self._region = (HammingTrustRegion(initial_ratio=self.trust_radius).start(self.problem.space.dim)
                        if iterative and self.trust_radius is not None else None)
        self._queue: list[np.ndarray] | None = None  # oneshot: masks left to verify
        super()._setup()

    def _initial_design(self) -> list[np.ndarray]:
        if self._wanted is not None:  # made once the sensitivities are in (tell_sensitivities)
            return []
        return list(initial_design(self.problem.space, self.initial_design_size, self.rng,
                                   head_weights=self._head_weights, **self._design_options))

    @property
    def fill_max_ratio(self) -> float:
        return self._design_options["initial_max_ratio"]

    def _parts(self, state: SearchState) -> RoundParts:
        cap = None if self.pruned_growth is None else PrunedCountCap(growth=self.pruned_growth)
        if self.acquisition == "ehvi" and self.mode == "iterative":
            return RoundParts(energy=ExpectedHypervolumeImprovement(bounded=self.bounded),
                              select=ExpectedHypervolumeImprovement(pending=self.pending, bounded=self.bounded),
                              optimizer=annealer_factory(self._schedule, self.move_weights), n_chains=self.n_chains,
                              cap=cap, region=self._region, neighbours_per_chain=self.neighbours_per_chain,
                              starts="front")
        beta = self.exploration if self.mode == "iterative" else 0.0
        energy = MixedScalarization(threshold_share=self._mixed.threshold_share, thresholds=self.thresholds,
                                    penalty=self.penalty, beta=beta)
        return RoundParts(energy=energy, select=HypervolumeGain(beta=beta),
                          optimizer=annealer_factory(self._schedule, self.move_weights), n_chains=self.n_chains,
                          cap=cap,
                          region=self._region, neighbours_per_chain=self.neighbours_per_chain)

    # ---------------------------------------------------------- sensitivities
    def sensitivity_request(self) -> np.ndarray | None:
        return None if self._wanted is None else self._wanted.copy()

    def tell_sensitivities(self, sensitivities) -> None:
        if self._wanted is None:
            return
        self._wanted = None
        self._head_weights = sensitivity_weights(self.problem, sensitivities)
        self._design = self._initial_design()

    # ---------------------------------------------------------------- oneshot
    def _propose(self, n: int, excluded: set[bytes]) -> list[np.ndarray]:
        if self.mode == "iterative":
            return super()._propose(n, excluded)
        if self._queue is None:  # anneal once, then hand out the picks in order of predicted gain
            pool, parts, state, timing = self._optimize()
            t0 = time.perf_counter()
            parts.select.setup(state, 1, self.rng)
            self._queue = self._pick(parts.select, pool, max(self.budget - len(self.history), n), excluded)
            timing["select"] = time.perf_counter() - t0
            self._timings.append(timing)
        out: list[np.ndarray] = []
        while self._queue and len(out) < n:
            mask = self._queue.pop(0)
            if pack_mask(mask) not in excluded:
                out.append(mask)
                excluded.add(pack_mask(mask))
        return out

    def diagnostics(self) -> dict:
        """Surrogate quality and time for the run report (:func:`surrogates.quality.model_based_diagnostics`)."""
        from surrogates.quality import model_based_diagnostics

        return {"mode": self.mode, **model_based_diagnostics(self, self._surrogate, self.surrogate_options)}


class SurrogateSAOneshot(SurrogateSA):
    """The paper's surrogate SA: design (80% of the budget), one fit, one long annealing of the
    threshold scalarization of the predicted mean, then verify the best distinct masks found."""

    name = "surrogate-sa-oneshot"
    summary = "Attention Pruning's one-shot surrogate SA: design, one fit, one annealing, verify (paper-faithful)"

    def __init__(self, **options) -> None:
        """Options: those of :class:`SurrogateSA` except ``mode`` (always ``"oneshot"``)."""
        if "mode" in options:
            raise TypeError("surrogate-sa-oneshot has no option 'mode' (it is the oneshot mode)")
        super().__init__(mode="oneshot", **options)


def _without_mode():
    import inspect

    sig = inspect.signature(SurrogateSA.__init__)
    return sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "mode"])


SurrogateSAOneshot.__init__.__signature__ = _without_mode()  # its options, for --help, --set and checks
