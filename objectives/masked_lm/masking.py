"""Switching attention heads off in a live model, by forward pre-hooks, or gating them continuously for gradients.

``transformers`` 5 ignores ``head_mask`` and has no ``prune_heads``.  Instead, each layer's
attention output projection (the linear map that mixes the concatenated head outputs back into
the residual stream) gets a forward pre-hook that views its input as ``(..., heads, head_dim)``
and multiplies it by the mask.  Zeroing a head's slice of that input is exactly the same as
zeroing the head's input columns of the projection weight, which is how :mod:`.export` writes a
pruned model that loads in plain ``transformers``.

Masks are ``bool`` (``True`` = keep) and flat, layer-major: index ``l * H + h``.  A 1-D mask
``bool[L*H]`` applies to every row of the batch; a 2-D mask ``bool[b, L*H]`` gives one mask per
batch row, so one forward pass evaluates ``b`` masks (each row of the input batch is then a
different masked model).  Layers whose heads are all kept are left alone by the hook, and with
no mask set the hooks return ``None``, so the keep-all model is bit-identical to the unhooked one.

For head sensitivities, :meth:`HeadMasker.gated` puts a continuous gate ``g`` (a leaf tensor that
requires grad) in the same place: the hook multiplies each head's slice by its gate instead of a
0/1 mask, on every layer.  At ``g = mask`` the forward pass is bit-identical to the masked one
(``x * 1.0 == x`` and ``x * 0.0`` is what masking computes), and one backward pass gives
``d objective / d g_h`` for every head.  Gates are per batch row (``float[b, L*H]``), so the
gradient of a sum over rows is every row's own gradient (per-item Jacobians in one pass).

Supported architectures are described by a small table (:data:`FAMILIES`): where the decoder
layers are, where each layer's output projection is, and whether it is a GPT-2 style
``Conv1D`` (weight ``[in, out]``) or an ``nn.Linear`` (weight ``[out, in]``).  Head counts come
from the config (``num_attention_heads``, ``num_key_value_heads`` for grouped-query attention)
and the projection's input width (``head_dim = in_features / heads``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from framework.space import HeadSpace

__all__ = ["FAMILIES", "SUPPORTED_FAMILIES", "Family", "HeadMasker", "UnsupportedModelError", "find_family",
           "check_config_supported"]


class UnsupportedModelError(ValueError):
    """The model's architecture has no entry in :data:`FAMILIES`."""


@dataclass(frozen=True)
class Family:
    """How to find the heads of one architecture family.

    Args:
        name: family name (shown in errors and reports).
        model_types: ``config.model_type`` values of this family.
        layers: dotted path of the decoder-layer ``ModuleList``, from ``model.base_model``.
        out_proj: dotted path of the attention output projection inside one layer.
        conv1d: the projection is a GPT-2 ``Conv1D`` (weight ``[in, out]``) rather than a
            ``nn.Linear`` (weight ``[out, in]``).
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    out_proj: str
    conv1d: bool = False

    def input_columns(self, proj: nn.Module) -> int:
        """Width of the projection's input (``heads * head_dim``)."""
        return proj.weight.shape[0] if self.conv1d else proj.weight.shape[1]


# Module paths read from the transformers 5.24.0 sources (models/<type>/modeling_<type>.py).
FAMILIES: tuple[Family, ...] = (
    Family("gpt2", ("gpt2",), "h", "attn.c_proj", conv1d=True),
    Family("gpt-neo", ("gpt_neo",), "h", "attn.attention.out_proj"),
    Family("gpt-j", ("gptj",), "h", "attn.out_proj"),
    Family("opt", ("opt",), "decoder.layers", "self_attn.out_proj"),
    Family("gpt-neox", ("gpt_neox",), "layers", "attention.dense"),
    Family("llama", ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"),
           "layers", "self_attn.o_proj"),
)

#: ``config.model_type`` values with an adapter.
SUPPORTED_FAMILIES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def _family_of(config: object, what: str) -> Family:
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnsupportedModelError(
        f"head masking does not support {what} (config.model_type={model_type!r}): no adapter finds its attention "
        f"heads; supported model types: {', '.join(SUPPORTED_FAMILIES)}")


def find_family(model: nn.Module) -> Family:
    """The :class:`Family` of ``model`` (by ``config.model_type``); ``UnsupportedModelError`` if none."""
    return _family_of(getattr(model, "config", None), type(model).__name__)


def check_config_supported(config: object) -> None:
    """Raise :class:`UnsupportedModelError` when a model of ``config`` (a ``transformers`` config)
    has no adapter: checked from the config, before the weights load."""
    arch = ", ".join(getattr(config, "architectures", None) or []) or "this model"
    _family_of(config, arch)


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


