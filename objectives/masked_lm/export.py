"""Writing a pruned model that loads in plain ``transformers``, and reading mask files.

A pruned head is exported by zeroing its input columns of the layer's attention output
projection, which is exactly what the :class:`~objectives.masked_lm.masking.HeadMasker` hook does
at run time (the projection bias, if any, is kept, as with the hook).  Heads are not removed
physically: stock configs cannot express per-layer head counts.  The zeroed weights are written
from a copy; the live model is left unchanged.

Files written to ``out_dir``: the model (``save_pretrained``: ``config.json``,
``model.safetensors``, ...), the tokenizer, and ``head_mask.json``::

    {"layers": L, "heads": H, "mask": [[1, 0, ...], ...],  # L lists of H, 1 = kept
     "n_pruned": k, ...metadata}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from framework.space import HeadSpace
from framework.space import read_mask_file as _read_mask_file
from objectives.masked_lm.masking import HeadMasker

__all__ = ["HEAD_MASK_FILE", "export_pruned", "read_mask_file"]

HEAD_MASK_FILE = "head_mask.json"
_RESERVED = ("layers", "heads", "mask", "n_pruned")


def _flat_mask(mask: np.ndarray | torch.Tensor, n_layers: int, n_heads: int) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != np.bool_:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"mask must be boolean or 0/1, got values {np.unique(arr)[:5]}")
        arr = arr.astype(bool)
    if arr.size != n_layers * n_heads or arr.ndim > 2 or (arr.ndim == 2 and arr.shape not in
                                                          ((n_layers, n_heads), (1, n_layers * n_heads))):
        raise ValueError(f"mask must have shape [{n_layers * n_heads}] or [{n_layers}, {n_heads}] "
                         f"(L={n_layers} layers x H={n_heads} heads), got {list(arr.shape)}")
    return arr.reshape(-1)


def export_pruned(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, masker: HeadMasker,
                  mask: np.ndarray | torch.Tensor, out_dir: str | Path, *, metadata: dict | None = None) -> Path:
    """Save ``model`` with the heads pruned by ``mask`` baked into its weights.

    Args:
        model: the live model ``masker`` was built on (left unchanged).
        tokenizer: saved beside the model (``None`` to skip).
        masker: gives the output projections and head layout.
        mask: one mask, ``bool[L*H]`` (layer-major) or ``bool[L, H]``, ``True`` = keep.
        out_dir: directory to write (created; existing files of the same names are overwritten).
        metadata: extra JSON-able keys for ``head_mask.json`` (must not use ``layers``, ``heads``,
            ``mask``, ``n_pruned``).

    Returns:
        ``Path(out_dir)``; ``AutoModelForCausalLM.from_pretrained(out_dir)`` reproduces the hooked
        model's outputs under ``mask`` (up to float rounding of the reordered product).
    """
    L, H, hd = masker.n_layers, masker.n_heads, masker.head_dim
    flat = _flat_mask(mask, L, H)
    metadata = dict(metadata or {})
    clash = sorted(set(metadata) & set(_RESERVED))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved in {HEAD_MASK_FILE}")
    json.dumps(metadata)  # fail before writing anything when metadata is not JSON-able

    # Parameter name of each projection weight, to replace it in a copy of the state dict.
    names = {id(p): n for n, p in model.named_parameters()}
    state = model.state_dict()
    for layer, proj in enumerate(masker.output_projections()):
        pruned = np.flatnonzero(~flat[layer * H:(layer + 1) * H])
        if pruned.size == 0:
            continue
        key = names.get(id(proj.weight))
        if key is None or key not in state:
            raise RuntimeError(f"output projection of layer {layer} is not a parameter of this model")
        w = proj.weight.detach().clone()
        cols = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in pruned]).to(w.device)
        if masker.family.conv1d:
            w[cols, :] = 0  # Conv1D weight is [in, out]
        else:
            w[:, cols] = 0  # Linear weight is [out, in]
        state[key] = w

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved_mask = masker.mask
    masker.set_masks(None)  # hooks inert while saving
    try:
        model.save_pretrained(out, state_dict=state)
    finally:
        masker.set_masks(saved_mask)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    record = {"layers": L, "heads": H, "mask": flat.reshape(L, H).astype(int).tolist(),
              "n_pruned": int((~flat).sum()), **metadata}
    (out / HEAD_MASK_FILE).write_text(json.dumps(record, indent=1))
    return out


def read_mask_file(path: str | Path, n_layers: int, n_heads: int) -> np.ndarray:
    """Read a mask JSON file as ``bool[L*H]``: :func:`framework.space.read_mask_file` for an
    ``n_layers x n_heads`` model (flat list, ``L`` lists of ``H``, or ``head_mask.json``)."""
    return _read_mask_file(path, HeadSpace(n_layers, n_heads))
