"""The replay problem answers from a recording with ridge regression plus boosted trees on its
residuals (checked on a generated recording with a known structure; the real one is made by
objectives/replay_record.py)."""

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


def test_replay_never_answers_beyond_the_recorded_values(tmp_path):
    """Pruning every head whose recorded effect lowered the bias sums their effects far beyond
    the recorded range unless predictions are clipped to it (per split and objective)."""
    path = tmp_path / "rec.npz"
    masks, search, heldout = _recording(path)
    free = ReplayProblem(recording=str(path), max_pruned_fraction=1.0, clip_to_recorded=False)
    clipped = ReplayProblem(recording=str(path), max_pruned_fraction=1.0)
    assert free.fingerprint() != clipped.fingerprint()   # a store never mixes their answers
    # the heads whose knock-out lowers the recorded bias the most, all pruned at once
    effect = np.array([search[~masks[:, h], 0].mean() - search[masks[:, h], 0].mean() for h in range(24)])
    extreme = np.ones((1, 24), dtype=bool)
    extreme[0, effect < 0] = False
    for split, Y in (("search", search), ("heldout", heldout)):
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        assert np.allclose(clipped.recorded_range(split)[0], lo) and np.allclose(clipped.recorded_range(split)[1], hi)
        assert free.evaluate(extreme, split)[0, 0] < lo[0]          # extrapolated below every real value
        y = clipped.evaluate(np.vstack([extreme, masks[:50]]), split)
        assert np.all(y >= lo - 1e-12) and np.all(y <= hi + 1e-12)
        assert y[0, 0] == lo[0]
        # inside the range the answers are the regressor's, unchanged
        inside = np.all((free.evaluate(masks[:50], split) > lo) & (free.evaluate(masks[:50], split) < hi), axis=1)
        assert inside.sum() > 25 and np.array_equal(y[1:][inside], free.evaluate(masks[:50], split)[inside])


def test_replay_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="replay_record"):
        ReplayProblem(recording=str(tmp_path / "none.npz"))


def test_shipped_recording_is_real_and_registered():
    """The recording in the repository: 647 distinct masks of the embedded model of four kinds,
    measured with the default metrics at their default sizes on the search and held-out splits,
    with how it was made; `replay` is a registered problem whose regressor predicts bias and
    perplexity of unseen masks, where strategies search too."""
    from inspect import signature

    from framework.problem import HELDOUT, SEARCH
    from framework.registry import PROBLEMS
    from objectives.masked_lm.problem import MaskedLMProblem
    from objectives.replay import DEFAULT_RECORDING

    assert DEFAULT_RECORDING.stat().st_size < 2_000_000  # small enough for the repository
    rec = load_recording()
    masks, meta = rec["masks"], rec["meta"]
    assert masks.shape[1] == 270 and len(masks) >= 600 and len(np.unique(masks, axis=0)) == len(masks)
    assert np.isfinite(rec["search"]).all() and np.isfinite(rec["heldout"]).all()
    assert meta["made_with"].startswith("python -m objectives.replay_record") and meta["problem"]["model"]
    # the default bias objective, at the default sizes (no --set cut them)
    assert meta["problem_options"] == {} and meta["problem"]["bias_metric"] == (
        signature(MaskedLMProblem).parameters["bias_metric"].default)
    counts = meta["n_per_kind"]
    assert counts == {k: int((rec["kinds"] == i).sum()) for i, k in enumerate(meta["kinds"])}
    assert counts["knockout"] == 270 and counts["random"] >= 200 and counts["neighbour"] > 0 and counts["proposed"] > 0
    p = PROBLEMS.create("replay")
    assert p.splits == (SEARCH, HELDOUT) and p.space.dim == 270
    assert np.array_equal(p.evaluate(p.space.keep_all())[0], rec["baseline"][0])
    acc = p.accuracy
    assert set(acc) == {f"{s}/{o}" for s in (SEARCH, HELDOUT) for o in p.objective_names}
    assert all(np.isfinite(v["r2"]) and v["n"] == len(masks) for v in acc.values())   # out of fold: every record
    # unseen masks are predicted: pooled, and on the masks strategies proposed (boosted trees alone
    # failed here: bias R^2 below 0)
    for key in acc:
        assert acc[key]["r2"] > 0.6 and acc[key]["spearman"] > 0.6, (key, acc[key])
        assert p.accuracy_by_region[key]["masks proposed by strategies"]["spearman"] > 0.6
    regions = p.accuracy_by_region["search/bias"]
    assert regions["single-head knock-outs"]["n"] == 270 and sum(k.startswith("random masks, ") for k in regions) >= 3


def test_recorder_tags_kinds_and_resumes_from_its_log_without_paying(tiny_dir, corpus_file, tmp_path, monkeypatch):
    """The recorder on a tiny model: knock-outs, random masks, neighbours and proposed masks tagged
    by kind; a second run with the same log pays nothing and writes the same arrays; a replay fitted
    on it reports accuracy per kind."""
    from objectives.replay_record import KINDS, main

    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))
    proposed = tmp_path / "proposed.json"
    proposed.write_text(json.dumps([[0, 5], [1, 2, 3], [0, 5], []]))    # a repeat and the unpruned mask: dropped
    args = ["--set", f"model={tiny_dir}", "--set", f"corpus={corpus_file}", "--set", "window=32", "--set", "stride=16",
            "--set", "n_windows=3", "--set", "bias_metric=likelihood", "--set", "n_templates=2", "--set", "n_boot=20",
            "--set", "max_pruned_fraction=0.5", "--n-random", "6", "--n-neighbours", "3", "--max-pruned", "3",
            "--log", str(tmp_path / "log.jsonl"), "--proposed", str(proposed)]
    assert main(["--out", str(tmp_path / "a.npz"), *args]) == 0
    a = load_recording(tmp_path / "a.npz")
    kinds = np.load(tmp_path / "a.npz")["kinds"]
    n = {k: int((kinds == i).sum()) for i, k in enumerate(KINDS)}
    assert n["knockout"] == 8 and n["neighbour"] == 3 + (6 - n["random"]) and n["proposed"] == 2
    assert len({m.tobytes() for m in a["masks"]}) == len(a["masks"]) and np.isfinite(a["search"]).all()
    assert a["meta"]["paid_this_session"] == 2 * len(a["masks"])
    assert main(["--out", str(tmp_path / "b.npz"), *args]) == 0
    b = load_recording(tmp_path / "b.npz")
    assert b["meta"]["paid_this_session"] == 0
    for key in ("masks", "search", "heldout", "baseline"):
        assert np.array_equal(a[key], b[key])
    acc = ReplayProblem(recording=str(tmp_path / "a.npz"), max_pruned_fraction=0.5, accuracy_folds=2).accuracy_by_region
    assert set(acc) <= {f"{s}/{o}" for s in ("search", "heldout") for o in ("bias", "perplexity")}
