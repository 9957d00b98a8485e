"""Throughput of one evaluator: several masks per forward pass, and exact prefix reuse.

A :class:`MaskRunner` stands in for the model in the metric functions of
:mod:`~objectives.masked_lm.metrics` (they call :func:`~objectives.masked_lm.metrics.forward_rows`,
which hands each forward pass to :meth:`MaskRunner.score_rows`).  The problem measures a batch of
masks as a *group*: it runs the metric code once per mask (:meth:`MaskRunner.select`), and the
first time the code asks for a given forward pass (the ``c``-th call: a fixed batch of prompts or
windows, the same for every mask) the runner computes that pass for *every* mask of the group,
keeps the reduced per-row results (log-probabilities of targets: small) and hands each mask its
own.  So the data loop stays in the metric code and the mask loop moves inside each pass:

- **Several masks per pass** (``masks_per_pass``): the batch is repeated ``k`` times with one
  mask per copy (per-row masks of :class:`~objectives.masked_lm.masking.HeadMasker`).  ``None``
  picks: 1 on CPU (exact: a mask's values never depend on what it is evaluated with, and the
  masks of a batch reuse each other's layers; ``benchmarks/perf/bench_masking.py`` measures what
  ``K > 1`` gains on a given machine, where ``masks_per_pass=K`` trades that exactness for it),
  on CUDA the most that fit in 80% of the free memory (``torch.cuda.mem_get_info``) given the
  peak memory of a one-mask pass of that batch, at most ``max_masks_per_pass``.  On
  out-of-memory the number is halved and the pass retried (one ``logging`` warning line).
- **Prefix reuse** (``prefix_reuse``): the hidden states entering layer ``l`` depend only on the
  masks of layers ``< l``.  Masks are processed in lexicographic (layer-major, keep first) order;
  a mask whose first ``d`` layers agree with the previous mask's (or are all kept: the unpruned
  model, whose layer outputs are cached per problem and batch) starts at layer ``d``: the
  earlier decoder layers are replaced for that pass by a stub returning their recorded output,
  so the model's own code still builds the embeddings, positions, attention masks, final norm
  and head.  The layers that run get exactly the inputs, shapes and masks of a full pass, so the
  results are bit-identical to the full evaluation (tested for every supported family,
  grouped-query attention included).  With ``k > 1`` masks per pass, only the unpruned prefix
  is reused (from the first layer any mask of the pass prunes).

Cached layer outputs take memory: the unpruned prefix per (problem key, batch) and the previous
mask's layers of the current batch, at most ``cache_bytes`` in all (deeper layers are recomputed).

Exactness: with one mask per pass (the CPU default) every value is bit-identical to a full pass
per mask, with or without prefix reuse.  With ``k > 1`` masks per pass the matrix products have
``k`` times the rows, and BLAS (CPU) or cuBLAS (CUDA) pick kernels by shape, so a mask's values
can change in the last bits with the number of masks in its pass: in float32 the per-token
log-probabilities stay within ``1e-5`` (absolute and relative) of the one-mask pass (tested; seen:
``~1e-7``), and bias and perplexity within ``1e-5`` relative.  The evaluation store keeps the
first value of a mask, so one store never holds two values of one mask.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from objectives.masked_lm.masking import HeadMasker

__all__ = ["MaskRunner", "first_pruned_layer", "first_difference", "trie_order", "prefix_saving"]

log = logging.getLogger(__name__)

Reduce = Callable[[Any, int], torch.Tensor]


# ------------------------------------------------------------------------ mask geometry
def first_pruned_layer(masks: np.ndarray, n_layers: int) -> np.ndarray:
    """``int[n]``: the first layer where each mask (``bool[n, L*H]``) prunes a head; ``L`` if none."""
    grid = np.asarray(masks, dtype=bool).reshape(len(masks), n_layers, -1)
    pruned = ~grid.all(axis=2)
    return np.where(pruned.any(axis=1), pruned.argmax(axis=1), n_layers)


def first_difference(a: np.ndarray, b: np.ndarray, n_layers: int) -> int:
    """The first layer where masks ``a`` and ``b`` (``bool[L*H]``) differ; ``L`` if they are equal."""
    diff = (np.asarray(a, dtype=bool) != np.asarray(b, dtype=bool)).reshape(n_layers, -1).any(axis=1)
    return int(diff.argmax()) if diff.any() else n_layers


def trie_order(masks: np.ndarray) -> np.ndarray:
    """``int[n]``: lexicographic order of the flat masks, kept heads first (masks sharing leading
    layers are adjacent; masks that keep the first layers whole come first)."""
    masks = np.asarray(masks, dtype=bool)
    if len(masks) == 0:
        return np.zeros(0, dtype=int)
    return np.lexsort(tuple((~masks).T[::-1]))


def prefix_saving(masks: np.ndarray, n_layers: int, *, root: bool = True) -> dict[str, float]:
    """Share of decoder-layer computations that prefix reuse skips for ``masks`` evaluated as one
    group, counted (no timing): ``layers_full = n * L`` against ``layers_run``, the layers a
    :class:`MaskRunner` runs with ``masks_per_pass=1`` when the unpruned prefix is cached
    (``root=True``: as after the problem's first evaluations) or not."""
    masks = np.asarray(masks, dtype=bool)
    fp = first_pruned_layer(masks, n_layers)
    run, prev = 0, None
    for i in trie_order(masks):
        d_root = int(fp[i]) if root else 0
        d_last = first_difference(masks[i], masks[prev], n_layers) if prev is not None else 0
        run += n_layers - max(d_root, d_last)
        prev = i
    full = len(masks) * n_layers
    return {"n_masks": len(masks), "layers_full": full, "layers_run": run,
            "saving": 1.0 - run / full if full else 0.0}


# ------------------------------------------------------------------------ layer outputs
def _rows(out: Any, start: int, stop: int) -> Any:
    if isinstance(out, torch.Tensor):
        return out[start:stop].clone()
    if isinstance(out, tuple):
        return tuple(_rows(x, start, stop) for x in out)
    return out


def _tile(out: Any, k: int) -> Any:
    if k == 1:
        return out
    if isinstance(out, torch.Tensor):
        return out.repeat(k, *([1] * (out.ndim - 1)))
    if isinstance(out, tuple):
        return tuple(_tile(x, k) for x in out)
    return out


def _nbytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, tuple):
        return sum(_nbytes(x) for x in out)
    return 0


