"""Several masks per forward pass and prefix reuse (objectives/masked_lm/batching.py): the values
are bit-identical to one full pass per mask, for every supported family (grouped-query attention
included), through the metric code and the problem; out-of-memory halves the masks per pass."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from objectives.masked_lm.batching import (
    MaskRunner,
    first_difference,
    first_pruned_layer,
    prefix_saving,
    trie_order,
)
from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.metrics import EncodedContexts, encode_contexts, forward_rows, next_token_logprobs, window_nll

cuda = pytest.mark.cuda


def _inputs(vocab: int, b: int = 3, t: int = 10, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, t), generator=g)
    att = torch.ones_like(ids)
    att[0, :3] = 0  # a left-padded row: the attention mask must travel with the stubs
    return {"input_ids": ids, "attention_mask": att}


def _reduce_for(ids: torch.Tensor):
    targets = ids[:, 1:]

    def reduce(out, k: int) -> torch.Tensor:
        lp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)
        return lp.gather(-1, targets.repeat(k, 1).to(lp.device).unsqueeze(-1)).squeeze(-1).cpu().double()

    return reduce


def _trie_masks(n_layers: int, n_heads: int) -> np.ndarray:
    """Masks that exercise every source of reuse: the unpruned prefix, the previous mask's
    layers, duplicates, the keep-all mask, masks differing only in the last layer."""
    dim = n_layers * n_heads
    rng = np.random.default_rng(1)
    out = [np.ones(dim, dtype=bool)]
    for layer in range(n_layers):
        for h in (0, n_heads - 1):
            m = np.ones(dim, dtype=bool)
            m[layer * n_heads + h] = False
            out.append(m)
    both = np.ones(dim, dtype=bool)
    both[[0, dim - 1]] = False
    out += [both, both.copy()]
    for _ in range(4):
        m = np.ones(dim, dtype=bool)
        m[rng.choice(dim, size=max(1, dim // 4), replace=False)] = False
        out.append(m)
    masks = np.array(out)
    return masks[rng.permutation(len(masks))]


def _full(model, masker, inputs, masks) -> list[torch.Tensor]:
    """One plain pass per mask, as the metric code makes it without a runner (``forward_rows``)."""
    reduce = _reduce_for(inputs["input_ids"])
    out = []
    with torch.no_grad():
        for m in masks:
            with masker.masked(m):
                out.append(forward_rows(model, inputs, reduce))
    return out


def _grouped(runner: MaskRunner, inputs, masks, key="k") -> list[torch.Tensor]:
    reduce = _reduce_for(inputs["input_ids"])
    out = []
    with runner.group(key, masks):
        for j in range(len(masks)):
            runner.select(j)
            out.append(runner.score_rows(inputs, reduce))
    return out


def _assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert torch.equal(x, y), (i, (x - y).abs().max().item())


#: Stated tolerance of several masks per pass in float32 (kernels change with the number of rows).
TILED = {"rtol": 1e-5, "atol": 1e-5}


def _assert_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **TILED)


def test_mask_geometry():
    a = np.array([[1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]], dtype=bool)  # 3 layers x 2 heads
    assert first_pruned_layer(a, 3).tolist() == [2, 3, 0]
    assert first_difference(a[0], a[1], 3) == 2 and first_difference(a[0], a[0], 3) == 3
    assert first_difference(a[0], a[2], 3) == 0
    assert trie_order(a).tolist() == [1, 0, 2]  # keep first: keep-all, then the mask pruning layer 2 only
    # nothing recorded yet: keep-all runs 3 layers, mask 0 the one after the keep-all prefix, mask 2 all 3
    s = prefix_saving(a, 3, root=False)
    assert (s["layers_full"], s["layers_run"]) == (9, 7) and s["saving"] == pytest.approx(2 / 9)
    # the unpruned model's layers recorded (by earlier groups): keep-all runs none
    assert prefix_saving(a, 3)["layers_run"] == 4


def test_prefix_reuse_is_bit_identical_for_every_family(tiny_model):
    masker = HeadMasker(tiny_model)
    masks = _trie_masks(masker.n_layers, masker.n_heads)
    inputs = _inputs(tiny_model.config.vocab_size)
    full = _full(tiny_model, masker, inputs, masks)
    runner = MaskRunner(tiny_model, masker, masks_per_pass=1)
    _assert_identical(_grouped(runner, inputs, masks), full)
    assert runner.layers_run < runner.layers_full
    # a second group starts from the recorded unpruned prefix; several masks per pass, too
    _assert_identical(_grouped(runner, inputs, masks[::-1]), full[::-1])
    _assert_close(_grouped(MaskRunner(tiny_model, masker, masks_per_pass=4), inputs, masks), full)
    off = MaskRunner(tiny_model, masker, masks_per_pass=1, prefix_reuse=False)
    _assert_identical(_grouped(off, inputs, masks), full)
    assert off.layers_run == off.layers_full and off.cached_bytes == 0
    # the hooks and layers are as before: a plain pass after the runner equals one before it
    _assert_identical(_full(tiny_model, masker, inputs, masks[:2]), full[:2])


@pytest.fixture(scope="module")
def deep_gqa():
    """A 6-layer Llama with grouped-query attention (6 query heads, 2 KV heads)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2,
                         hidden_size=48, intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_deep_gqa_prefix_reuse_saves_layers_and_stays_exact(deep_gqa):
    masker = HeadMasker(deep_gqa)
    L, H = masker.n_layers, masker.n_heads
    base = np.ones(L * H, dtype=bool)
    base[3 * H + 1] = False  # a mask pruning one head of layer 3, and its single-flip neighbours
    neighbours = np.repeat(base[None], L * H, axis=0)
    neighbours[np.arange(L * H), np.arange(L * H)] ^= True
    masks = np.vstack([base, neighbours])
    inputs = _inputs(64, b=2, t=12, seed=3)
    full = _full(deep_gqa, masker, inputs, masks)
    runner = MaskRunner(deep_gqa, masker, masks_per_pass=1)
    _assert_identical(_grouped(runner, inputs, masks), full)
    assert runner.layers_run == prefix_saving(masks, L, root=False)["layers_run"]
    assert prefix_saving(masks, L, root=False)["saving"] > 0.3
    # within a byte budget that holds no layer, nothing is reused and nothing is recorded
    tight = MaskRunner(deep_gqa, masker, masks_per_pass=1, cache_bytes=1)
    _assert_identical(_grouped(tight, inputs, masks), full)
    assert tight.layers_run == tight.layers_full and tight.cached_bytes == 0


