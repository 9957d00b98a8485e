"""The problem contract (:class:`framework.testing.ProblemContractSuite`), checked against every
registered problem with cheap settings: small synthetic instances, a tiny FASP score file, the
shipped replay recording, and ``masked-lm`` on a tiny random Llama saved to disk (no download).

A problem registered without an entry in ``problem_options_for`` runs with its defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from framework.registry import PROBLEMS
from framework.testing import ProblemContractSuite
from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama


def _fasp_scores(path: Path) -> Path:
    """A ``head_contributions.json`` with seeded scores for one model of a known layout (6 x 8 heads)."""
    rng = np.random.default_rng(0)
    d = 6 * 8
    scores = {"cont_to_gender_and_sex_bias": (1.0 + rng.normal(0, 0.05, d)).tolist(),
              "cont_to_ppl": (30.0 * np.exp(np.abs(rng.normal(0, 0.02, d)))).tolist()}
    path.write_text(json.dumps({"EleutherAI/pythia-70m": scores}))
    return path


def _tiny_llama(out: Path) -> Path:
    return save_tiny_llama(out)


class TestProblemContract(ProblemContractSuite):
    problem_names = PROBLEMS.names()
    # settings that need no files; the noisy sensitivities are on for some problems, off for others,
    # so that both sides of the sensitivity contract are checked
    problem_options = {
        "rho-mnk": {"n_bits": 12, "k": 1, "seed": 0, "max_pruned_fraction": 0.5, "protected": [1],
                    "sensitivity_noise": 0.5},
        "knapsack": {"n_items": 12, "seed": 0, "max_pruned_fraction": 0.5},
        "replay": {"sensitivity_noise": [0.5, 1.0]},
    }
    changed_options = {"rho-mnk": {"k": 2}}

    def problem_options_for(self, name: str, workdir: Path) -> dict[str, Any]:
        if name == "fasp-heads":
            return {"path": str(_fasp_scores(workdir / "head_contributions.json")), "model": "EleutherAI/pythia-70m",
                    "max_pruned_fraction": 0.25, "sensitivity_noise": 0.5}
        if name == "masked-lm":
            model = workdir / "tiny-llama"
            if not model.is_dir():
                _tiny_llama(model)
            corpus = workdir / "corpus.txt"
            rng = np.random.default_rng(0)
            corpus.write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
            return {"model": str(model), "corpus": str(corpus), "device": "cpu", "dtype": "float32",
                    "bias_metric": "pronoun", "n_pronoun_occupations": 4, "n_pronoun_templates": 2,
                    "window": 32, "stride": 16, "n_windows": 3, "n_boot": 50, "batch_size": 16,
                    "max_pruned_fraction": 0.5}
        return super().problem_options_for(name, workdir)

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _private_cache(cls, tmp_path_factory):
        """masked-lm stores the unpruned model's measurements under ``$HEADREPAIR_CACHE``: keep them here."""
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HEADREPAIR_CACHE", str(tmp_path_factory.mktemp("cache")))
            yield


def test_every_built_in_problem_is_checked():
    assert {"rho-mnk", "knapsack", "fasp-heads", "masked-lm", "replay"} <= set(PROBLEMS.names()), PROBLEMS.broken()
