"""The replay problem answers from a recording with a boosted-tree regressor (checked on a
generated recording with a known structure; the real one is made by objectives/replay_record.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from objectives.replay import ReplayProblem, load_recording


def _recording(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    L, H, d = 4, 6, 24
    masks = np.ones((n, d), dtype=bool)
    for i in range(n):
        masks[i, rng.choice(d, size=int(rng.integers(1, 6)), replace=False)] = False
    w_b, w_p = rng.normal(0, 0.05, d), np.abs(rng.normal(0, 0.1, d))
    pruned = (~masks).astype(float)
    search = np.stack([0.5 + pruned @ w_b, 20 * np.exp(pruned @ w_p)], axis=1)
    heldout = np.stack([0.6 + pruned @ (0.5 * w_b), 25 * np.exp(pruned @ w_p)], axis=1)
    meta = {"n_layers": L, "n_heads": H, "n_kv_heads": 2, "objective_names": ["bias", "perplexity"], "sha256": "x"}
    np.savez_compressed(path, masks_packed=np.packbits(masks, axis=1), search=search, heldout=heldout,
                        baseline=np.array([[0.5, 20.0], [0.6, 25.0]]), meta=np.array(json.dumps(meta)))
    return masks, search, heldout


def test_replay_fits_recording_and_reports_accuracy(tmp_path):
    path = tmp_path / "rec.npz"
    masks, search, heldout = _recording(path)
    rec = load_recording(path)
    assert np.array_equal(rec["masks"], masks)
    p = ReplayProblem(recording=str(path), max_pruned_fraction=0.5)
    assert p.space.dim == 24 and p.splits == ("search", "heldout")
    acc = p.accuracy
    assert acc["search/perplexity"]["r2"] > 0.6 and acc["search/bias"]["spearman"] > 0.6
    y = p.evaluate(masks[:50])
    assert y.shape == (50, 2) and np.corrcoef(y[:, 1], search[:50, 1])[0, 1] > 0.8
    assert np.allclose(p.evaluate(p.space.keep_all())[0], [0.5, 20.0])
    assert np.allclose(p.evaluate(p.space.keep_all(), "heldout")[0], [0.6, 25.0])
    assert np.array_equal(p.evaluate(masks[:5]), p.evaluate(masks[:5]))  # deterministic
    assert np.allclose(p.ref_point, [0.55, 25.0]) and np.allclose(p.bounds, [[0.0, 20.0], [0.55, 25.0]])


def test_replay_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="replay_record"):
        ReplayProblem(recording=str(tmp_path / "none.npz"))


def test_shipped_recording_is_real_and_registered():
    """The recording in the repository: >= 1,000 distinct masks of the embedded model measured on
    the search and held-out splits, with how it was made; `replay` is a registered problem."""
    from framework.problem import HELDOUT, SEARCH
    from framework.registry import PROBLEMS
    from objectives.replay import DEFAULT_RECORDING

    assert DEFAULT_RECORDING.stat().st_size < 2_000_000  # small enough for the repository
    rec = load_recording()
    masks, meta = rec["masks"], rec["meta"]
    assert masks.shape[1] == 270 and len(masks) >= 1000 and len(np.unique(masks, axis=0)) == len(masks)
    assert np.isfinite(rec["search"]).all() and np.isfinite(rec["heldout"]).all()
    # the shipped recording was made when the script was benchmarks/record_replay.py
    made_with = ("python -m objectives.replay_record", "python -m benchmarks.record_replay")
    assert meta["made_with"].startswith(made_with) and meta["problem"]["model"]
    assert {"n_templates", "n_windows", "window", "stride"} <= set(meta["problem"])
    # knock-outs, random masks and neighbours, as documented
    assert meta["n_knockouts"] == 270 and meta["n_random"] + meta["n_neighbours"] == len(masks) - 270
    p = PROBLEMS.create("replay")
    assert p.splits == (SEARCH, HELDOUT) and p.space.dim == 270
    assert np.array_equal(p.evaluate(p.space.keep_all())[0], rec["baseline"][0])
    acc = p.accuracy
    assert set(acc) == {f"{s}/{o}" for s in (SEARCH, HELDOUT) for o in p.objective_names}
    # perplexity is predictable from the mask; held-out accuracy is measured, whatever it is
    assert acc["search/perplexity"]["spearman"] > 0.7 and acc["heldout/perplexity"]["spearman"] > 0.7
    assert all(np.isfinite(v["r2"]) and v["n_test"] > 100 for v in acc.values())
