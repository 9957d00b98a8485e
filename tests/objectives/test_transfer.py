"""``headrepair transfer``: the mask set, the correlation of changes between splits, resuming, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from framework.cli import main
from framework.space import HeadSpace
from objectives.masked_lm.transfer import run_transfer, transfer_masks


def test_mask_set_is_seeded_distinct_and_inside_the_ratio():
    space = HeadSpace(n_layers=10, n_heads=10, max_pruned_fraction=0.2)
    masks, kinds = transfer_masks(space, 30, seed=3, max_ratio=0.05)
    assert masks.dtype == bool and masks.shape == (30, 100)
    assert kinds.count("knockout") == 10 and kinds.count("random") == 20
    pruned = (~masks).sum(1)
    assert (pruned[:10] == 1).all() and (pruned[10:] >= 2).all() and (pruned[10:] <= 5).all()
    assert len({m.tobytes() for m in masks}) == 30
    again, _ = transfer_masks(space, 30, seed=3, max_ratio=0.05)
    assert np.array_equal(masks, again)
    assert not np.array_equal(masks, transfer_masks(space, 30, seed=4, max_ratio=0.05)[0])
    with pytest.raises(ValueError, match="at least 3"):
        transfer_masks(space, 2)


def test_transfer_correlates_relative_changes_and_resumes_without_measuring_again(make, tmp_path):
    problem = make(bias_metric="pronoun", n_pronoun_occupations=4, n_pronoun_templates=2)
    masks, kinds = transfer_masks(problem.space, 6, seed=0, max_ratio=0.5)
    cache = tmp_path / "t.cache.jsonl"
    summary = run_transfer(problem, masks, kinds, ["pronoun", "perplexity"], ("search", "heldout"), cache,
                           log=lambda _: None)
    assert summary["n_masks"] == 6 and set(summary["metrics"]) == {"pronoun", "perplexity"}
    pron = summary["metrics"]["pronoun"]
    assert set(pron["variants"]) == {"pronoun/occupation", "pronoun/abs", "pronoun/spread", "pronoun/stereotype"}
    # the objective's relative changes are the problem's own, and the Spearman is theirs
    values, infos = problem.evaluate_with_info(masks, "heldout")
    np.testing.assert_allclose(pron["objective"]["rel"]["heldout"], [i["bias_rel"] for i in infos], rtol=1e-9)
    rel = pron["objective"]["rel"]
    assert pron["objective"]["spearman"] == pytest.approx(spearmanr(rel["search"], rel["heldout"])[0])
    spread = pron["variants"]["pronoun/spread"]["rel"]
    np.testing.assert_allclose(spread["heldout"], rel["heldout"], rtol=1e-9)  # spread is the default aggregate
    assert pron["median_rel_se"]["heldout"] > 0 and pron["seconds_per_evaluation"]["search"] > 0
    assert len(cache.read_text().splitlines()) == 7 * 2 * 2  # keep-all + 6 masks, 2 splits, 2 metrics

    calls = []
    handle = problem.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = run_transfer(problem, masks, kinds, ["pronoun", "perplexity"], ("search", "heldout"), cache,
                             log=lambda _: None)
    finally:
        handle.remove()
    assert calls == [] and again["metrics"]["pronoun"]["objective"] == pron["objective"]


def test_transfer_command_writes_json_and_plot(tiny_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "transfer" / "t.json"
    sets = ["--set", f"corpus={corpus_file}", "--set", "window=32", "--set", "stride=16", "--set", "n_windows=2",
            "--set", "n_pronoun_occupations=3", "--set", "n_pronoun_templates=2", "--set", "max_pruned_fraction=0.5"]
    rc = main(["transfer", "--model", str(tiny_dir), "--metrics", "pronoun,perplexity", "--masks", "4",
               "--max-ratio", "0.4", "--out", str(out), *sets])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_masks"] == 4 and data["settings"]["bias_metric"] == "pronoun"
    assert out.with_suffix(".png").stat().st_size > 1000