def test_metric_functions_through_the_runner_equal_plain_passes(deep_gqa):
    masker = HeadMasker(deep_gqa)
    masks = _trie_masks(masker.n_layers, masker.n_heads)[:6]
    windows = np.random.default_rng(0).integers(3, 64, size=(5, 16))
    rows = [[1, *np.random.default_rng(i).integers(3, 64, size=3 + i % 4).tolist()] for i in range(7)]

    class Tok:  # token ids given as text "3 4 5"
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [int(x) for x in text.split()]}

    enc: EncodedContexts = encode_contexts(Tok(), [" ".join(map(str, r[1:])) for r in rows], batch_size=3)
    cand = np.random.default_rng(1).integers(3, 64, size=(7, 2))
    plain = []
    for m in masks:
        with masker.masked(m):
            plain.append((window_nll(deep_gqa, windows, 8, batch_size=2)[0], next_token_logprobs(deep_gqa, enc, cand)))
    for per_pass in (1, 3):
        runner = MaskRunner(deep_gqa, masker, masks_per_pass=per_pass)
        same = np.array_equal if per_pass == 1 else (lambda x, y: np.allclose(x, y, **TILED))
        with runner.group("metrics", masks):
            for j, (nll, nxt) in enumerate(plain):
                runner.select(j)
                assert same(window_nll(runner, windows, 8, batch_size=2)[0], nll)
                assert same(next_token_logprobs(runner, enc, cand), nxt)


