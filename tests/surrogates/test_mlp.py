"""MLPEnsemble specifics: early stopping, spread calibration, options."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.mlp import MLPEnsemble


def data(n: int, d: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) < 0.7
    w = np.random.default_rng(99).normal(size=(d, 2))
    pruned = (~X).astype(float)
    return X, pruned @ w + 0.3 * rng.normal(size=(n, 2))


def test_early_stopping_ends_before_max_epochs_and_members_disagree():
    X, Y = data(150)
    model = MLPEnsemble(max_epochs=1000, patience=10, seed=0).fit(X, Y)
    assert model.epochs_run < 1000
    _, std = model.predict(data(20, seed=5)[0])
    assert (std > 0).all()


def test_spread_calibration_widens_an_over_confident_ensemble():
    X, Y = data(200)
    X_test, Y_test = data(200, seed=7)
    raw = MLPEnsemble(calibrate_std=False, seed=0).fit(X, Y)
    calibrated = MLPEnsemble(calibrate_std=True, seed=0).fit(X, Y)
    raw_mean, raw_std = raw.predict(X_test)
    mean, std = calibrated.predict(X_test)
    np.testing.assert_array_equal(mean, raw_mean)  # calibration rescales the spread only
    ratio = std / raw_std
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # one factor per objective
    inside_raw = (np.abs(Y_test - raw_mean) <= 2 * raw_std).mean()
    inside = (np.abs(Y_test - mean) <= 2 * std).mean()
    assert inside > inside_raw
    assert inside > 0.75


def test_encodings_and_a_linear_skip_fit_and_predict():
    X, Y = data(80)
    for options in ({"encoding": "keep"}, {"linear_skip": True}, {"hidden": (32,), "activation": "relu"}):
        mean, std = MLPEnsemble(**options, max_epochs=50).fit(X, Y).predict(X[:4])
        assert mean.shape == std.shape == (4, 2) and np.isfinite(mean).all()


def test_tiny_data_trains_without_a_validation_split():
    X, Y = data(6)
    model = MLPEnsemble(max_epochs=30, seed=0).fit(X, Y)
    assert model.epochs_run == 30
    assert model.predict(X)[0].shape == (6, 2)


def test_options_are_validated():
    with pytest.raises(ValueError, match="n_members"):
        MLPEnsemble(n_members=1)
    with pytest.raises(ValueError, match="activation"):
        MLPEnsemble(activation="gelu")
    with pytest.raises(ValueError, match="encoding"):
        MLPEnsemble(encoding="signed")
    with pytest.raises(ValueError, match="validation_fraction"):
        MLPEnsemble(validation_fraction=0.7)
    with pytest.raises(ValueError, match="hidden"):
        MLPEnsemble(hidden=())