class HeadMasker:
    """Masks attention heads of a causal language model through forward pre-hooks.

    Args:
        model: a ``transformers`` model (``*ForCausalLM`` or the bare base model) of a supported
            family; hooks are registered at construction and stay until :meth:`remove`.

    Attributes:
        n_layers: ``L``; n_heads: query heads per layer ``H``; n_kv_heads: key/value heads per
        layer (``H`` without grouped-query attention); head_dim: width of one head's output.
        family: the matched :class:`Family`.

    Several maskers on one model compose (their masks multiply); :mod:`.export` writes the
    mask it is given, not what other maskers do.
    """

    def __init__(self, model: nn.Module):
        self.family = find_family(model)
        config = model.config
        base = getattr(model, "base_model", model)
        try:
            layers = _get(base, self.family.layers)
            self._projections = [_get(layer, self.family.out_proj) for layer in layers]
            self._layers = list(layers)
        except (AttributeError, IndexError, TypeError) as exc:
            raise UnsupportedModelError(
                f"{type(model).__name__} (config.model_type={config.model_type!r}) does not have the module layout "
                f"of family {self.family.name!r} ({self.family.layers}[i].{self.family.out_proj}): {exc}") from exc
        self.n_layers = len(self._projections)
        self.n_heads = int(config.num_attention_heads)
        self.n_kv_heads = int(getattr(config, "num_key_value_heads", None) or self.n_heads)
        width = self.family.input_columns(self._projections[0])
        if width % self.n_heads:
            raise UnsupportedModelError(f"output projection input width {width} is not a multiple of "
                                        f"num_attention_heads={self.n_heads} ({type(model).__name__})")
        self.head_dim = width // self.n_heads
        configured = getattr(config, "head_dim", None)
        if isinstance(configured, int) and configured != self.head_dim:
            raise UnsupportedModelError(f"config.head_dim={configured} but the output projection implies "
                                        f"{self.head_dim} ({type(model).__name__})")
        # Per-layer multiplier, or None where every head of the layer is kept (hook does nothing).
        self._layer_masks: list[torch.Tensor | None] = [None] * self.n_layers
        self._rows: int | None = None  # mask rows of a per-row mask; None for a shared mask
        self._mask: np.ndarray | None = None
        self._gate: torch.Tensor | None = None  # float[b, L, H] while gated
        self._handles = [proj.register_forward_pre_hook(self._hook(layer))
                         for layer, proj in enumerate(self._projections)]

    # ----------------------------------------------------------------- space
    @property
    def dim(self) -> int:
        """Length of a flat mask, ``L * H``."""
        return self.n_layers * self.n_heads

    def head_space(self, *, max_pruned_fraction: float = 1.0, protected: frozenset[int] | set[int] = frozenset()
                   ) -> HeadSpace:
        """The :class:`HeadSpace` of this model's heads, with the given constraints."""
        return HeadSpace(self.n_layers, self.n_heads, self.n_kv_heads, max_pruned_fraction=max_pruned_fraction,
                         protected=frozenset(protected))

    def decoder_layers(self) -> list[nn.Module]:
        """Each decoder layer (the module whose output is the residual stream entering the next), in order."""
        return list(self._layers)

    def output_projections(self) -> list[nn.Module]:
        """Each layer's attention output projection, in layer order."""
        return list(self._projections)

    # ----------------------------------------------------------------- masks
    @property
    def mask(self) -> np.ndarray | None:
        """The current mask (``bool[L*H]`` or ``bool[b, L*H]``), or ``None``."""
        return None if self._mask is None else self._mask.copy()

    def set_masks(self, masks: np.ndarray | torch.Tensor | None) -> None:
        """Set the masks used by the following forward passes.

        Args:
            masks: ``None`` (keep all; hooks do nothing), ``bool[L*H]`` (same mask for every
                batch row; ``bool[1, L*H]`` is taken as that too) or ``bool[b, L*H]`` (row ``i`` of
                the input batch uses mask ``i``; the batch must then have exactly ``b`` rows).
                Numpy or torch; 0/1 integers are accepted, other values are refused.
        """
        if masks is None:
            self._mask, self._rows = None, None
            self._layer_masks = [None] * self.n_layers
            return
        arr = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
        if arr.dtype != np.bool_:
            if arr.size and not np.isin(arr, (0, 1)).all():
                raise ValueError(f"masks must be boolean or 0/1, got values {np.unique(arr)[:5]}")
            arr = arr.astype(bool)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.dim or (arr.ndim == 2 and arr.shape[0] == 0):
            raise ValueError(f"masks must have shape [{self.dim}] or [b, {self.dim}] (L={self.n_layers} layers x "
                             f"H={self.n_heads} heads, layer-major), got {list(arr.shape)}")
        grid = arr.reshape(*arr.shape[:-1], self.n_layers, self.n_heads)
        layer_masks: list[torch.Tensor | None] = []
        for layer, proj in enumerate(self._projections):
            part = grid[..., layer, :]
            if part.all():
                layer_masks.append(None)
                continue
            # [H, 1] or [b, H, 1], broadcast against the (..., H, head_dim) view of the input.
            t = torch.as_tensor(part, device=proj.weight.device).to(proj.weight.dtype).unsqueeze(-1)
            layer_masks.append(t)
        self._mask, self._rows = arr.copy(), (arr.shape[0] if arr.ndim == 2 else None)
        self._layer_masks = layer_masks

    @contextmanager
    def masked(self, masks: np.ndarray | torch.Tensor | None) -> Iterator[HeadMasker]:
        """Set ``masks`` for the ``with`` block, then go back to no mask (even on error)."""
        self.set_masks(masks)
        try:
            yield self
        finally:
            self.set_masks(None)

    @contextmanager
    def gated(self, gates: np.ndarray | torch.Tensor, rows: int) -> Iterator[torch.Tensor]:
        """Gate every head continuously for the ``with`` block (instead of masking).

        Args:
            gates: ``float[L*H]`` (the same values for every row, e.g. a bool mask) or
                ``float[rows, L*H]``; values are not restricted to 0/1 (finite differences).
            rows: batch rows of the forward passes in the block.

        Yields the leaf tensor ``float32[rows, L, H]`` (``requires_grad``): after a backward pass
        its ``.grad[i, l, h]`` is the derivative with respect to head ``(l, h)``'s gate in row ``i``.
        A mask set with :meth:`set_masks` is cleared for the block.
        """
        arr = gates.detach().cpu().numpy() if isinstance(gates, torch.Tensor) else np.asarray(gates)
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 1:
            arr = np.broadcast_to(arr, (rows, arr.shape[0]))
        if arr.shape != (rows, self.dim) or not np.isfinite(arr).all():
            raise ValueError(f"gates must be finite, of shape [{self.dim}] or [{rows}, {self.dim}], "
                             f"got {list(np.shape(gates))}")
        device = self._projections[0].weight.device
        gate = torch.tensor(arr.reshape(rows, self.n_layers, self.n_heads), device=device).requires_grad_()
        self.set_masks(None)
        self._gate = gate
        try:
            yield gate
        finally:
            self._gate = None

    # ----------------------------------------------------------------- hooks
    def _hook(self, layer: int):
        def pre_hook(module: nn.Module, args: tuple):
            if self._gate is not None:
                return self._gated(layer, args)
            rows = self._rows
            if rows is not None and args[0].shape[0] != rows:
                raise ValueError(f"{rows} per-row head masks are set but the input batch has {args[0].shape[0]} "
                                 f"rows (layer {layer}); pass one mask per batch row, or a single mask "
                                 f"bool[{self.dim}] for every row")
            m = self._layer_masks[layer]
            if m is None:
                return None
            x = args[0]
            if m.dtype != x.dtype or m.device != x.device:
                m = m.to(device=x.device, dtype=x.dtype)
            view = x.unflatten(-1, (self.n_heads, self.head_dim))
            if rows is not None:
                m = m.view(rows, *([1] * (view.ndim - 3)), self.n_heads, 1)
            return (view.mul(m).flatten(-2), *args[1:])

        return pre_hook

    def _gated(self, layer: int, args: tuple) -> tuple:
        gate = self._gate
        x = args[0]
        if x.shape[0] != gate.shape[0]:
            raise ValueError(f"gates of {gate.shape[0]} rows are set but the input batch has {x.shape[0]} rows "
                             f"(layer {layer})")
        view = x.unflatten(-1, (self.n_heads, self.head_dim))
        g = gate[:, layer].to(x.dtype).view(gate.shape[0], *([1] * (view.ndim - 3)), self.n_heads, 1)
        return (view.mul(g).flatten(-2), *args[1:])

    def remove(self) -> None:
        """Remove the hooks (idempotent); the model is then exactly as before."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.set_masks(None)

    def __repr__(self) -> str:
        return (f"HeadMasker(family={self.family.name!r}, n_layers={self.n_layers}, n_heads={self.n_heads}, "
                f"n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim})")