class _Replay:
    """Stands in for a decoder layer's ``forward`` for one pass: returns the recorded output."""

    def __init__(self, output: Any):
        self.output = output

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.output


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


class MaskRunner:
    """Evaluates a group of masks pass by pass (see the module docstring).

    Args:
        model: the ``transformers`` causal LM; masker: its :class:`HeadMasker`.
        masks_per_pass: masks stacked in one forward pass; ``None``: 1 on CPU, picked from free
            memory on CUDA.
        max_masks_per_pass: ceiling of the CUDA pick.
        prefix_reuse: reuse the layers on which masks agree (exact).
        cache_bytes: memory for recorded layer outputs (unpruned prefixes of every batch plus the
            previous mask's layers of the current batch).

    Attributes:
        layers_run, layers_full: decoder-layer computations done vs those of full evaluations
        (counts since construction; one per layer, mask and pass).
    """

    def __init__(self, model: nn.Module, masker: HeadMasker, *, masks_per_pass: int | None = None,
                 max_masks_per_pass: int = 64, prefix_reuse: bool = True, cache_bytes: int = 2 << 30) -> None:
        if masks_per_pass is not None and masks_per_pass < 1:
            raise ValueError(f"masks_per_pass must be >= 1 or None, got {masks_per_pass}")
        if max_masks_per_pass < 1:
            raise ValueError(f"max_masks_per_pass must be >= 1, got {max_masks_per_pass}")
        self.model, self.masker = model, masker
        self._layers = masker.decoder_layers()
        self.n_layers = len(self._layers)
        self.masks_per_pass, self.max_masks_per_pass = masks_per_pass, max_masks_per_pass
        self.prefix_reuse, self.cache_bytes = prefix_reuse, int(cache_bytes)
        self.device = next(model.parameters()).device
        # (key, call) -> (input shape, [layer outputs of the unpruned model, layers 0..depth-1])
        self._roots: OrderedDict[tuple[Hashable, int], tuple[tuple, list]] = OrderedDict()
        self._per_pass: dict[tuple[Hashable, int], int] = {}
        self._key: Hashable = None
        self._masks: np.ndarray | None = None
        self._pending: dict[int, tuple[tuple, list]] = {}
        self._j, self._call = 0, 0
        self.layers_run = 0
        self.layers_full = 0

    # -------------------------------------------------------------- model-like
    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    # ------------------------------------------------------------------ group
    @contextmanager
    def group(self, key: Hashable, masks: np.ndarray) -> Iterator[MaskRunner]:
        """Measure ``masks`` (``bool[n, L*H]``) in the block; ``key`` names the sequence of forward
        passes the metric code makes (same key: same batches in the same order)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.masker.dim:
            raise ValueError(f"masks must be bool[n, {self.masker.dim}], got shape {list(masks.shape)}")
        self._key, self._masks, self._pending = key, masks, {}
        self.select(0)
        try:
            yield self
        finally:
            self._masks, self._pending = None, {}
            self.masker.set_masks(None)

    def select(self, j: int) -> None:
        """The following forward passes are those of mask ``j`` of the group."""
        self._j, self._call = j, 0

    def clear(self) -> None:
        """Forget every recorded layer output and per-pass pick."""
        self._roots.clear()
        self._per_pass.clear()

    @property
    def cached_bytes(self) -> int:
        return sum(_nbytes(o) for _, outs in self._roots.values() for o in outs)

    # ------------------------------------------------------------------ passes
    def score_rows(self, inputs: dict[str, Any], reduce: Reduce) -> torch.Tensor:
        """The selected mask's ``reduce(model(**inputs), 1)`` (rows of this batch).

        ``reduce(output, k)`` maps the output of a pass over the batch repeated ``k`` times
        (mask-major rows) to a tensor whose first dimension is those rows."""
        if self._masks is None:
            raise RuntimeError("MaskRunner.score_rows outside MaskRunner.group")
        c = self._call
        self._call += 1
        shape = tuple(inputs["input_ids"].shape)
        if c not in self._pending:
            self._pending[c] = (shape, self._score_all(c, inputs, reduce))
        stored_shape, results = self._pending[c]
        if stored_shape != shape:
            raise RuntimeError(f"forward pass {c} of mask {self._j} has input shape {list(shape)}, but the group's "
                               f"pass {c} had {list(stored_shape)}: the metric code must make the same passes for "
                               f"every mask")
        out = results[self._j]
        if out is None:
            raise RuntimeError(f"forward pass {c} of mask {self._j} was asked for twice")
        results[self._j] = None
        return out

    def _score_all(self, c: int, inputs: dict[str, Any], reduce: Reduce) -> list[torch.Tensor | None]:
        masks = self._masks
        n, b = len(masks), int(inputs["input_ids"].shape[0])
        shape = tuple(inputs["input_ids"].shape)
        root_key = (self._key, c)
        root = self._roots.get(root_key)
        if root is None or root[0] != shape:
            root = (shape, [])
            self._roots[root_key] = root
        self._roots.move_to_end(root_key)
        root_outs = root[1] if self.prefix_reuse else []
        fp = first_pruned_layer(masks, self.n_layers)
        order = trie_order(masks)
        results: list[torch.Tensor | None] = [None] * n
        self.layers_full += n * self.n_layers
        k = self._pick_per_pass(root_key, inputs, reduce, min(n, self.max_masks_per_pass))
        if k == 1:
            prev_mask, prev_path = None, []
            for i in order:
                root_outs = self._roots[root_key][1] if self.prefix_reuse else []
                d_root = min(int(fp[i]), len(root_outs))
                d_prev = (min(first_difference(masks[i], prev_mask, self.n_layers), len(prev_path))
                          if prev_mask is not None and self.prefix_reuse else 0)
                stub = prev_path[:d_prev] if d_prev > d_root else root_outs[:d_root]
                out, captured = self._pass(inputs, masks[i], 1, stub, self._capture_limit(inputs))
                results[i] = reduce(out, 1)
                path = [*stub, *captured]
                if self.prefix_reuse:
                    self._grow_root(root_key, path[:int(fp[i])])
                    prev_mask, prev_path = masks[i], path
            return results
        start = 0
        while start < n:
            chunk = order[start:start + k]
            root_outs = self._roots[root_key][1] if self.prefix_reuse else []
            d = min(int(fp[chunk].min()), len(root_outs))
            try:
                out, captured = self._pass(inputs, np.repeat(masks[chunk], b, axis=0), len(chunk), root_outs[:d],
                                           min(self._capture_limit(inputs), int(fp[chunk].min())))
                red = reduce(out, len(chunk))
            except Exception as exc:
                if not _is_oom(exc) or k == 1:
                    raise
                del exc
                k = max(1, k // 2)
                self._per_pass[root_key] = k
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                log.warning("masked-lm: out of memory with %d masks per forward pass (batch of %d rows); "
                            "retrying with %d", len(chunk), b, k)
                continue
            if self.prefix_reuse and captured:
                self._grow_root(root_key, [*root_outs[:d], *(_rows(o, 0, b) for o in captured)])
            for j, i in enumerate(chunk):
                results[i] = red[j * b:(j + 1) * b]
            start += len(chunk)
        return results

    def _pick_per_pass(self, root_key: tuple, inputs: dict[str, Any], reduce: Reduce, most: int) -> int:
        if root_key in self._per_pass:  # picked from memory, or halved after an out-of-memory error
            return max(1, min(self._per_pass[root_key], most))
        if self.masks_per_pass is not None:
            return max(1, min(self.masks_per_pass, most))
        if self.device.type != "cuda":
            return 1
        if most > 1:
            # peak memory of one mask's pass over this batch (the unpruned model), then fill 80% of the free memory
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            out, _ = self._pass(inputs, None, 1, [], 0)
            reduce(out, 1)
            del out
            peak = max(torch.cuda.max_memory_allocated(self.device) - before, 1)
            free, _total = torch.cuda.mem_get_info(self.device)
            k = int(max(1, min(self.max_masks_per_pass, 0.8 * free // peak)))
            self._per_pass[root_key] = k
            log.info("masked-lm: %d masks per forward pass for batches of shape %s (%.0f MiB per mask, %.0f MiB "
                     "free)", k, list(inputs["input_ids"].shape), peak / 2**20, free / 2**20)
            return max(1, min(k, most))
        return 1

    def _layer_bytes(self, inputs: dict[str, Any]) -> int:
        """Bytes of one decoder layer's output for this batch (one mask)."""
        hidden = int(getattr(self.model.config, "hidden_size", 0) or getattr(self.model.config, "n_embd", 0) or 1)
        elem = next(self.model.parameters()).element_size()
        return max(1, int(np.prod(inputs["input_ids"].shape)) * hidden * elem)

    def _capture_limit(self, inputs: dict[str, Any]) -> int:
        """Layers whose outputs may be recorded for one batch: each half of ``cache_bytes`` (the
        unpruned prefixes; the previous mask's layers) bounds them."""
        if not self.prefix_reuse:
            return 0
        return int(min(self.n_layers, (self.cache_bytes // 2) // self._layer_bytes(inputs)))

    def _grow_root(self, root_key: tuple, keep_all_prefix: list) -> None:
        """Record a longer unpruned prefix of this batch, within half of ``cache_bytes`` for all
        batches: the prefixes of other sequences of passes (another split, other metrics; least
        recently used first) make room, then this prefix is cut short (the batches of the current
        sequence that came first keep theirs, so none is evicted by its neighbour every group)."""
        shape, outs = self._roots[root_key]
        if len(keep_all_prefix) <= len(outs):
            return
        grown = list(keep_all_prefix)
        budget = self.cache_bytes // 2
        while grown and self.cached_bytes - sum(map(_nbytes, outs)) + sum(map(_nbytes, grown)) > budget:
            other = next((key for key in self._roots if key[0] != root_key[0] and self._roots[key][1]), None)
            if other is not None:
                del self._roots[other]
            else:
                grown.pop()
        if len(grown) > len(outs):
            self._roots[root_key] = (shape, grown)

    def _pass(self, inputs: dict[str, Any], masks: np.ndarray | None, k: int, stub: list,
              capture_to: int) -> tuple[Any, list]:
        """One forward pass of the batch repeated ``k`` times with ``masks`` (``bool[L*H]``, per-row
        ``bool[k*b, L*H]`` or ``None``), decoder layers ``< len(stub)`` replaced by their recorded
        outputs; returns the output and the outputs of layers ``len(stub)..capture_to-1``."""
        b = int(inputs["input_ids"].shape[0])
        args = {name: (v.repeat(k, *([1] * (v.ndim - 1))) if isinstance(v, torch.Tensor) and v.ndim and
                       v.shape[0] == b and k > 1 else v) for name, v in inputs.items()}
        d = len(stub)
        captured: dict[int, Any] = {}
        saved: list[tuple[nn.Module, Any]] = []
        handles = []
        try:
            for layer, out in zip(self._layers, stub, strict=False):
                saved.append((layer, layer.__dict__.get("forward")))
                layer.forward = _Replay(_tile(out, k))
            for idx in range(d, max(d, capture_to)):
                handles.append(self._layers[idx].register_forward_hook(
                    lambda _m, _a, out, idx=idx: captured.__setitem__(idx, out)))
            self.masker.set_masks(masks)
            with torch.no_grad():
                output = self.model(**args, use_cache=False)
        finally:
            self.masker.set_masks(None)
            for handle in handles:
                handle.remove()
            for layer, forward in saved:
                if forward is None:
                    del layer.forward
                else:
                    layer.forward = forward
        self.layers_run += k * (self.n_layers - d)
        return output, [captured[i] for i in range(d, max(d, capture_to)) if i in captured]
