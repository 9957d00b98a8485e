"""A tiny random causal LM for tests and examples: 2 layers x 4 heads (2 KV heads, a Llama),
with a word-level tokenizer that knows every word of the built-in bias data and of a synthetic
corpus of words ``c0..c39``.  Built from a config in a second (no download); the product never
uses it outside tests."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CORPUS_WORDS", "save_tiny_llama"]

CORPUS_WORDS = [f"c{i}" for i in range(40)]


def save_tiny_llama(out: str | Path) -> Path:
    """Write the tiny model and its tokenizer to ``out`` with ``save_pretrained``; returns ``out``."""
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
    out = Path(out)
    LlamaForCausalLM(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out
