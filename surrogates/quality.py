"""How well a surrogate predicts real evaluations it was not fitted on.

:func:`surrogate_quality` fits on part of the real evaluations and scores the predictions
on the rest (or k-fold, pooling the out-of-fold predictions, when there are few points):
per objective the coefficient of determination R^2, Kendall's tau between predicted and real
values (what a search that ranks candidates needs), and the calibration of the spread: the
fraction of held-out values inside ``mean +- 1 std`` / ``+- 2 std`` (nominal 68.3% / 95.4%
for a Gaussian) and the mean ``|z|`` (nominal ``sqrt(2/pi) = 0.798``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from framework.surrogate import Surrogate
from surrogates._data import training_data

__all__ = ["surrogate_quality", "format_quality", "model_based_diagnostics", "prediction_scores",
           "NOMINAL_COVERAGE_1SD", "NOMINAL_COVERAGE_2SD", "NOMINAL_MEAN_ABS_Z"]

NOMINAL_COVERAGE_1SD = math.erf(1 / math.sqrt(2))  # 0.6827
NOMINAL_COVERAGE_2SD = math.erf(2 / math.sqrt(2))  # 0.9545
NOMINAL_MEAN_ABS_Z = math.sqrt(2 / math.pi)  # 0.7979


def surrogate_quality(surrogate: Surrogate | Callable[[], Surrogate], X: np.ndarray, Y: np.ndarray, *,
                      test_fraction: float = 0.25, min_test: int = 30, n_folds: int = 5, seed: int = 0,
                      objective_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Score a surrogate on held-out real evaluations.

    Args:
        surrogate: a :class:`~framework.surrogate.Surrogate` (copied, never modified) or a
            zero-argument factory returning a fresh one.
        X: ``bool[n, d]`` masks that were really evaluated.
        Y: ``float[n, m]`` their objective values; non-finite rows are dropped.
        test_fraction: share of the rows held out when there are enough of them.
        min_test: when ``test_fraction * n`` rows would be fewer than this, use k-fold instead.
        n_folds: folds for k-fold (capped at ``n``).
        seed: fixes the split.
        objective_names: names for the ``m`` objectives (default ``y0, y1, ...``).

    Returns:
        A dict with ``method`` (``"holdout"`` or ``"kfold"``), ``n_train``, ``n_test`` (rows
        scored), ``fit_seconds`` and ``predict_seconds`` (summed over folds), and
        ``objectives``: a dict name -> ``{"r2", "kendall_tau", "coverage_1sd", "coverage_2sd",
        "mean_abs_z"}`` (floats; ``kendall_tau`` is NaN when the predictions or values are
        constant, ``mean_abs_z`` is ``inf`` when a held-out value misses a zero spread).
    """
    masks, values = training_data(X, Y, min_rows=4)
    n, m = values.shape
    names = [f"y{j}" for j in range(m)] if objective_names is None else [str(s) for s in objective_names]
    if len(names) != m:
        raise ValueError(f"objective_names has {len(names)} names for {m} objectives: {names}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    if n_test >= min_test:
        method = "holdout"
        splits = [(perm[n_test:], perm[:n_test])]
    else:
        method = "kfold"
        folds = np.array_split(perm, min(n_folds, n))
        splits = [(np.concatenate(folds[:i] + folds[i + 1:]), fold) for i, fold in enumerate(folds)]

    tested, means, stds = [], [], []
    fit_seconds = predict_seconds = 0.0
    for train, test in splits:
        model = copy.deepcopy(surrogate) if isinstance(surrogate, Surrogate) else surrogate()
        t0 = time.perf_counter()
        model.fit(masks[train], values[train])
        t1 = time.perf_counter()
        mean, std = model.predict(masks[test])
        predict_seconds += time.perf_counter() - t1
        fit_seconds += t1 - t0
        tested.append(test)
        means.append(np.asarray(mean, dtype=float))
        stds.append(np.asarray(std, dtype=float))
    idx = np.concatenate(tested)
    mean, std, truth = np.concatenate(means), np.concatenate(stds), values[idx]

    objectives = {name: prediction_scores(truth[:, j], mean[:, j], std[:, j]) for j, name in enumerate(names)}
    n_train = len(splits[0][0]) if method == "holdout" else n - int(np.ceil(n / len(splits)))
    return {"method": method, "n_train": int(n_train), "n_test": int(len(idx)),
            "fit_seconds": fit_seconds, "predict_seconds": predict_seconds, "objectives": objectives}


def prediction_scores(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """R^2, Kendall tau and spread calibration of one objective's held-out predictions."""
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((y - mean) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else -math.inf)
    tau = float("nan")
    if np.ptp(y) > 0 and np.ptp(mean) > 0:
        tau = float(kendalltau(y, mean).statistic)
    err = np.abs(y - mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(err == 0, 0.0, err / std)
    return {"r2": r2, "kendall_tau": tau, "coverage_1sd": float((err <= std).mean()),
            "coverage_2sd": float((err <= 2 * std).mean()), "mean_abs_z": float(z.mean())}


def format_quality(report: dict[str, Any]) -> str:
    """A few lines for a run report: one per objective, nominal calibration values alongside."""
    scored = (f"{report['n_test']} held-out of {report['n_test'] + report['n_train']} points"
              if report["method"] == "holdout" else f"{report['n_test']} points, each held out once")
    head = (f"surrogate quality ({report['method']}, {scored}; "
            f"fit {report['fit_seconds']:.2f} s, predict {report['predict_seconds']:.3f} s)")
    lines = [head, f"  {'objective':<24} {'R^2':>7} {'tau':>6} {'in 1sd':>7} {'in 2sd':>7} {'mean|z|':>8}",
             f"  {'(nominal)':<24} {'':>7} {'':>6} {NOMINAL_COVERAGE_1SD:>7.2f} {NOMINAL_COVERAGE_2SD:>7.2f} "
             f"{NOMINAL_MEAN_ABS_Z:>8.2f}"]
    for name, s in report["objectives"].items():
        lines.append(f"  {name:<24} {s['r2']:>7.3f} {s['kendall_tau']:>6.3f} {s['coverage_1sd']:>7.2f} "
                     f"{s['coverage_2sd']:>7.2f} {s['mean_abs_z']:>8.2f}")
    return "\n".join(lines)


def model_based_diagnostics(strategy, surrogate: str, surrogate_options: dict) -> dict[str, Any]:
    """The run report's figures of a model-based strategy
    (:class:`~acquisition.composed.ModelBasedStrategy`): model rounds and seconds spent fitting,
    annealing and selecting; out-of-sample scores of every mask the surrogate picked (predicted
    before its real evaluation); and a k-fold check of a fresh ``surrogate`` on all the data."""
    from framework.registry import SURROGATES

    names = strategy.problem.objective_names
    timings = strategy.timings
    out: dict[str, Any] = {"surrogate": surrogate, "model_rounds": len(timings),
                           "seconds": {k: round(sum(t.get(k, 0.0) for t in timings), 2)
                                       for k in ("fit", "anneal", "select")}}
    mean, std, real = strategy.prediction_checks()
    if len(mean) >= 4:
        out["picked_masks_out_of_sample"] = {
            "n": len(mean),
            **{n: {k: round(v, 3) for k, v in prediction_scores(real[:, j], mean[:, j], std[:, j]).items()}
               for j, n in enumerate(names)}}
    X, Yn = strategy.data()
    if len(X) >= 10:
        rep = surrogate_quality(lambda: SURROGATES.create(surrogate, **{"seed": 0, **surrogate_options}),
                                X, Yn, objective_names=list(names), seed=0)
        out["k_fold_on_all_evaluations"] = {
            "method": rep["method"], "n": rep["n_test"],
            **{n: {k: round(v, 3) for k, v in s.items()} for n, s in rep["objectives"].items()}}
    return out
