"""The problem contract (:class:`framework.testing.ProblemContractSuite`), checked against every
registered problem with cheap settings: small synthetic instances, a tiny FASP score file, the
shipped replay recording, and ``masked-lm`` on a tiny random Llama saved to disk (no download).

A problem registered without an entry in ``problem_options_for`` runs with its defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from framework.registry import PROBLEMS
from framework.testing import ProblemContractSuite

CORPUS_WORDS = [f"c{i}" for i in range(40)]


def _fasp_scores(path: Path) -> Path:
    """A ``head_contributions.json`` with seeded scores for one model of a known layout (6 x 8 heads)."""
    rng = np.random.default_rng(0)
    d = 6 * 8
    scores = {"cont_to_gender_and_sex_bias": (1.0 + rng.normal(0, 0.05, d)).tolist(),
              "cont_to_ppl": (30.0 * np.exp(np.abs(rng.normal(0, 0.02, d)))).tolist()}
    path.write_text(json.dumps({"EleutherAI/pythia-70m": scores}))
    return path


def _tiny_llama(out: Path) -> Path:
    """A tiny random Llama (2 layers x 4 heads, 2 KV heads) and a word-level tokenizer that knows every
    word of the built-in bias data and of the test corpus (as ``tests/objectives/conftest.py`` builds it)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from objectives.masked_lm.data import builtin_gender_set
    from objectives.masked_lm.pairs import builtin_swap_pairs
    from objectives.masked_lm.pronouns import OCCUPATIONS, PRONOUN_FORMS, TEMPLATES

    data = builtin_gender_set()
    text = " ".join([*data.templates, *data.generation_templates, *CORPUS_WORDS,
                     *(d.text for d in data.axis_descriptors("gender_and_sex")),
                     *(w for n in data.nouns for w in (n.singular, n.plural)),
                     *(t.text for t in TEMPLATES), *(o.word for o in OCCUPATIONS), "a an",
                     *(w for pair in PRONOUN_FORMS.values() for side in pair for w in side),
                     *(t for p in builtin_swap_pairs() for t in (p.a, p.b))])
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text)) | {"A", "An", "a", "an"})
    words += sorted({w.capitalize() for w in words} - set(words))
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         hidden_size=32, intermediate_size=64, max_position_embeddings=128, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


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
