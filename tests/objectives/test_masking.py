"""HeadMasker on tiny random models of every supported family, and on the embedded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, PretrainedConfig

from objectives.masked_lm.masking import SUPPORTED_FAMILIES, HeadMasker, UnsupportedModelError

VOCAB = 64  # tiny models' vocabulary (conftest.TINY_VOCAB)


def _inputs(batch: int = 3, length: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _zero_head_weights(masker: HeadMasker, layer: int, head: int) -> None:
    """Zero head ``head``'s input columns of layer ``layer``'s output projection, in place."""
    proj = masker.output_projections()[layer]
    cols = slice(head * masker.head_dim, (head + 1) * masker.head_dim)
    with torch.no_grad():
        if masker.family.conv1d:
            proj.weight[cols, :] = 0
        else:
            proj.weight[:, cols] = 0


def test_every_supported_type_has_a_tiny_model(tiny_model_types):
    assert set(SUPPORTED_FAMILIES) >= {"gpt2", "gpt_neo", "gptj", "opt", "gpt_neox", "llama", "mistral", "qwen2",
                                       "gemma"}
    assert sorted(SUPPORTED_FAMILIES) == tiny_model_types  # each adapter is exercised by the tests below


def test_head_counts_and_space(tiny_model):
    masker = HeadMasker(tiny_model)
    gqa = hasattr(tiny_model.config, "num_key_value_heads")
    assert (masker.n_layers, masker.n_heads, masker.head_dim) == (2, 4, 8)
    assert masker.n_kv_heads == (2 if gqa else 4)
    assert len(masker.output_projections()) == 2
    space = masker.head_space(max_pruned_fraction=0.5, protected={0, 5})
    assert (space.n_layers, space.n_heads, space.n_kv_heads, space.dim) == (2, 4, masker.n_kv_heads, 8)
    assert space.max_pruned_fraction == 0.5 and space.protected == frozenset({0, 5})
    masker.remove()


def test_keep_all_is_bit_identical(tiny_model):
    ids = _inputs()
    plain = _logits(tiny_model, ids)
    masker = HeadMasker(tiny_model)
    assert torch.equal(_logits(tiny_model, ids), plain)  # hooks registered, no mask
    with masker.masked(np.ones(masker.dim, dtype=bool)):
        assert torch.equal(_logits(tiny_model, ids), plain)
    with masker.masked(torch.ones(3, masker.dim, dtype=torch.bool)):  # per-row, all kept
        assert torch.equal(_logits(tiny_model, ids), plain)
    masker.remove()


def test_masked_head_equals_zeroed_projection_columns(tiny_model):
    ids = _inputs()
    masker = HeadMasker(tiny_model)
    mask = np.ones(masker.dim, dtype=bool)
    mask[[1, 4 + 3]] = False  # layer 0 head 1, layer 1 head 3
    plain = _logits(tiny_model, ids)
    with masker.masked(mask):
        hooked = _logits(tiny_model, ids)
    assert not torch.allclose(hooked, plain, atol=1e-6)  # the mask does something
    masker.remove()
    _zero_head_weights(masker, 0, 1)
    _zero_head_weights(masker, 1, 3)
    torch.testing.assert_close(_logits(tiny_model, ids), hooked, rtol=1e-5, atol=1e-5)


def test_gates_at_the_mask_give_the_masked_forward_bit_identically(tiny_model):
    ids = _inputs()
    masker = HeadMasker(tiny_model)
    mask = np.ones(masker.dim, dtype=bool)
    mask[[1, 4 + 3]] = False
    with masker.masked(mask):
        masked = _logits(tiny_model, ids)
    with masker.gated(mask, 3) as gate:  # grad mode on: the gated pass of a sensitivity call
        gated = tiny_model(input_ids=ids).logits
        gated[:, -1].sum().backward()
    assert torch.equal(gated.detach(), masked)
    assert gate.grad.shape == (3, masker.n_layers, masker.n_heads) and gate.grad.abs().sum() > 0
    with torch.no_grad(), masker.gated(np.ones(masker.dim), 3):
        assert torch.equal(tiny_model(input_ids=ids).logits, _logits(tiny_model, ids))  # g = 1: the plain model
    masker.remove()


def test_per_row_masks_equal_separate_passes(tiny_model):
    ids = _inputs(batch=3)
    masker = HeadMasker(tiny_model)
    rng = np.random.default_rng(0)
    masks = rng.random((3, masker.dim)) > 0.4
    masks[0] = True  # one row unmasked, mixed with masked rows
    with masker.masked(masks):
        batched = _logits(tiny_model, ids)
    for i in range(3):
        with masker.masked(masks[i]):
            alone = _logits(tiny_model, ids[i:i + 1])
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-5, atol=1e-5)
    masker.remove()


def test_masked_context_restores_and_remove_unhooks(tiny_model):
    ids = _inputs(batch=2)
    plain = _logits(tiny_model, ids)
    masker = HeadMasker(tiny_model)
    mask = np.ones(masker.dim, dtype=bool)
    mask[2] = False
    with pytest.raises(RuntimeError, match="boom"), masker.masked(mask):
        assert masker.mask is not None
        raise RuntimeError("boom")
    assert masker.mask is None
    assert torch.equal(_logits(tiny_model, ids), plain)
    masker.set_masks(mask)
    masker.remove()
    assert masker.mask is None
    assert torch.equal(_logits(tiny_model, ids), plain)


def test_generation_with_per_row_masks(build_tiny):
    """Per-row masks hold through generate() (KV cache keeps the batch size)."""
    model = build_tiny("llama")
    masker = HeadMasker(model)
    ids = _inputs(batch=2, length=4)
    masks = np.ones((2, masker.dim), dtype=bool)
    masks[1, :4] = False  # row 1: layer 0 switched off entirely
    kwargs = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad(), masker.masked(masks):
        both = model.generate(ids, **kwargs)
    with torch.no_grad(), masker.masked(masks[1]):
        second = model.generate(ids[1:], **kwargs)
    first = model.generate(ids[:1], **kwargs)
    assert torch.equal(both[0], first[0]) and torch.equal(both[1], second[0])
    masker.remove()


def test_mask_validation_and_batch_mismatch(build_tiny):
    model = build_tiny("gpt2")
    masker = HeadMasker(model)
    with pytest.raises(ValueError, match=r"\[8\] or \[b, 8\]"):
        masker.set_masks(np.ones(7, dtype=bool))
    with pytest.raises(ValueError, match="boolean or 0/1"):
        masker.set_masks(np.full(8, 2))
    masker.set_masks(np.array([1, 0, 1, 1, 1, 1, 1, 1]))  # 0/1 integers are fine
    assert masker.mask.dtype == np.bool_ and masker.mask.tolist() == [True, False] + [True] * 6
    masker.set_masks(np.ones((1, 8), dtype=bool))  # one row = one shared mask
    assert masker.mask.shape == (8,)
    masker.set_masks(np.ones((3, 8), dtype=bool))  # all kept, but the batch size still must match
    with pytest.raises(ValueError, match="3 per-row head masks are set but the input batch has 2 rows"):
        _logits(model, _inputs(batch=2))
    masker.remove()


def test_two_maskers_compose(build_tiny):
    model = build_tiny("llama")
    a, b = HeadMasker(model), HeadMasker(model)
    ma = np.ones(8, dtype=bool)
    ma[0] = False
    mb = np.ones(8, dtype=bool)
    mb[5] = False
    ids = _inputs()
    with a.masked(ma), b.masked(mb):
        both = _logits(model, ids)
    with a.masked(ma & mb):
        together = _logits(model, ids)
    assert torch.equal(both, together)
    a.remove()
    b.remove()


def test_bf16_model_masks_in_its_dtype(build_tiny):
    model = build_tiny("qwen2").to(torch.bfloat16)
    masker = HeadMasker(model)
    mask = np.ones(8, dtype=bool)
    mask[3] = False
    ids = _inputs()
    with masker.masked(mask):
        hooked = _logits(model, ids)
    assert hooked.dtype == torch.bfloat16
    masker.remove()
    _zero_head_weights(masker, 0, 3)
    torch.testing.assert_close(_logits(model, ids), hooked, rtol=2e-2, atol=2e-2)


def test_unsupported_bert_names_its_type():
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32,
                                      intermediate_size=64, vocab_size=VOCAB))
    with pytest.raises(UnsupportedModelError, match=r"BertForMaskedLM \(config.model_type='bert'\).*llama"):
        HeadMasker(bert)


class _MadeUpConfig(PretrainedConfig):
    model_type = "made-up-lm"


class _MadeUpModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _MadeUpConfig()
        self.layers = nn.ModuleList([nn.Linear(4, 4)])


def test_unsupported_made_up_model_and_wrong_layout():
    with pytest.raises(UnsupportedModelError, match="_MadeUpModel.*made-up-lm.*gpt2"):
        HeadMasker(_MadeUpModel())
    with pytest.raises(ValueError):  # UnsupportedModelError is a ValueError
        HeadMasker(nn.Linear(2, 2))
    # A model claiming a supported type without its module layout.
    fake = _MadeUpModel()
    fake.config.model_type = "llama"
    with pytest.raises(UnsupportedModelError, match="module layout of family 'llama'"):
        HeadMasker(fake)


@pytest.mark.embedded
def test_embedded_model_masking(embedded_model):
    model, tokenizer = embedded_model
    masker = HeadMasker(model)
    try:
        assert (masker.n_layers, masker.n_heads, masker.n_kv_heads, masker.head_dim) == (30, 9, 3, 64)
        ids = tokenizer(["The nurse said that", "My grandfather was a"], return_tensors="pt",
                        padding=True).input_ids
        plain = _logits(model, ids)
        with masker.masked(np.ones(masker.dim, dtype=bool)):
            assert torch.equal(_logits(model, ids), plain)
        mask = np.ones(masker.dim, dtype=bool)
        mask[[0, 9 * 14 + 4, 9 * 29 + 8]] = False
        with masker.masked(mask):
            masked = _logits(model, ids)
        assert (masked - plain).abs().max() > 1e-3
        with masker.masked(np.stack([mask, np.ones(masker.dim, dtype=bool)])):
            rows = _logits(model, ids)
        torch.testing.assert_close(rows[0], masked[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(rows[1], plain[1], rtol=1e-4, atol=1e-4)
    finally:
        masker.remove()
    assert torch.equal(_logits(model, ids), plain)

