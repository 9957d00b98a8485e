"""surrogate_quality: held-out R^2, Kendall tau and spread calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.surrogate import Surrogate
from surrogates.mlp import MLPEnsemble
from surrogates.quality import (
    NOMINAL_COVERAGE_1SD,
    NOMINAL_COVERAGE_2SD,
    NOMINAL_MEAN_ABS_Z,
    format_quality,
    surrogate_quality,
)

D = 30
WEIGHTS = np.random.default_rng(0).normal(size=(D, 2))
NOISE = np.array([0.5, 2.0])


def true_values(X: np.ndarray) -> np.ndarray:
    return (~X).astype(float) @ WEIGHTS


def noisy_data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Masks and additive objectives plus Gaussian noise of known standard deviation ``NOISE``."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, D)) < 0.7
    return X, true_values(X) + rng.normal(size=(n, 2)) * NOISE


class KnownFunction(Surrogate):
    """Predicts the noise-free truth with a spread of ``std_factor`` times the true noise."""

    def __init__(self, *, std_factor: float = 1.0, seed: int = 0) -> None:
        self.std_factor = std_factor
        self.fitted_rows = 0

    def fit(self, X, Y):
        self.fitted_rows = len(X)
        return self

    def predict(self, X):
        return true_values(np.asarray(X)), np.tile(NOISE * self.std_factor, (len(X), 1))


class TrainingMean(Surrogate):
    """Predicts the training mean everywhere, with the training standard deviation as spread."""

    def __init__(self, *, seed: int = 0) -> None:
        pass

    def fit(self, X, Y):
        self.mean, self.std = Y.mean(axis=0), Y.std(axis=0)
        return self

    def predict(self, X):
        return np.tile(self.mean, (len(X), 1)), np.tile(self.std, (len(X), 1))


def test_a_calibrated_model_scores_the_nominal_values():
    X, Y = noisy_data(4000)
    report = surrogate_quality(KnownFunction, X, Y, objective_names=["bias", "ppl"])
    assert report["method"] == "holdout" and report["n_test"] == 1000 and report["n_train"] == 3000
    assert set(report["objectives"]) == {"bias", "ppl"}
    for scores in report["objectives"].values():
        # 1000 held-out points: binomial standard error of a coverage is about 0.015
        assert scores["coverage_1sd"] == pytest.approx(NOMINAL_COVERAGE_1SD, abs=0.05)
        assert scores["coverage_2sd"] == pytest.approx(NOMINAL_COVERAGE_2SD, abs=0.03)
        assert scores["mean_abs_z"] == pytest.approx(NOMINAL_MEAN_ABS_Z, abs=0.05)
        assert 0.5 < scores["kendall_tau"] < 1
    # the noise is a small share of the variance of y0 and a large one of y1
    assert report["objectives"]["bias"]["r2"] > report["objectives"]["ppl"]["r2"] > 0


def test_an_over_confident_spread_shows_in_the_calibration():
    X, Y = noisy_data(2000)
    calibrated = surrogate_quality(KnownFunction(std_factor=1.0), X, Y)["objectives"]["y1"]
    over_confident = surrogate_quality(KnownFunction(std_factor=0.25), X, Y)["objectives"]["y1"]
    assert over_confident["coverage_1sd"] < 0.35 < calibrated["coverage_1sd"]
    assert over_confident["mean_abs_z"] == pytest.approx(4 * calibrated["mean_abs_z"], rel=1e-9)
    assert over_confident["r2"] == calibrated["r2"]


def test_exact_predictions_score_one_and_a_constant_scores_no_better_than_zero():
    X, _ = noisy_data(400)
    Y = true_values(X)
    exact = surrogate_quality(KnownFunction, X, Y)["objectives"]
    for scores in exact.values():
        assert scores["r2"] == pytest.approx(1.0) and scores["kendall_tau"] == pytest.approx(1.0)
        assert scores["mean_abs_z"] == 0.0 and scores["coverage_1sd"] == 1.0
    constant = surrogate_quality(TrainingMean, X, Y)["objectives"]
    for scores in constant.values():
        assert scores["r2"] <= 0.0
        assert math.isnan(scores["kendall_tau"])  # constant predictions have no ranking


def test_few_points_use_k_fold_and_score_every_point_once():
    X, Y = noisy_data(40)
    report = surrogate_quality(KnownFunction, X, Y, n_folds=4)
    assert report["method"] == "kfold"
    assert report["n_test"] == 40 and report["n_train"] == 30
    assert report["fit_seconds"] >= 0 and report["predict_seconds"] >= 0


def test_non_finite_rows_are_dropped_and_an_instance_is_not_modified():
    X, Y = noisy_data(200)
    Y[:10, 0] = np.nan
    model = KnownFunction()
    report = surrogate_quality(model, X, Y)
    assert report["n_train"] + report["n_test"] == 190
    assert model.fitted_rows == 0  # a copy was fitted, not the caller's instance


def test_bad_arguments_are_named():
    X, Y = noisy_data(100)
    with pytest.raises(ValueError, match="objective_names has 1 names for 2 objectives"):
        surrogate_quality(KnownFunction, X, Y, objective_names=["only"])
    with pytest.raises(ValueError, match="test_fraction"):
        surrogate_quality(KnownFunction, X, Y, test_fraction=1.0)
    with pytest.raises(ValueError, match="n_folds"):
        surrogate_quality(KnownFunction, X, Y, n_folds=1)
    with pytest.raises(ValueError, match="at least 4 rows"):
        surrogate_quality(KnownFunction, X[:3], Y[:3])


def test_mlp_on_held_out_evaluations_and_the_report_text():
    X, Y = noisy_data(240)
    report = surrogate_quality(MLPEnsemble(seed=0), X, Y, test_fraction=0.25, objective_names=["bias", "ppl"])
    assert report["method"] == "holdout" and report["n_test"] == 60
    assert report["objectives"]["bias"]["r2"] > 0.6
    # the spread is recalibrated on out-of-split errors: neither useless nor wildly over-confident
    assert 0.4 < report["objectives"]["bias"]["coverage_2sd"] <= 1.0
    text = format_quality(report)
    assert "bias" in text and "ppl" in text and "holdout" in text and f"{NOMINAL_COVERAGE_2SD:.2f}" in text
