"""Head sensitivities: gates on tiny models of every family (gradient vs finite differences of the
real statistics, bit-identical forward at g = mask), the masked-lm problem's sensitivities, and
``headrepair attribute``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framework.cli import main
from framework.problem import NoSensitivities
from framework.store import EvaluationStore
from objectives.masked_lm.attribution import attribute, compare_knockouts
from objectives.masked_lm.counterfactual import PronounBias
from objectives.masked_lm.gradients import (
    frozen_parameters,
    next_token_jacobian,
    sentence_jacobian,
    window_nll_jacobian,
)
from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.metrics import (
    encode_contexts,
    encode_sentences,
    next_token_logprobs,
    sentence_logprobs,
    window_nll,
)
from objectives.masked_lm.sensitivity import problem_gradients

EPS = 1e-2  # O(EPS^4) error; smaller steps meet float32 noise (rotary tables stay float32 in double models)
HEADS = (0, 3, 6)  # layer 0 head 0 (kept), layer 0 head 3 (pruned below), layer 1 head 2


def _mask(dim: int) -> np.ndarray:
    m = np.ones(dim, dtype=bool)
    m[[3, 5]] = False
    return m


def _fd(fn, gates: np.ndarray, h: int, eps: float = EPS) -> np.ndarray:
    """Fourth-order central difference of ``fn(gates) -> float[n]`` in gate ``h``."""
    def at(step: float) -> np.ndarray:
        g = gates.astype(np.float64).copy()
        g[h] += step
        return fn(g)

    return (8 * (at(eps) - at(-eps)) - (at(2 * eps) - at(-2 * eps))) / (12 * eps)


def _check(fn_values_jac, gates: np.ndarray, eps: float = EPS) -> None:
    values, jac = fn_values_jac(gates)
    for h in HEADS:
        fd = _fd(lambda g: fn_values_jac(g)[0], gates, h, eps)
        scale = np.abs(jac).max()
        np.testing.assert_allclose(jac[:, h], fd, rtol=2e-3, atol=1e-3 * scale + 1e-9)
    assert np.abs(jac[:, list(HEADS)]).max() > 0  # the gates do something


def test_gated_forward_is_bit_identical_and_gradients_match_finite_differences(tiny_model, tiny_tokenizer):
    model = tiny_model.double()
    # OPT's ReLUs put kinks within 1e-2 of the gates; it has no float32 rotary tables, so small steps are exact
    eps = 1e-5 if model.config.model_type == "opt" else EPS
    masker = HeadMasker(model)
    mask = _mask(masker.dim)
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 64, size=(3, 12))
    # windows: gated values at g = mask are the masked model's, gradients match finite differences
    with masker.masked(mask):
        masked_nll, n_scored = window_nll(model, ids, 6, batch_size=2)
    with frozen_parameters(model):
        nll, _, k = window_nll_jacobian(model, masker, mask, ids, 6, batch_size=2)
        assert k == n_scored
        np.testing.assert_allclose(nll, masked_nll, rtol=1e-6)  # the metrics score in float32
        _check(lambda g: window_nll_jacobian(model, masker, g, ids, 6, batch_size=2)[:2], mask, eps)
        # sentences (right padded, rows of different lengths) and next-token contexts (left padded)
        texts = [" ".join(f"w{i}" for i in rng.integers(4, 64, size=n)) for n in (3, 6, 4, 8)]
        enc = encode_sentences(tiny_tokenizer, texts, [len(t) // 2 for t in texts], batch_size=3)
        with masker.masked(mask):
            lp = sentence_logprobs(model, enc)
        for scope, want in (("all", lp.sum_all), ("after", lp.sum_after)):
            got, _ = sentence_jacobian(model, masker, mask, enc, scope)
            np.testing.assert_allclose(got, want, rtol=1e-6)
        _check(lambda g: sentence_jacobian(model, masker, g, enc, "all"), mask, eps)
        ctx = encode_contexts(tiny_tokenizer, texts, batch_size=3)
        cand = np.tile([[10, 11, 12]], (len(texts), 1))
        with masker.masked(mask):
            nxt = next_token_logprobs(model, ctx, cand)

        def odds(lp: torch.Tensor) -> torch.Tensor:
            return torch.logsumexp(lp[:, :2], 1) - lp[:, 2]

        got, _ = next_token_jacobian(model, masker, mask, ctx, cand, odds)
        want = np.logaddexp(nxt[:, 0], nxt[:, 1]) - nxt[:, 2]
        # (the float64 eager Gemma-2 gives NaN for left-padded rows; the gradient pass pads on the right)
        ok = np.isfinite(want)
        assert np.isfinite(got).all() and ok.sum() >= 2
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-6)
        _check(lambda g: next_token_jacobian(model, masker, g, ctx, cand, odds), mask, eps)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards
    masker.remove()


def test_gated_context_validates_and_leaves_no_gate(build_tiny):
    model = build_tiny("llama")
    masker = HeadMasker(model)
    with pytest.raises(ValueError, match="gates must be finite"):
        with masker.gated(np.ones(masker.dim - 1), 2):
            pass
    with pytest.raises(ValueError, match="gates of 2 rows"):
        with masker.gated(np.ones(masker.dim), 2):
            model(input_ids=torch.ones((3, 4), dtype=torch.long))
    ids = torch.ones((1, 4), dtype=torch.long)
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with masker.gated(np.zeros(masker.dim), 1):
            off = model(input_ids=ids).logits
        assert not torch.equal(off, plain)
        assert torch.equal(model(input_ids=ids).logits, plain)  # the gate is gone after the block
    masker.remove()


@pytest.mark.parametrize("metric", ["pronoun", "pronoun-words", "swap", "likelihood"])
def test_problem_gradients_match_finite_differences_of_the_objectives(make, metric, monkeypatch):
    if metric == "pronoun-words":  # the path for continuations of several tokens: whole sentences scored
        monkeypatch.setattr(PronounBias, "_single_tokens", lambda self, items: None)
        metric = "pronoun"
    problem = make(bias_metric=metric, n_pronoun_occupations=4, n_pronoun_templates=2)
    problem.model.double()
    mask = _mask(problem.space.dim)
    values, grads = problem_gradients(problem, mask, "search")
    assert values.shape == (2, 51) and grads.shape == (2, 51, problem.space.dim)
    for h in HEADS:
        fd = _fd(lambda g: problem_gradients(problem, g, "search")[0][:, :2], mask, h)  # point and one replicate
        np.testing.assert_allclose(grads[:, :2, h], fd, rtol=2e-3, atol=1e-6 * np.abs(grads).max())


def test_sensitivities_of_a_mask(make):
    problem = make(bias_metric="pronoun", n_pronoun_occupations=4, n_pronoun_templates=2)
    assert problem.has_sensitivities
    mask = _mask(problem.space.dim)
    sens = problem.sensitivities(mask, "heldout")
    values = problem.evaluate(mask[None], "heldout")[0]
    np.testing.assert_allclose(sens.values, values, rtol=1e-5)  # the same objectives, by the gated pass
    _, grads = problem_gradients(problem, mask, "heldout")
    sign = np.where(mask, -1.0, 1.0)  # kept heads are switched off, pruned ones back on
    np.testing.assert_allclose(sens.delta, grads[:, 0] * sign, rtol=1e-12)
    assert sens.delta.shape == sens.se.shape == (2, problem.space.dim)
    assert np.isfinite(sens.se).all() and (sens.se > 0).mean() > 0.5
    assert sens.info["split"] == "heldout" and sens.info["seconds"] > 0
    with pytest.raises(ValueError, match="no split"):
        problem.sensitivities(mask, "nope")


def test_generation_metric_has_no_sensitivities(make):
    problem = make(bias_metric="generation", n_generation_templates=1, max_prompts=4, max_new_tokens=2)
    assert not problem.has_sensitivities
    with pytest.raises(NoSensitivities, match="no head sensitivities"):
        problem.sensitivities(np.ones(problem.space.dim, dtype=bool))


def test_attribute_and_compare_with_real_flips(make, tmp_path):
    problem = make(bias_metric="pronoun", n_pronoun_occupations=4, n_pronoun_templates=2)
    mask = np.ones(problem.space.dim, dtype=bool)
    with EvaluationStore(tmp_path / "a.sqlite") as store:
        summary = attribute(problem, mask, "search", store)
        assert set(summary["objectives"]) == {"bias", "perplexity"}
        ppl = summary["objectives"]["perplexity"]
        assert np.asarray(ppl["delta"]).shape == (problem.space.n_layers, problem.space.n_heads)
        cmp = compare_knockouts(problem, mask, 5, ["search", "heldout"], store, log=lambda _: None)
        entry = cmp["splits"]["heldout"]["objectives"]["perplexity"]
        heads = cmp["heads"]
        real = problem.evaluate(np.array([np.where(np.arange(problem.space.dim) == h, False, mask)
                                          for h in heads]), "heldout")[:, 1] - problem.baseline("heldout")[1]
        np.testing.assert_allclose(entry["real"], real, rtol=1e-9)
        assert -1 <= entry["spearman"] <= 1 and cmp["splits"]["search"]["time_ratio"] > 0
        n_stored = store.count(problem.fingerprint("heldout"))
        again = compare_knockouts(problem, mask, 5, ["search", "heldout"], store, log=lambda _: None)
        assert store.count(problem.fingerprint("heldout")) == n_stored  # nothing evaluated twice
        assert again["splits"]["heldout"]["objectives"] == cmp["splits"]["heldout"]["objectives"]


def test_attribute_command_writes_json_and_heatmap(tiny_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "attr" / "a.json"
    sets = ["--set", f"corpus={corpus_file}", "--set", "window=32", "--set", "stride=16", "--set", "n_windows=2",
            "--set", "n_pronoun_occupations=3", "--set", "n_pronoun_templates=2"]
    assert main(["attribute", "--model", str(tiny_dir), "--out", str(out), "--compare", "3", *sets]) == 0
    data = json.loads(out.read_text())
    assert data["split"] == "search" and data["n_pruned"] == 0 and len(data["compare"]["heads"]) == 3
    assert out.with_suffix(".png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="no head sensitivities"):
        main(["attribute", "--model", str(tiny_dir), "--out", str(out), *sets, "--set", "bias_metric=generation"])
