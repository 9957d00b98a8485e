"""The CPU-runnable parts of the GPU check (benchmarks/gpu_check.sh): the throughput module it
calls, on a tiny model and a cut workload, and the script's own preamble without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.throughput import PROPOSALS, late_pair_mask, load_proposals, main, neighbours, proposal_savings

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_module_on_cpu_measures_every_case(tmp_path):
    report = main(["--device", "cpu", "--models", "tiny", "--n-masks", "3", "--per-pass", "1,2", "--repeats", "1",
                   "--scale", "0.1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert saved["models"]["tiny"]["layers"] == 4 and saved == json.loads(json.dumps(report))
    cases = saved["models"]["tiny"]["cases"]
    assert {(c["masks"], c["per_pass_setting"], c["prefix_reuse"]) for c in cases} == {
        (m, k, r) for m in ("random", "neighbours") for k in (1, 2) for r in (False, True)}
    for c in cases:
        assert c["masks_per_s"] > 0 and c["n_masks"] == 3
        assert c["masks_per_pass"] == [c["per_pass_setting"]]
        if not c["prefix_reuse"]:
            assert c["layers_run"] == c["layers_full"] == 2 * 3 * 4  # 2 passes (contexts, windows) x 3 masks x 4
    # neighbours of a mask pruning two late heads share the early layers: reuse skips some
    reused = [c for c in cases if c["masks"] == "neighbours" and c["prefix_reuse"]]
    assert all(c["layers_run"] < c["layers_full"] for c in reused)


def test_recorded_proposals_and_their_saving():
    batches = load_proposals(PROPOSALS)
    assert [len(b) for b in batches][:4] == [10, 10, 10, 10] and sum(len(b) for b in batches) == 49
    assert all(b.dtype == np.bool_ and b.shape[1] == 270 for b in batches)
    s = proposal_savings(batches, 30)
    assert 0 < s["within_batch_only"] <= s["with_unpruned_prefix"] < 1
    late = late_pair_mask(30, 9)
    assert sorted(np.flatnonzero(~late).tolist()) == [23 * 9 + 5, 26 * 9 + 2]  # the main job's repair
    assert proposal_savings([neighbours(late, 10, seed=0)], 30)["within_batch_only"] > 0.2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the script's answer on a machine without CUDA")
def test_gpu_check_script_without_cuda_says_so(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_INSTALL": "0", "HEADREPAIR_CACHE": str(tmp_path / "c")}
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    figures = (tmp_path / "out" / "figures.txt").read_text()
    assert "available False" in figures and "no CUDA device: nothing to check" in figures
    assert "missing python packages: none" in figures  # everything the product needs is importable here
