"""The main job end to end on the embedded model, at tiny evaluation sizes: every file of a run
directory, the chosen mask verified on held-out data, and an export that reloads in plain transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest

TINY = {"n_pronoun_occupations": 6, "n_pronoun_templates": 3, "n_windows": 2, "window": 64, "stride": 32,
        "n_boot": 20}


@pytest.mark.slow
@pytest.mark.embedded
def test_main_job_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from framework.config import RunConfig
    from framework.runs import start_run

    out = tmp_path / "run"
    cfg = RunConfig(budget=12, batch_size=4, seed=0, out=str(out), max_cost=100.0,
                    problem_options=TINY,
                    strategy_options={"n_chains": 8, "n_steps": 60, "surrogate_options": {"max_iterations": 50}})
    logs: list[str] = []
    start_run(cfg, progress=False, log=logs.append)
    for name in ("run.json", "evaluations.sqlite", "result.json", "front.csv", "all.csv", "front.png", "hv.png",
                 "chosen_mask.json", "heldout.json", "report.md"):
        assert (out / name).is_file(), name
    res = json.loads((out / "result.json").read_text())
    assert res["problem"] == "masked-lm" and res["strategy"] == "surrogate-sa"
    assert res["objective_names"] == ["bias", "perplexity"]
    # the default strategy spends one unit on head sensitivities of the unpruned model, then evaluates
    assert res["n_sensitivity_calls"] == 1 and res["n_evaluations"] == 11 and res["budget_spent"] == 12
    assert len(res["hv_curve"]) == 12 and "head-sensitivity call" in (out / "report.md").read_text()
    chosen = json.loads((out / "chosen_mask.json").read_text())
    assert set(chosen["splits"]) == {"search", "validation", "heldout"}
    for split in chosen["splits"].values():
        assert split["bias"]["se"] is not None and split["bias"]["unpruned"] > 0
    report = (out / "report.md").read_text()
    assert "heldout" in report and "Chosen mask" in report
    assert chosen["verdict"]["status"] in ("repaired", "not significant", "bias increased", "no repair found")
    assert chosen["pick_split"] == "validation"

    heldout = json.loads((out / "heldout.json").read_text())
    assert len(heldout["front"]) == len(res["front"])
    if chosen["index"] is None:  # nothing beat the unpruned model: nothing exported, and the report says so
        assert "unpruned model is kept" in report
        return
    model_dir = out / "model"
    saved = json.loads((model_dir / "head_mask.json").read_text())
    assert saved["mask"] == chosen["mask"]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    o_proj = model.model.layers[0].self_attn.o_proj.weight
    grid = np.array(chosen["mask"], dtype=bool)
    for layer, row in enumerate(grid):
        w = model.model.layers[layer].self_attn.o_proj.weight.reshape(o_proj.shape[0], 9, -1)
        for head, keep in enumerate(row):
            assert bool(torch.any(w[:, head] != 0)) == bool(keep)