def test_out_of_memory_halves_the_masks_per_pass_and_logs_one_line(deep_gqa, caplog):
    masker = HeadMasker(deep_gqa)
    masks = _trie_masks(masker.n_layers, masker.n_heads)
    inputs = _inputs(64, b=2)
    full = _full(deep_gqa, masker, inputs, masks)
    limit = 2 * inputs["input_ids"].shape[0]  # "memory" for two masks' rows

    def too_big(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = masker.decoder_layers()[-1].register_forward_pre_hook(too_big, with_kwargs=True)
    try:
        runner = MaskRunner(deep_gqa, masker, masks_per_pass=8)
        with caplog.at_level(logging.WARNING, logger="objectives.masked_lm.batching"):
            _assert_close(_grouped(runner, inputs, masks), full)
    finally:
        handle.remove()
    lines = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert lines == ["masked-lm: out of memory with 8 masks per forward pass (batch of 2 rows); retrying with 4",
                     "masked-lm: out of memory with 4 masks per forward pass (batch of 2 rows); retrying with 2"]
    assert list(runner._per_pass.values()) == [2]


def test_runner_refuses_misuse(deep_gqa):
    masker = HeadMasker(deep_gqa)
    runner = MaskRunner(deep_gqa, masker)
    inputs = _inputs(64)
    with pytest.raises(RuntimeError, match="outside MaskRunner.group"):
        runner.score_rows(inputs, _reduce_for(inputs["input_ids"]))
    with pytest.raises(ValueError, match="masks_per_pass must be >= 1"):
        MaskRunner(deep_gqa, masker, masks_per_pass=0)
    masks = np.ones((2, masker.dim), dtype=bool)
    with runner.group("g", masks), pytest.raises(RuntimeError, match="input shape"):
        runner.score_rows(inputs, _reduce_for(inputs["input_ids"]))
        runner.select(1)
        other = _inputs(64, b=2)
        runner.score_rows(other, _reduce_for(other["input_ids"]))


@pytest.mark.parametrize("bias_metric", ["pronoun", "likelihood"])
def test_problem_values_do_not_depend_on_reuse_or_masks_per_pass(make, bias_metric):
    masks = make(bias_metric=bias_metric).space.keep_all(6)
    masks[1, [0, 5]] = False
    masks[2, :3] = False
    masks[3, 6] = False                  # prunes only the last layer: reuses the unpruned first layer
    masks[4, [0, 6]] = False             # shares layer 0 with mask 1
    masks[5, 1] = False
    reference = make(bias_metric=bias_metric, prefix_reuse=False, masks_per_pass=1)
    values, infos = reference.evaluate_with_info(masks, "search")
    for options in ({}, {"prefix_cache_mb": 0}):
        problem = make(bias_metric=bias_metric, **options)
        got, got_infos = problem.evaluate_with_info(masks, "search")
        assert np.array_equal(got, values) and got_infos == infos, options
        again, _ = problem.evaluate_with_info(masks[::-1], "search")  # second batch: the unpruned prefix is cached
        assert np.array_equal(again, values[::-1]), options
    tiled = make(bias_metric=bias_metric, masks_per_pass=4).evaluate(masks, "search")
    np.testing.assert_allclose(tiled, values, rtol=1e-5)
    assert problem.fingerprint() == reference.fingerprint()


@pytest.mark.embedded
def test_embedded_model_prefix_reuse_is_exact(embedded_model):
    model = embedded_model[0] if isinstance(embedded_model, tuple) else embedded_model
    masker = HeadMasker(model)
    try:
        L, H = masker.n_layers, masker.n_heads
        masks = np.ones((5, L * H), dtype=bool)
        masks[1, 20 * H + 3] = False
        masks[2, [20 * H + 3, 25 * H]] = False
        masks[3, 29 * H + 8] = False
        masks[4, [2 * H, 20 * H + 3]] = False
        inputs = _inputs(model.config.vocab_size, b=2, t=12)
        full = _full(model, masker, inputs, masks)
        runner = MaskRunner(model, masker, masks_per_pass=1)
        _assert_identical(_grouped(runner, inputs, masks), full)
        assert runner.layers_run == prefix_saving(masks, L, root=False)["layers_run"] < runner.layers_full
    finally:
        masker.remove()


@cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_masks_per_pass_from_free_memory(deep_gqa, caplog):
    model = AutoModelForCausalLM.from_config(deep_gqa.config, dtype=torch.bfloat16).cuda().eval()
    model.load_state_dict(deep_gqa.state_dict())
    masker = HeadMasker(model)
    masks = _trie_masks(masker.n_layers, masker.n_heads)
    inputs = {k: v.cuda() for k, v in _inputs(64, b=4, t=16).items()}
    full = _full(model, masker, inputs, masks)
    with caplog.at_level(logging.INFO, logger="objectives.masked_lm.batching"):
        runner = MaskRunner(model, masker)  # None: picked from free memory
        got = _grouped(runner, inputs, masks)
    picked = list(runner._per_pass.values())
    assert len(picked) == 1 and picked[0] > 1
    assert any("masks per forward pass" in r.getMessage() for r in caplog.records)
    # bf16 on CUDA: kernels chosen by shape may change the last bits; one mask per pass is exact
    for x, y in zip(got, full, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0.05)
    _assert_identical(_grouped(MaskRunner(model, masker, masks_per_pass=1), inputs, masks), full)


@cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_problem_defaults_to_bf16_and_batches(tmp_path, monkeypatch):
    from objectives.masked_lm.problem import MaskedLMProblem
    from objectives.masked_lm.tiny import CORPUS_WORDS, save_tiny_llama

    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))  # baselines stay in the test's folder
    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    corpus.write_text("\n\n".join(" ".join(rng.choice(CORPUS_WORDS, 80)) for _ in range(12)))
    problem = MaskedLMProblem(model=str(save_tiny_llama(tmp_path / "tiny")), corpus=str(corpus), n_windows=4,
                              window=32, stride=16, n_pronoun_occupations=4)
    assert problem.device.type == "cuda" and next(problem.model.parameters()).dtype is torch.bfloat16
    masks = problem.space.keep_all(4)
    masks[1, 0] = masks[2, 5] = masks[3, [1, 6]] = False
    values = problem.evaluate(masks, "search")
    assert np.isfinite(values).all() and max(problem.runner._per_pass.values()) > 1


