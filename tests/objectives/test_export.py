"""Exporting pruned models and reading mask files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from objectives.masked_lm.export import HEAD_MASK_FILE, export_pruned, read_mask_file
from objectives.masked_lm.masking import HeadMasker

VOCAB = 64


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_export_reloads_with_plain_transformers(tiny_model, tiny_tokenizer, tmp_path):
    masker = HeadMasker(tiny_model)
    ids = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = np.ones(masker.dim, dtype=bool)
    mask[[0, 2, 7]] = False
    before = _state_copy(tiny_model)
    with masker.masked(mask):
        hooked = _logits(tiny_model, ids)
    masker.set_masks(np.ones((2, masker.dim), dtype=bool))  # a live mask survives the export
    out = export_pruned(tiny_model, tiny_tokenizer, masker, mask, tmp_path / "pruned", metadata={"seed": 3})

    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # live model unchanged
    assert masker.mask.shape == (2, masker.dim)
    masker.remove()

    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(_logits(reloaded, ids), hooked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(tiny_model, ids), hooked, atol=1e-6)

    record = json.loads((out / HEAD_MASK_FILE).read_text())
    assert record == {"layers": 2, "heads": 4, "mask": [[0, 1, 0, 1], [1, 1, 1, 0]], "n_pruned": 3, "seed": 3}
    assert read_mask_file(out / HEAD_MASK_FILE, 2, 4).tolist() == mask.tolist()
    # (AutoTokenizer would pick the family's own tokenizer class for this made-up vocabulary.)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out)
    assert tokenizer("w5 w6").input_ids == tiny_tokenizer("w5 w6").input_ids


def test_export_accepts_grid_and_keep_all(build_tiny, tmp_path):
    model = build_tiny("llama")
    masker = HeadMasker(model)
    grid = np.ones((2, 4), dtype=bool)
    out = export_pruned(model, None, masker, grid, tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.arange(3, 10)[None]
    assert torch.equal(_logits(reloaded, ids), _logits(model, ids))
    assert json.loads((out / HEAD_MASK_FILE).read_text())["n_pruned"] == 0


def test_export_rejects_bad_mask_and_metadata(build_tiny, tmp_path):
    model = build_tiny("gpt2")
    masker = HeadMasker(model)
    with pytest.raises(ValueError, match=r"\[8\] or \[2, 4\]"):
        export_pruned(model, None, masker, np.ones(9, dtype=bool), tmp_path)
    with pytest.raises(ValueError, match=r"\[8\] or \[2, 4\]"):
        export_pruned(model, None, masker, np.ones((2, 8), dtype=bool), tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        export_pruned(model, None, masker, np.ones(8, dtype=bool), tmp_path, metadata={"mask": 1})
    assert not any(tmp_path.iterdir())  # nothing written on error


def _write(tmp_path, content, name="mask.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_read_mask_file_formats(tmp_path):
    flat = [1, 0, 1, 1, 0, 1]
    want = np.array(flat, dtype=bool)
    for content in (flat, [[1, 0, 1], [1, 0, 1]], {"mask": flat}, {"layers": 2, "heads": 3, "mask": [[1, 0, 1]] * 2},
                    [True, False, True, True, False, True]):
        got = read_mask_file(_write(tmp_path, content), 2, 3)
        assert got.dtype == np.bool_ and got.tolist() == want.tolist()


@pytest.mark.parametrize(("content", "message"), [
    ([1, 0, 1], "holds 3 values; expected a flat list of 6 0/1 values or 2 lists of 3"),
    ([[1, 0], [1, 0], [1, 1]], "holds 3 lists of lengths \\[2\\]; expected"),
    ([1, 0, 2, 1, 1, 1], "values other than 0/1 \\(e.g. 2\\)"),
    ([1, 0, "1", 1, 1, 1], "values other than 0/1"),
    ([1, [0], 1, 1, 1, 1], "values other than 0/1"),
    ({"layers": 3, "heads": 3, "mask": [1] * 9}, "is for layers=3, expected layers=2"),
    ({"keep": [1] * 6}, "without a 'mask' key"),
    ("not json", "not valid JSON"),
    (7, "holds int"),
])
def test_read_mask_file_errors(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_mask_file(_write(tmp_path, content), 2, 3)


@pytest.mark.embedded
def test_embedded_export_round_trip(embedded_model, tmp_path):
    model, tokenizer = embedded_model
    masker = HeadMasker(model)
    ids = tokenizer(["The woman worked as a", "The man worked as a"], return_tensors="pt").input_ids
    mask = np.ones(masker.dim, dtype=bool)
    mask[[3, 40, 100, 269]] = False
    try:
        plain = _logits(model, ids)
        with masker.masked(mask):
            hooked = _logits(model, ids)
        out = export_pruned(model, tokenizer, masker, mask, tmp_path / "smol", metadata={"model": "embedded"})
    finally:
        masker.remove()
    assert (hooked - plain).abs().max() > 1e-3
    assert torch.equal(_logits(model, ids), plain)  # live model unchanged
    reloaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    torch.testing.assert_close(_logits(reloaded, ids), hooked, rtol=1e-4, atol=1e-4)
    assert read_mask_file(out / HEAD_MASK_FILE, 30, 9).tolist() == mask.tolist()
    again = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert again("The woman worked as a").input_ids == tokenizer("The woman worked as a").input_ids