@pytest.mark.parametrize("options", [{"bias_metric": "pronoun"}, {"bias_metric": "likelihood"},
                                     {"bias_metric": "generation", "aggregate": "sum", "max_new_tokens": 2,
                                      "n_generation_templates": 1}])
def test_tokenization_and_padding_happen_once_per_problem(make, monkeypatch, options):
    problem = make(**options)
    masks = problem.space.keep_all(3)
    masks[1, 0] = masks[2, 5] = False
    problem.evaluate(masks[:2], "search")
    calls = []
    tok_type = type(problem.tokenizer)
    original = tok_type.__call__
    monkeypatch.setattr(tok_type, "__call__", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    problem.evaluate(masks[1:], "search")
    assert calls == []


def test_recorded_layers_stay_within_the_byte_budget_and_first_batches_keep_theirs(deep_gqa):
    masker = HeadMasker(deep_gqa)
    first, second = _inputs(64, b=2, t=12, seed=1), _inputs(64, b=2, t=12, seed=2)
    layer_bytes = 2 * 12 * 48 * 4                       # one layer's output of one batch (float32)
    runner = MaskRunner(deep_gqa, masker, masks_per_pass=1, cache_bytes=2 * 7 * layer_bytes)
    masks = np.ones((3, masker.dim), dtype=bool)
    masks[:, -1] = False                                # prune only the last layer: 5 unpruned layers to record
    masks[1, -2] = masks[2, 0] = False
    reduce1, reduce2 = _reduce_for(first["input_ids"]), _reduce_for(second["input_ids"])
    got = []
    with runner.group("two batches", masks):
        for j in range(3):
            runner.select(j)
            got.append((runner.score_rows(first, reduce1), runner.score_rows(second, reduce2)))
    assert runner.cached_bytes <= 7 * layer_bytes
    depths = [len(runner._roots[("two batches", c)][1]) for c in (0, 1)]
    assert depths == [5, 2]                             # the first batch kept its 5 layers, the second got the rest
    _assert_identical([g[0] for g in got], _full(deep_gqa, masker, first, masks))
    _assert_identical([g[1] for g in got], _full(deep_gqa, masker, second, masks))
    # another sequence of passes (e.g. another split) makes room by evicting the older sequence
    with runner.group("other split", masks[:1]):
        runner.select(0)
        runner.score_rows(first, reduce1)
    assert ("other split", 0) in runner._roots and runner.cached_bytes <= 7 * layer_bytes
    assert len(runner._roots[("other split", 0)][1]) == 5
